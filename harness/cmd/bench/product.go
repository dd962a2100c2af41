package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	historypb "go.temporal.io/api/history/v1"

	"github.com/iot-ops/tsbulk/harness/stack"
	"github.com/iot-ops/tsbulk/submission"
	"github.com/iot-ops/tsbulk/workflows/api"
)

func runProduct(ctx context.Context, s *stack.Stack, o options, m *meter, rows [][2]string, r *runResult) error {
	file, err := writeFile(rows)
	if err != nil {
		return err
	}
	defer os.Remove(file)
	procs, err := startWorkers("worker", filepath.Join(o.bin, "worker"), nil, s.Env(), o)
	if err != nil {
		return fmt.Errorf("start worker (run `make build` first): %w", err)
	}
	fmt.Printf("product: submitting %d devices (%s) to %d worker process(es); load %s\n", o.devices, mixText(o.mix), o.workers, loadAvg())
	r0 := m.read()
	start := time.Now()
	sub := &submission.Submitter{Store: s.Store, Temporal: s.Client}
	res, err := sub.Submit(ctx, submission.Request{File: file, Account: productAccount, BatchSize: o.batch,
		Options: benchOptions(s, o)})
	if err != nil {
		stopWorkers(procs)
		return err
	}
	query := func(ctx context.Context) (progressSample, bool) {
		v, err := s.Client.QueryWorkflow(ctx, res.WorkflowID, "", api.ProgressQuery)
		var p api.Progress
		if err != nil || v.Get(&p) != nil {
			return progressSample{}, false
		}
		return progressSample{done: p.Done(), inFlight: p.InFlight, runs: p.Runs}, true
	}
	sampling := startSampling("product", o.devices, start, query, procs)
	err = s.Client.GetWorkflow(ctx, res.WorkflowID, "").Get(ctx, &r.out)
	wall := time.Since(start)
	r1 := m.read()
	samples := sampling.stop()
	u := stopWorkers(procs)
	if err != nil {
		return fmt.Errorf("bulk change: %w", err)
	}
	p := &phaseResult{name: "product", devices: o.devices, wall: wall, cost: costBetween(r0, r1), usage: u, samples: samples,
		inFlight: meanInFlight(o.devices, samples), runs: r.out.Progress.Runs}
	r.product = p
	r.ts = s.TS.Stats(time.Hour)
	prefix := res.WorkflowID
	if p.events, err = historyStats(ctx, s.Client, prefix, o.devices+p.runs); err != nil {
		return err
	}
	if o.verifyEvents {
		total, runs, err := describeTotal(ctx, s.Client, prefix)
		if err != nil {
			return err
		}
		fmt.Printf("product: visibility says %d events in %d runs; the runs' own records %d events in %d distinct runs\n",
			p.events.events, p.events.runs, total, runs)
	}
	if r.unfinished, err = s.Store.CountUnfinished(ctx); err != nil {
		return err
	}
	fmt.Printf("product: %d devices in %s (%.1f/s); load %s\n", o.devices, wall.Round(time.Second), p.perSecond(), loadAvg())
	if !o.breakdown {
		return nil
	}
	// A sharded bulk change: its shards start the device workflows, its
	// root starts the shards.
	root, parents := "", []string{prefix}
	if n := r.out.Progress.Shards; n > 0 {
		root, parents = prefix, nil
		for no := 1; no <= n; no++ {
			parents = append(parents, api.ShardWorkflowID(res.ID, no))
		}
	}
	if err := parentBreakdown(ctx, s, p, root, parents); err != nil {
		return err
	}
	byOp := map[string][]string{}
	for _, row := range rows {
		byOp[row[1]] = append(byOp[row[1]], api.DeviceChangeWorkflowID(res.ID, row[0]))
	}
	var all [][]*historypb.HistoryEvent
	for _, op := range opOrder {
		var hs [][]*historypb.HistoryEvent
		// Spread over the operation's devices: the first of a batch wait
		// for their callback, later ones find it stored.
		for _, id := range spread(byOp[op], o.childSample) {
			h, err := history(ctx, s.Client, id, "")
			if err != nil {
				return err
			}
			hs = append(hs, h)
			v, err := visibilityLength(ctx, s.Client, id)
			if err != nil {
				return err
			}
			p.check[0] += int64(len(h))
			p.check[1] += v
		}
		if len(hs) > 0 {
			p.childBD = append(p.childBD, newBreakdown(op+" device workflow", hs, float64(len(hs))))
			all = append(all, hs...)
		}
	}
	ct := analyseChildren(all)
	p.children = &ct
	return nil
}

// parentBreakdown reads every run of the parents (the workflows that start
// the device children) and of the root above them ("" if none): their
// events per device by type, and the parents' workflow tasks and child
// starts.
func parentBreakdown(ctx context.Context, s *stack.Stack, p *phaseResult, root string, parents []string) error {
	hs, err := allRuns(ctx, s, parents)
	if err != nil {
		return err
	}
	pt := analyseParent(hs)
	p.parent = &pt
	what := "parent, per device"
	if root != "" {
		what = "root and shards, per device"
		rh, err := allRuns(ctx, s, []string{root})
		if err != nil {
			return err
		}
		hs = append(rh, hs...)
	}
	bd := newBreakdown(what, hs, float64(p.devices))
	p.parentBD = &bd
	return nil
}

// allRuns reads the histories of every run of the workflows.
func allRuns(ctx context.Context, s *stack.Stack, workflowIDs []string) ([][]*historypb.HistoryEvent, error) {
	var hs [][]*historypb.HistoryEvent
	for _, workflowID := range workflowIDs {
		ids, err := runIDs(ctx, s.Client, workflowID)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			h, err := history(ctx, s.Client, workflowID, id)
			if err != nil {
				return nil, err
			}
			hs = append(hs, h)
		}
	}
	return hs, nil
}

// spread picks n elements evenly spaced.
func spread[T any](all []T, n int) []T {
	if n >= len(all) {
		return all
	}
	out := make([]T, 0, n)
	for i := range n {
		out = append(out, all[i*len(all)/n])
	}
	return out
}
