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
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/iot-ops/tsbulk/harness/cmd/bench/floor"
	"github.com/iot-ops/tsbulk/harness/stack"
)

// floorShape is what the benchmark needs to know of one floor's workflows:
// the single parent, or the tree of shards under a root.
type floorShape struct {
	name  string // the table's name for it
	shape string // its shape, for the table and the log
	id    string // the workflow the benchmark starts and waits for
	typ   string
	input any
	// parents start the device children, in device order; sizes are their
	// devices. The benchmark signals their children.
	parents []string
	sizes   []int
}

// singleFloor is the floor: one parent over every device.
func singleFloor(s *stack.Stack, o options, pageWait bool) floorShape {
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
	return floorShape{name: "floor", id: id, typ: floor.ParentType, input: in, parents: []string{id}, sizes: []int{o.devices},
		shape: fmt.Sprintf("one parent, window %d, continue-as-new every %d starts, page wait %v, search attributes %v",
			in.Window, in.StartsPerRun, in.PageWait, in.SearchAttributes)}
}

const treeFloorName = "tree floor"

// treeReportEvery is how many results a tree floor's shard collects
// before reporting to the root (and when it is done): the product's shards
// report every 200 results too (workflows/bulkshard.go, reportEvery).
const treeReportEvery = 200

// treeFloor is the tree floor: a root running o.floorShards shards of
// o.shardSize devices at a time.
func treeFloor(s *stack.Stack, o options) floorShape {
	opts := benchOptions(s, o)
	in := floor.RootInput{
		Devices:          o.devices,
		ShardSize:        o.shardSize,
		ShardsAtOnce:     o.floorShards,
		Window:           opts.Window,
		StartsPerRun:     opts.StartsPerRun,
		ReportEvery:      treeReportEvery,
		SearchAttributes: o.floorSearchAttrs,
	}
	id := fmt.Sprintf("bench-floor-tree/%d", time.Now().UnixNano())
	sizes := floor.Shards(o.devices, o.shardSize)
	parents := make([]string, len(sizes))
	for k := range sizes {
		parents[k] = floor.ShardID(id, k)
	}
	return floorShape{name: treeFloorName, id: id, typ: floor.RootType, input: in, parents: parents, sizes: sizes,
		shape: fmt.Sprintf("%d shards of up to %d devices, %d at once sharing the window of %d, continue-as-new every %d starts, "+
			"reporting every %d results; search attributes %v",
			len(sizes), in.ShardSize, in.ShardsAtOnce, in.Window, in.StartsPerRun, in.ReportEvery, in.SearchAttributes)}
}

// childID is the workflow ID of device i's child (i counts across parents).
func (f floorShape) childID(i int) string {
	for k, n := range f.sizes {
		if i < n {
			return floor.ChildID(f.parents[k], i)
		}
		i -= n
	}
	panic(fmt.Sprintf("floor device %d out of range", i))
}

// root is the workflow above the parents, "" when the started workflow is
// the only parent.
func (f floorShape) root() string {
	if len(f.parents) == 1 && f.parents[0] == f.id {
		return ""
	}
	return f.id
}

// runFloor runs a floor against the stack's server: its own worker
// processes (as many as the product's, set up alike), its workflows with the
// product's window and continue-as-new cadence, and this process sending
// each child its callback signal, as the callback receiver does.
func runFloor(ctx context.Context, s *stack.Stack, o options, m *meter, f floorShape, label string) (*phaseResult, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	procs, err := startWorkers("floor-worker", self, []string{floorWorkerArg}, s.Env(), o)
	if err != nil {
		return nil, fmt.Errorf("start the floor's worker: %w", err)
	}
	fmt.Printf("%s (%s): %d devices, %s, on %d worker process(es); load %s\n",
		f.name, label, o.devices, f.shape, o.workers, loadAvg())
	r0 := m.read()
	start := time.Now()
	wr, err := s.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: f.id, TaskQueue: floor.TaskQueue}, f.typ, f.input)
	if err != nil {
		stopWorkers(procs)
		return nil, err
	}
	sampling := startSampling(f.name, o.devices, start, newFloorSampler(s.Client, f).query, procs)
	sctx, cancel := context.WithCancel(ctx)
	sigErr := make(chan error, 1)
	go func() { sigErr <- signalFloor(sctx, s.Client, f, o.floorDelay, o.floorJitter) }()
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
		return nil, fmt.Errorf("%s: %w", f.name, err)
	}
	p := &phaseResult{name: f.name, label: label, shape: f.shape, devices: o.devices, wall: wall, cost: costBetween(r0, r1), usage: u,
		samples: samples, inFlight: meanInFlight(o.devices, samples), runs: res.Runs}
	if p.events, err = historyStats(ctx, s.Client, f.id, o.devices+res.Runs); err != nil {
		return nil, err
	}
	fmt.Printf("%s (%s): %d devices in %s (%.1f/s); load %s\n", f.name, label, o.devices, wall.Round(time.Second), p.perSecond(), loadAvg())
	if !o.breakdown {
		return p, nil
	}
	if err := parentBreakdown(ctx, s, p, f.root(), f.parents); err != nil {
		return nil, err
	}
	var hs [][]*historypb.HistoryEvent
	n := max(o.childSample, 1)
	for k := range n {
		h, err := history(ctx, s.Client, f.childID(k*o.devices/n), "")
		if err != nil {
			return nil, err
		}
		hs = append(hs, h)
	}
	p.childBD = []breakdown{newBreakdown(f.name+" device workflow", hs, float64(len(hs)))}
	ct := analyseChildren(hs)
	p.children = &ct
	return p, nil
}

// floorSampler adds up the progress of a floor's parents, asking each as
// it goes: the tree floor's root only knows what its shards last reported
// (every 100 results), which would understate the devices in flight.
type floorSampler struct {
	c       client.Client
	parents []string
	sizes   []int
	last    []floor.Progress
}

func newFloorSampler(c client.Client, f floorShape) *floorSampler {
	return &floorSampler{c: c, parents: f.parents, sizes: f.sizes, last: make([]floor.Progress, len(f.parents))}
}

// query asks the parents started and not done yet (a shard not started yet
// answers NotFound, and so would the next ones); the others count as they
// last answered.
func (fs *floorSampler) query(ctx context.Context) (progressSample, bool) {
	for k, id := range fs.parents {
		if fs.last[k].Done >= fs.sizes[k] {
			continue
		}
		p, err := floorProgress(ctx, fs.c, id)
		var notFound *serviceerror.NotFound
		if errors.As(err, &notFound) {
			break
		}
		if err != nil {
			return progressSample{}, false
		}
		fs.last[k] = p
	}
	var ps progressSample
	for _, p := range fs.last {
		ps.done += p.Done
		ps.inFlight += p.InFlight
		ps.runs += p.Runs
	}
	return ps, true
}

func floorProgress(ctx context.Context, c client.Client, id string) (floor.Progress, error) {
	var p floor.Progress
	v, err := c.QueryWorkflow(ctx, id, "", floor.ProgressQuery)
	if err == nil {
		err = v.Get(&p)
	}
	return p, err
}

// signalFloor sends each floor child its callback signal once its parent
// reports it started (or delay plus up to jitter later), at most 32 at a
// time, as the callback receiver does for ThingSpace's callbacks (the
// simulator delivers them 32 at a time). It asks each parent (each shard of
// the tree floor) whose children are not all signalled yet for its
// progress, every 200 ms: as often as the single parent is asked, per
// parent.
func signalFloor(ctx context.Context, c client.Client, f floorShape, delay, jitter time.Duration) error {
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	rng := rand.New(rand.NewPCG(1, 2))
	send := func(id string, wait time.Duration) {
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
			if err = c.SignalWorkflow(ctx, id, "", floor.CallbackSignal, true); err == nil || ctx.Err() != nil {
				return
			}
			time.Sleep(250 * time.Millisecond)
		}
		mu.Lock()
		if firstErr == nil {
			firstErr = fmt.Errorf("signal floor child %s: %w", id, err)
		}
		mu.Unlock()
	}
	parents := make([]*signalled, len(f.parents))
	for k, n := range f.sizes {
		parents[k] = &signalled{id: f.parents[k], done: make([]bool, n)}
	}
	total := 0
	for total < len(f.sizes) && ctx.Err() == nil {
		for _, ps := range parents {
			if ps.count == len(ps.done) {
				continue
			}
			qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			p, err := floorProgress(qctx, c, ps.id)
			cancel()
			var notFound *serviceerror.NotFound
			if errors.As(err, &notFound) {
				break // a shard not started yet: nor are the next ones
			}
			if err != nil {
				continue
			}
			for _, i := range ps.toSignal(p) {
				wait := delay
				if jitter > 0 {
					wait += time.Duration(rng.Int64N(int64(jitter)))
				}
				wg.Add(1)
				go send(floor.ChildID(ps.id, i), wait)
			}
			if ps.count == len(ps.done) {
				total++
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

// signalled is what signalFloor knows of one parent's children.
type signalled struct {
	id    string
	done  []bool // signalled, by index
	count int
	low   int // children below low have all been signalled
}

// toSignal marks and returns the children the parent's progress shows
// started and not signalled yet.
func (s *signalled) toSignal(p floor.Progress) []int {
	pending := map[int]bool{}
	for _, i := range p.Pending {
		pending[i] = true
	}
	var out []int
	for i := s.low; i < min(p.Started, len(s.done)); i++ {
		if s.done[i] || pending[i] {
			continue
		}
		s.done[i] = true
		s.count++
		out = append(out, i)
	}
	for s.low < len(s.done) && s.done[s.low] {
		s.low++
	}
	return out
}
