package chaos

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"
)

// Kind is a kind of fault.
type Kind string

// Faults a run injects at chosen points of its progress. Process faults
// are SIGKILLs (a crash, an OOM kill) followed by a restart, as a
// supervisor would do; server restarts stop and start the server. Windows
// turn a simulator fault on for a while.
const (
	KillWorkers      Kind = "kill-workers"       // SIGKILL of every worker process: nothing runs workflows or activities
	KillOneWorker    Kind = "kill-one-worker"    // SIGKILL of one of the two workers; the other keeps running
	KillReceiver     Kind = "kill-receiver"      // SIGKILL of the standalone callback receiver
	RestartTemporal  Kind = "restart-temporal"   // the Temporal server stops and starts again
	RestartPostgres  Kind = "restart-postgres"   // immediate shutdown (a crash) of PostgreSQL, then start
	TS5xx            Kind = "ts-5xx"             // window: a share of ThingSpace requests answered 500/502/503
	TSLostAnswers    Kind = "ts-lost-answers"    // window: state changes applied, answered after the client gave up
	TSSessionExpiry  Kind = "ts-session-expiry"  // every VZ-M2M session expires at once
	TSTokenExpiry    Kind = "ts-token-expiry"    // the OAuth token expires
	TS429Burst       Kind = "ts-429-burst"       // the next N requests answered 429 with Retry-After
	Revio5xx         Kind = "revio-5xx"          // window: a share of Rev.io calls answered 500/503
	Revio429         Kind = "revio-429"          // window: a share of Rev.io calls answered 429
	RevioLateCreates Kind = "revio-late-creates" // window: service creates answered only after the client gave up
	// TSGatewayAfterApply is a window in which a share of ThingSpace's
	// state changes are applied and answered 502 or 504 by its gateway.
	TSGatewayAfterApply Kind = "ts-gateway-after-apply"
	// KillWorkersAtShardCAN and KillOneWorkerAtShardCAN kill every worker,
	// or one, while a shard continues as new: armed when the progress
	// reaches them, they fire as soon as a shard's run, past its
	// bulk.starts_per_run-th device workflow start, has the last of its
	// starts confirmed, the moment it hands its state to its next run
	// (shardwatch.go).
	KillWorkersAtShardCAN   Kind = "kill-workers-shard-can"
	KillOneWorkerAtShardCAN Kind = "kill-one-worker-shard-can"
)

// Kinds lists every kind in the order of the report and of the schedule's
// draws. A new kind goes last, so that the draws of those before it, and
// with them the faults a seed replays, stay what they were.
var Kinds = []Kind{KillWorkers, KillOneWorker, KillReceiver, RestartTemporal, RestartPostgres,
	TS5xx, TSLostAnswers, TSSessionExpiry, TSTokenExpiry, TS429Burst, Revio5xx, Revio429, RevioLateCreates,
	TSGatewayAfterApply, KillWorkersAtShardCAN, KillOneWorkerAtShardCAN}

// Mix is how many faults of each kind a run injects.
type Mix map[Kind]int

// FullMix is the full run's faults: more than 20 worker kills at points
// of progress, 6 more while shards continue as new, and every other kind
// at least once.
func FullMix() Mix {
	return Mix{KillWorkers: 20, KillOneWorker: 4, KillReceiver: 3, RestartTemporal: 1, RestartPostgres: 1,
		TS5xx: 2, TSLostAnswers: 2, TSSessionExpiry: 2, TSTokenExpiry: 2, TS429Burst: 2,
		Revio5xx: 2, Revio429: 2, RevioLateCreates: 2, TSGatewayAfterApply: 2,
		KillWorkersAtShardCAN: 4, KillOneWorkerAtShardCAN: 2}
}

// ShortMix is the short run's (make test): 5 kills at points of progress
// and 2 while shards continue as new, one Temporal restart, and one of
// each cheap simulator fault.
func ShortMix() Mix {
	return Mix{KillWorkers: 3, KillOneWorker: 1, KillReceiver: 1, RestartTemporal: 1,
		TS5xx: 1, TSLostAnswers: 1, TSSessionExpiry: 1, TSTokenExpiry: 1, TS429Burst: 1,
		Revio5xx: 1, Revio429: 1, RevioLateCreates: 1, TSGatewayAfterApply: 1,
		KillWorkersAtShardCAN: 1, KillOneWorkerAtShardCAN: 1}
}

// Total is the number of faults.
func (m Mix) Total() int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// Event is one fault of the schedule.
type Event struct {
	// At is the progress (0..1, see Progress.Fraction) at which it fires,
	// or, for a kill at a shard's continue-as-new, is armed.
	At   float64
	Kind Kind
	// Down is how long a killed process or stopped server stays down, or
	// how long a window lasts.
	Down time.Duration
	// N is the size of a 429 burst; Worker the worker a KillOneWorker kills.
	N      int
	Worker int
}

func (e Event) String() string {
	s := fmt.Sprintf("%5.1f%% %-25s %s", e.At*100, e.Kind, e.Down.Round(10*time.Millisecond))
	switch e.Kind {
	case KillOneWorker, KillOneWorkerAtShardCAN:
		s += fmt.Sprintf(" worker-%d", e.Worker+1)
	case TS429Burst:
		s += fmt.Sprintf(" %d requests", e.N)
	}
	if e.Kind.atShardCAN() {
		s += " (armed here; fires at the next shard continue-as-new)"
	}
	return s
}

// Schedule is the faults of a run, in firing order.
type Schedule struct {
	Seed   int64
	Events []Event
}

// Progress bounds of the schedule: faults land while the bulk change is
// under way, from its first batches to the last tenth, where a fault still
// has work to disturb.
const (
	firstFault = 0.02
	lastFault  = 0.9
	// Sending is about done when the progress passes 0.5 (every device
	// sent, few final), often well before.
	lastLostAnswer = 0.35
	// A kill armed for a shard's continue-as-new is armed by then, while
	// shards still have device workflows to start (the last shards start
	// once the first are done, past the middle).
	lastShardCANArm = 0.5
)

// NewSchedule draws the faults of mix from seed: the same seed and mix
// give the same schedule, whatever the machine.
func NewSchedule(seed int64, mix Mix) Schedule {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x5c4ed))
	between := func(lo, hi time.Duration) time.Duration {
		return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
	}
	var events []Event
	for _, k := range Kinds { // fixed order: map iteration would make the draws differ
		for range mix[k] {
			last := lastFault
			switch k {
			case TSLostAnswers, TSGatewayAfterApply:
				// Only state changes lose their answer: land while
				// batches are still being sent.
				last = lastLostAnswer
			case KillWorkersAtShardCAN, KillOneWorkerAtShardCAN:
				last = lastShardCANArm
			}
			e := Event{Kind: k, At: firstFault + rng.Float64()*(last-firstFault)}
			switch k {
			case KillWorkers, KillOneWorker, KillReceiver, KillWorkersAtShardCAN, KillOneWorkerAtShardCAN:
				e.Down = between(300*time.Millisecond, 3*time.Second)
				e.Worker = rng.IntN(2)
			case RestartTemporal, RestartPostgres:
				e.Down = between(time.Second, 4*time.Second)
			case TSSessionExpiry, TSTokenExpiry:
			case TS429Burst:
				e.N = 5 + rng.IntN(26)
				e.Down = between(time.Second, 3*time.Second) // the Retry-After
			default:
				e.Down = between(3*time.Second, 8*time.Second)
			}
			events = append(events, e)
		}
	}
	sort.SliceStable(events, func(i, j int) bool { return events[i].At < events[j].At })
	return Schedule{Seed: seed, Events: events}
}

// atShardCAN: the kind fires at a shard's continue-as-new, not at its
// point of progress.
func (k Kind) atShardCAN() bool { return k == KillWorkersAtShardCAN || k == KillOneWorkerAtShardCAN }

// Count is the number of events per kind.
func (s Schedule) Count() map[Kind]int {
	out := map[Kind]int{}
	for _, e := range s.Events {
		out[e.Kind]++
	}
	return out
}

func (s Schedule) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "fault schedule of seed %d (%d faults, by progress):\n", s.Seed, len(s.Events))
	for _, e := range s.Events {
		fmt.Fprintf(&b, "  %s\n", e)
	}
	return b.String()
}

// Progress is where a bulk change stands, from its device changes.
type Progress struct {
	Total int // device changes
	Sent  int // past PENDING: their batch was claimed or sent
	Final int // PROCESSED or ERROR
}

// Fraction counts sending and completion as halves of the work, so
// that faults also land while batches are being sent, before any device
// has its outcome.
func (p Progress) Fraction() float64 {
	if p.Total == 0 {
		return 0
	}
	return float64(p.Sent+p.Final) / float64(2*p.Total)
}
