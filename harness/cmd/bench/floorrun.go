package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"

	"github.com/iot-ops/tsbulk/harness/cmd/bench/floor"
	"github.com/iot-ops/tsbulk/harness/stack"
)

// runFloor runs the floor against the stack's server: its own worker
// processes (as many as the product's, set up alike), one parent with the
// product's window and continue-as-new cadence, and this process sending
// each child its callback signal, as the callback receiver does.
func runFloor(ctx context.Context, s *stack.Stack, o options, m *meter, pageWait bool, label string) (*phaseResult, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	procs, err := startWorkers("floor-worker", self, []string{floorWorkerArg}, s.Env(), o)
	if err != nil {
		return nil, fmt.Errorf("start the floor's worker: %w", err)
	}
	opts := benchOptions(s, o)
	in := floor.ParentInput{
		Devices:          o.devices,
		Window:           opts.Window,
		StartsPerRun:     opts.StartsPerRun,
		PageWait:         pageWait,
		Page:             200,
		SearchAttributes: o.floorSearchAttrs,
	}
	id := fmt.Sprintf("bench-floor/%d", time.Now().UnixNano())
	fmt.Printf("floor (%s): %d devices, window %d, continue-as-new every %d starts, page wait %v, "+
		"search attributes %v, on %d worker process(es); load %s\n",
		label, in.Devices, in.Window, in.StartsPerRun, in.PageWait, in.SearchAttributes, o.workers, loadAvg())
	r0 := m.read()
	start := time.Now()
	wr, err := s.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: floor.TaskQueue}, floor.ParentType, in)
	if err != nil {
		stopWorkers(procs)
		return nil, err
	}
	query := func(ctx context.Context) (progressSample, bool) {
		p, err := floorProgress(ctx, s.Client, id)
		if err != nil {
			return progressSample{}, false
		}
		return progressSample{done: p.Done, inFlight: p.InFlight, runs: p.Runs}, true
	}
	sampling := startSampling("floor", o.devices, start, query, procs)
	sctx, cancel := context.WithCancel(ctx)
	sigErr := make(chan error, 1)
	go func() { sigErr <- signalFloor(sctx, s.Client, id, o.devices, o.floorDelay, o.floorJitter) }()
	var res floor.Result
	err = wr.Get(ctx, &res)
	wall := time.Since(start)
	r1 := m.read()
	samples := sampling.stop()
	u := stopWorkers(procs)
	cancel()
	if serr := <-sigErr; err == nil && serr != nil && !errors.Is(serr, context.Canceled) {
		err = serr
	}
	if err != nil {
		return nil, fmt.Errorf("floor: %w", err)
	}
	p := &phaseResult{name: "floor", label: label, devices: o.devices, wall: wall, cost: costBetween(r0, r1), usage: u, samples: samples,
		inFlight: meanInFlight(o.devices, samples), runs: res.Runs}
	if p.events, err = historyStats(ctx, s.Client, id, o.devices+res.Runs); err != nil {
		return nil, err
	}
	fmt.Printf("floor (%s): %d devices in %s (%.1f/s); load %s\n", label, o.devices, wall.Round(time.Second), p.perSecond(), loadAvg())
	if !o.breakdown {
		return p, nil
	}
	if err := parentBreakdown(ctx, s, id, p); err != nil {
		return nil, err
	}
	var hs [][]*historypb.HistoryEvent
	n := max(o.childSample, 1)
	for k := range n {
		h, err := history(ctx, s.Client, floor.ChildID(id, k*o.devices/n), "")
		if err != nil {
			return nil, err
		}
		hs = append(hs, h)
	}
	p.childBD = []breakdown{newBreakdown("floor device workflow", hs, float64(len(hs)))}
	ct := analyseChildren(hs)
	p.children = &ct
	return p, nil
}

func floorProgress(ctx context.Context, c client.Client, id string) (floor.Progress, error) {
	var p floor.Progress
	v, err := c.QueryWorkflow(ctx, id, "", floor.ProgressQuery)
	if err == nil {
		err = v.Get(&p)
	}
	return p, err
}

// signalFloor sends each floor child its callback signal once the parent
// reports it started (or delay plus up to jitter later), at most 32 at a
// time, as the callback receiver does for ThingSpace's callbacks (the
// simulator delivers them 32 at a time).
func signalFloor(ctx context.Context, c client.Client, id string, devices int, delay, jitter time.Duration) error {
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	rng := rand.New(rand.NewPCG(1, 2))
	signalled := make([]bool, devices)
	count := 0
	send := func(i int, wait time.Duration) {
		defer wg.Done()
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		sem <- struct{}{}
		defer func() { <-sem }()
		var err error
		for attempt := 0; attempt < 20; attempt++ {
			if err = c.SignalWorkflow(ctx, floor.ChildID(id, i), "", floor.CallbackSignal, true); err == nil || ctx.Err() != nil {
				return
			}
			time.Sleep(250 * time.Millisecond)
		}
		mu.Lock()
		if firstErr == nil {
			firstErr = fmt.Errorf("signal floor child %d: %w", i, err)
		}
		mu.Unlock()
	}
	// Children below low have all been signalled.
	low := 0
	for count < devices && ctx.Err() == nil {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		p, err := floorProgress(qctx, c, id)
		cancel()
		if err == nil {
			pending := map[int]bool{}
			for _, i := range p.Pending {
				pending[i] = true
			}
			for i := low; i < min(p.Started, devices); i++ {
				if signalled[i] || pending[i] {
					continue
				}
				signalled[i] = true
				count++
				wait := delay
				if jitter > 0 {
					wait += time.Duration(rng.Int64N(int64(jitter)))
				}
				wg.Add(1)
				go send(i, wait)
			}
			for low < devices && signalled[low] {
				low++
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}
