package main

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// printTable prints the run's table: the product's figures, the floor's,
// the baseline's, and the ratios between them, which are what carry from
// one host to another (absolute times do not).
func printTable(r runResult) {
	o := r.o
	n := float64(o.devices)
	row := func(k, v string) { fmt.Printf("| %-46s | %-60s |\n", k, v) }
	fmt.Println()
	fmt.Printf("| %-46s | %-60s |\n", "measure", "value")
	fmt.Printf("|%s|%s|\n", strings.Repeat("-", 48), strings.Repeat("-", 62))
	row("devices", fmt.Sprintf("%d (%s)", o.devices, mixText(o.mix)))
	row("Temporal server", r.server)
	cache := "worker default"
	if o.cache > 0 {
		cache = fmt.Sprint(o.cache)
	}
	row("worker processes (each side)", fmt.Sprintf("%d; sticky cache %s; window %d", o.workers, cache, o.window))
	row("source", r.commit)
	p, f := r.product, r.floor
	if p != nil {
		row("product wall time", p.wall.Round(time.Second).String())
		row("product devices per second", fmt.Sprintf("%.1f", p.perSecond()))
		row("product outcome", fmt.Sprintf("%d processed, %d errors, %d unfinished; %d parent runs", r.out.Processed, r.out.Errors, r.unfinished, p.runs))
		req := r.ts.RequestsPerAccount[productAccount]
		row("ThingSpace requests", fmt.Sprintf("%d (%.4f per device); most in a rolling hour %d (limit %d)", req, float64(req)/n,
			r.ts.MaxRequestsInWindow[productAccount], o.limit))
		phaseRows(row, p)
	}
	if f != nil {
		row("floor wall time", fmt.Sprintf("%s (run %s the product)", f.wall.Round(time.Second), o.floorOrder))
		if len(r.floors) > 1 {
			var each []string
			for _, x := range r.floors {
				each = append(each, fmt.Sprintf("%s %.1f", x.label, x.perSecond()))
			}
			row("floor devices per second", fmt.Sprintf("%.1f (%s)", f.perSecond(), strings.Join(each, ", ")))
		} else {
			row("floor devices per second", fmt.Sprintf("%.1f", f.perSecond()))
		}
		phaseRows(row, f)
	}
	if w := r.pageWait; w != nil && f != nil {
		row("floor with BulkChange's page waits: devices/s", fmt.Sprintf("%.1f (in flight %.0f; %.1f events per device)", w.perSecond(), w.inFlight, w.eventsPerDevice()))
		row("page-wait floor / floor throughput", fmt.Sprintf("%.2f", w.perSecond()/r.floors[0].perSecond()))
	}
	if p != nil && f != nil {
		row("**product / floor throughput**", fmt.Sprintf("**%.2f**", p.perSecond()/f.perSecond()))
		row("product / floor events per device", fmt.Sprintf("%.2f (%.1f / %.1f)", p.eventsPerDevice()/f.eventsPerDevice(), p.eventsPerDevice(), f.eventsPerDevice()))
		row("product / floor worker CPU per device", ratio(p.workerCPUPerDevice(), f.workerCPUPerDevice()))
		if p.cost.server > 0 {
			row("product / floor server CPU per device", ratio(p.serverCPUPerDevice(), f.serverCPUPerDevice()))
		}
	}
	b := r.base
	if b.devices > 0 && p != nil {
		label := "baseline wall time (one request per device)"
		if b.devices < o.devices {
			label = fmt.Sprintf("baseline wall time, from a sample of %d", b.devices)
		}
		row(label, fmt.Sprintf("%s (%d requests, %d refused)", b.estimate.Round(time.Second), b.requests, b.failed))
		row("baseline: how", b.how)
		row("**baseline / product wall time**", fmt.Sprintf("**%.1fx** (at %d requests/h)", b.estimate.Seconds()/p.wall.Seconds(), o.limit))
	}
	fmt.Println()
	if p != nil && f != nil {
		fmt.Printf("ratios that carry: product/floor throughput %.2f; events per device %.1f (floor %.1f, x%.2f); worker CPU per device x%.2f of the floor's",
			p.perSecond()/f.perSecond(), p.eventsPerDevice(), f.eventsPerDevice(), p.eventsPerDevice()/f.eventsPerDevice(),
			float64(p.workerCPUPerDevice())/float64(max(f.workerCPUPerDevice(), 1)))
		if p.cost.server > 0 {
			fmt.Printf("; server CPU per device x%.2f of the floor's", float64(p.serverCPUPerDevice())/float64(max(f.serverCPUPerDevice(), 1)))
		}
		if b.devices > 0 {
			fmt.Printf("; baseline/product %.1fx", b.estimate.Seconds()/p.wall.Seconds())
		}
		fmt.Printf("; ThingSpace requests per device %.4f\n", float64(r.ts.RequestsPerAccount[productAccount])/n)
	}
	details := append([]*phaseResult{p}, r.floors...)
	details = append(details, r.pageWait)
	for _, ph := range details {
		if ph == nil {
			continue
		}
		if ph.label != "" {
			fmt.Printf("\n%s (%s): %d devices in %s, %.1f/s, %.0f in flight:\n", ph.name, ph.label, ph.devices, ph.wall.Round(time.Second), ph.perSecond(), ph.inFlight)
		} else {
			fmt.Printf("\n%s: %d devices in %s, %.1f/s, %.0f in flight:\n", ph.name, ph.devices, ph.wall.Round(time.Second), ph.perSecond(), ph.inFlight)
		}
		if ph.parentBD != nil {
			fmt.Printf("  %s\n", ph.parentBD)
		}
		for _, bd := range ph.childBD {
			fmt.Printf("  %s\n", bd)
		}
		if ph.parent != nil {
			fmt.Printf("  parent: %s\n", ph.parent)
		}
		if ph.children != nil {
			fmt.Printf("  children: %s\n", ph.children)
		}
		if ph.check[0] > 0 {
			fmt.Printf("  check: the sampled children have %d events in their histories, %d by visibility\n", ph.check[0], ph.check[1])
		}
		fmt.Printf("  worker RSS (all processes) by devices done: %s\n", rssCurve(ph))
	}
	if p != nil {
		outcomes := make([]string, 0, len(r.out.Progress.ByOutcome))
		for _, k := range sortedKeys(r.out.Progress.ByOutcome) {
			outcomes = append(outcomes, fmt.Sprintf("%s %d", k, r.out.Progress.ByOutcome[k]))
		}
		fmt.Printf("\noutcomes: %s\n", strings.Join(outcomes, ", "))
	}
}

// phaseRows are the rows both sides have.
func phaseRows(row func(k, v string), p *phaseResult) {
	n := time.Duration(p.devices)
	row(p.name+" devices in flight (mean of 2 s samples)", fmt.Sprintf("%.0f", p.inFlight))
	row(p.name+" history events", fmt.Sprintf("%d (%.1f per device); %d runs, largest %d events", p.events.events, p.eventsPerDevice(),
		p.events.runs, p.events.largest))
	row(p.name+" worker CPU", fmt.Sprintf("%.1f s (%.2f ms per device; %.2f cores)", p.usage.cpu.Seconds(), ms(p.usage.cpu/n), cores(p.usage.cpu, p.wall)))
	row(p.name+" worker peak RSS", fmt.Sprintf("%.0f MiB (largest of %d processes)", float64(p.usage.maxRSSKB)/1024, p.usage.procs))
	c := p.cost
	if c.server > 0 {
		row(p.name+" Temporal server CPU", fmt.Sprintf("%.1f s (%.2f ms per device; %.2f cores)", c.server.Seconds(), ms(c.server/n), cores(c.server, c.wall)))
	}
	if c.pgServer > 0 {
		row(p.name+" PostgreSQL CPU, Temporal's databases", fmt.Sprintf("%.1f s (%.2f ms per device; %.2f cores)", c.pgServer.Seconds(), ms(c.pgServer/n), cores(c.pgServer, c.wall)))
	}
	if c.pgProduct > 0 {
		row(p.name+" PostgreSQL CPU, the product's database", fmt.Sprintf("%.1f s (%.2f cores)", c.pgProduct.Seconds(), cores(c.pgProduct, c.wall)))
	}
	row(p.name+" bench process CPU (simulators, receiver)", fmt.Sprintf("%.1f s (%.2f cores)", c.self.Seconds(), cores(c.self, c.wall)))
	row(p.name+" host: cores busy, load at start / end", fmt.Sprintf("%.2f of %d; %s / %s", c.hostBusy, numCPU(), c.loadStart, c.loadEnd))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func cores(cpu, wall time.Duration) float64 { return cpu.Seconds() / max(wall.Seconds(), 1e-9) }

func ratio(a, b time.Duration) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f (%.2f / %.2f ms)", float64(a)/float64(b), ms(a), ms(b))
}

// rssCurve prints the worker processes' RSS at each quarter of the devices
// done, and its growth over the second half (to extrapolate to larger runs).
func rssCurve(p *phaseResult) string {
	s := append([]progressSample(nil), p.samples...)
	sort.Slice(s, func(i, j int) bool { return s[i].at < s[j].at })
	if len(s) == 0 {
		return "-"
	}
	var parts []string
	for _, q := range []int{1, 2, 3, 4} {
		want := p.devices * q / 4
		for _, x := range s {
			if x.done >= want {
				parts = append(parts, fmt.Sprintf("%d%%: %d MiB", 25*q, x.rssKB/1024))
				break
			}
		}
	}
	// Growth between the half-way sample and the last one, per 10,000 devices.
	var mid progressSample
	for _, x := range s {
		if x.done >= p.devices/2 {
			mid = x
			break
		}
	}
	last := s[len(s)-1]
	// Below 10,000 devices the second half is too short for a trend: a
	// garbage collection moves RSS more than the run's growth does.
	if d := last.done - mid.done; d > 0 && mid.rssKB > 0 && p.devices >= 10000 {
		parts = append(parts, fmt.Sprintf("second half %+.1f MiB per 10,000 devices", float64(last.rssKB-mid.rssKB)/1024/float64(d)*10000))
	}
	return strings.Join(parts, "; ")
}
