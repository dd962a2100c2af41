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
	row := func(k, v string) { fmt.Printf("| %-52s | %-60s |\n", k, v) }
	fmt.Println()
	fmt.Printf("| %-52s | %-60s |\n", "measure", "value")
	fmt.Printf("|%s|%s|\n", strings.Repeat("-", 54), strings.Repeat("-", 62))
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
	floorRows(row, f, r.floors, o.floorOrder)
	floorRows(row, r.tree, r.trees, o.floorOrder)
	if w := r.pageWait; w != nil && f != nil {
		row("floor with BulkChange's page waits: devices/s", fmt.Sprintf("%.1f (in flight %.0f; %.1f events per device)", w.perSecond(), w.inFlight, w.eventsPerDevice()))
		row("page-wait floor / floor throughput", fmt.Sprintf("%.2f", w.perSecond()/r.floors[0].perSecond()))
	}
	if t := r.tree; t != nil && f != nil {
		row("tree floor / floor throughput", fmt.Sprintf("%.2f", t.perSecond()/f.perSecond()))
	}
	ratioRows(row, p, f)
	ratioRows(row, p, r.tree)
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
	if p != nil && (f != nil || r.tree != nil) {
		var parts []string
		for _, fl := range []*phaseResult{f, r.tree} {
			if fl != nil {
				parts = append(parts, carried(p, fl))
			}
		}
		if b.devices > 0 {
			parts = append(parts, fmt.Sprintf("baseline/product %.1fx", b.estimate.Seconds()/p.wall.Seconds()))
		}
		parts = append(parts, fmt.Sprintf("ThingSpace requests per device %.4f", float64(r.ts.RequestsPerAccount[productAccount])/n))
		fmt.Printf("ratios that carry: %s\n", strings.Join(parts, "; "))
	}
	details := append([]*phaseResult{p}, r.floors...)
	details = append(append(details, r.trees...), r.pageWait)
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
			who := "parent"
			if ph.name == treeFloorName {
				who = "shards"
			}
			fmt.Printf("  %s: %s\n", who, ph.parent)
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

// floorRows are one floor's rows (f: all its runs together, each: its runs).
func floorRows(row func(k, v string), f *phaseResult, each []*phaseResult, order string) {
	if f == nil {
		return
	}
	row(f.name+" wall time", fmt.Sprintf("%s (run %s the product)", f.wall.Round(time.Second), order))
	row(f.name+" shape", f.shape)
	if len(each) > 1 {
		var runs []string
		for _, x := range each {
			runs = append(runs, fmt.Sprintf("%s %.1f", x.label, x.perSecond()))
		}
		row(f.name+" devices per second", fmt.Sprintf("%.1f (%s)", f.perSecond(), strings.Join(runs, ", ")))
	} else {
		row(f.name+" devices per second", fmt.Sprintf("%.1f", f.perSecond()))
	}
	phaseRows(row, f)
}

// ratioRows compare the product with one floor, measured in the same run.
func ratioRows(row func(k, v string), p, f *phaseResult) {
	if p == nil || f == nil {
		return
	}
	row("**product / "+f.name+" throughput**", fmt.Sprintf("**%.2f**", p.perSecond()/f.perSecond()))
	row("product / "+f.name+" events per device", fmt.Sprintf("%.2f (%.1f / %.1f)", p.eventsPerDevice()/f.eventsPerDevice(), p.eventsPerDevice(), f.eventsPerDevice()))
	row("product / "+f.name+" worker CPU per device", ratio(p.workerCPUPerDevice(), f.workerCPUPerDevice()))
	if p.cost.server > 0 {
		row("product / "+f.name+" server CPU per device", ratio(p.serverCPUPerDevice(), f.serverCPUPerDevice()))
	}
}

// carried is the summary line's part for one floor.
func carried(p, f *phaseResult) string {
	s := fmt.Sprintf("product/%s throughput %.2f; events per device %.1f (%s %.1f, x%.2f); worker CPU per device x%.2f of the %s's",
		f.name, p.perSecond()/f.perSecond(), p.eventsPerDevice(), f.name, f.eventsPerDevice(), p.eventsPerDevice()/f.eventsPerDevice(),
		float64(p.workerCPUPerDevice())/float64(max(f.workerCPUPerDevice(), 1)), f.name)
	if p.cost.server > 0 {
		s += fmt.Sprintf("; server CPU per device x%.2f of the %s's", float64(p.serverCPUPerDevice())/float64(max(f.serverCPUPerDevice(), 1)), f.name)
	}
	return s
}

// phaseRows are the rows every side has.
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
