package main

import (
	"time"

	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// runResult is everything one invocation measured.
type runResult struct {
	o          options
	server     string
	commit     string
	product    *phaseResult
	out        api.BulkChangeResult
	ts         tssim.Stats
	unfinished int
	// floor is the floor's figures: its one run, or both runs together
	// (-floor-order around), which floors lists apart.
	floor  *phaseResult
	floors []*phaseResult
	// tree and trees are the tree floor's, alike (-floor-shards).
	tree  *phaseResult
	trees []*phaseResult
	// pageWait is the floor starting children as BulkChange did before
	// start-without-waiting (-floor-compare).
	pageWait *phaseResult
	base     baselineResult
}

// phaseResult is what one side (product or floor) cost.
type phaseResult struct {
	name     string
	label    string // which run of that side, when there are several
	shape    string // the tree floor's shards, for the table
	devices  int
	wall     time.Duration
	cost     cost
	usage    usage
	events   historyTotals
	samples  []progressSample
	inFlight float64 // mean in flight
	runs     int
	parent   *parentTiming
	parentBD *breakdown
	childBD  []breakdown
	children *childTiming
	// check: events of the sampled children read from their histories, and
	// as visibility reports them (which historyStats adds up).
	check [2]int64
}

func (p *phaseResult) perSecond() float64 { return float64(p.devices) / p.wall.Seconds() }

func (p *phaseResult) eventsPerDevice() float64 { return float64(p.events.events) / float64(p.devices) }

func (p *phaseResult) workerCPUPerDevice() time.Duration {
	return p.usage.cpu / time.Duration(p.devices)
}

func (p *phaseResult) serverCPUPerDevice() time.Duration {
	return p.cost.server / time.Duration(p.devices)
}

// meanInFlight is the mean of the in-flight samples taken while devices
// were still being started or awaited.
func meanInFlight(devices int, samples []progressSample) float64 {
	n, sum := 0, 0
	for _, s := range samples {
		if s.done < devices {
			n++
			sum += s.inFlight
		}
	}
	return float64(sum) / float64(max(n, 1))
}

// combine adds up runs of one side: throughput is all devices over all
// wall time, costs per device are totals over all devices.
func combine(ps []*phaseResult) *phaseResult {
	if len(ps) == 1 {
		return ps[0]
	}
	c := &phaseResult{name: ps[0].name, label: "all its runs", shape: ps[0].shape}
	for _, p := range ps {
		c.inFlight += p.inFlight * p.wall.Seconds()
		c.devices += p.devices
		c.wall += p.wall
		c.runs += p.runs
		c.usage.procs = max(c.usage.procs, p.usage.procs)
		c.usage.maxRSSKB = max(c.usage.maxRSSKB, p.usage.maxRSSKB)
		c.usage.cpu += p.usage.cpu
		c.events.events += p.events.events
		c.events.runs += p.events.runs
		c.events.largest = max(c.events.largest, p.events.largest)
		c.cost.wall += p.cost.wall
		c.cost.server += p.cost.server
		c.cost.self += p.cost.self
		c.cost.pgProduct += p.cost.pgProduct
		c.cost.pgServer += p.cost.pgServer
		c.cost.hostBusy += p.cost.hostBusy * p.cost.wall.Seconds()
	}
	c.cost.hostBusy /= max(c.cost.wall.Seconds(), 1e-9)
	c.inFlight /= max(c.wall.Seconds(), 1e-9)
	c.cost.loadStart, c.cost.loadEnd = ps[0].cost.loadStart, ps[len(ps)-1].cost.loadEnd
	return c
}
