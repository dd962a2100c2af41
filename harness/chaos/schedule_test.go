package chaos

import (
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/changefile"
)

// The seed is the whole fault schedule: passing it again must replay the
// same faults at the same progress points, so a failing run can be rerun.
func TestScheduleReplaysFromSeed(t *testing.T) {
	a, b := NewSchedule(42, FullMix()), NewSchedule(42, FullMix())
	require.True(t, reflect.DeepEqual(a, b), "same seed, same schedule")
	assert.False(t, reflect.DeepEqual(a.Events, NewSchedule(43, FullMix()).Events), "another seed draws another schedule")
}

func TestScheduleHasTheMix(t *testing.T) {
	for _, mix := range []Mix{FullMix(), ShortMix()} {
		s := NewSchedule(7, mix)
		require.Len(t, s.Events, mix.Total())
		for _, k := range Kinds {
			assert.Equal(t, mix[k], s.Count()[k], "%s", k)
		}
		for i, e := range s.Events {
			assert.GreaterOrEqual(t, e.At, firstFault)
			assert.LessOrEqual(t, e.At, lastFault)
			if i > 0 {
				assert.GreaterOrEqual(t, e.At, s.Events[i-1].At, "events in firing order")
			}
			switch e.Kind {
			case TSSessionExpiry, TSTokenExpiry:
			default:
				assert.Positive(t, e.Down, "%s has a downtime or window", e.Kind)
			}
			if e.Kind == TS429Burst {
				assert.Positive(t, e.N)
			}
			if e.Kind == TSLostAnswers || e.Kind == TSGatewayAfterApply {
				assert.LessOrEqual(t, e.At, lastLostAnswer, "%s lands while batches are sent", e.Kind)
			}
			if e.Kind.atShardCAN() {
				assert.LessOrEqual(t, e.At, lastShardCANArm, "%s is armed while shards still start device workflows", e.Kind)
			}
		}
	}
	full := FullMix()
	assert.GreaterOrEqual(t, full[KillWorkers], 20, "the issue asks for 20 or more worker kills")
	short := ShortMix()
	assert.Equal(t, 5, short[KillWorkers]+short[KillOneWorker]+short[KillReceiver], "the short run has 5 kills")
	assert.Equal(t, 1, short[RestartTemporal])
	assert.Equal(t, 2, full[TSGatewayAfterApply])
	assert.Equal(t, 1, short[TSGatewayAfterApply])
	for _, m := range []Mix{full, short} {
		assert.Positive(t, m[KillWorkersAtShardCAN], "kills of every worker while a shard continues as new")
		assert.Positive(t, m[KillOneWorkerAtShardCAN], "kills of one worker while a shard continues as new")
	}
}

// A new kind is drawn after the others: a seed replays the faults it drew
// before the kind existed, at the same points, plus the new ones.
func TestNewKindKeepsEarlierDraws(t *testing.T) {
	with := NewSchedule(1129, FullMix()).Events
	before := FullMix()
	// Newest first: each step leaves the schedule of the mix before them.
	for _, newer := range [][]Kind{{KillWorkersAtShardCAN, KillOneWorkerAtShardCAN}, {TSGatewayAfterApply}} {
		for _, k := range newer {
			delete(before, k)
		}
		var rest []Event
		for _, e := range with {
			if _, kept := before[e.Kind]; kept {
				rest = append(rest, e)
			}
		}
		assert.Equal(t, NewSchedule(1129, before).Events, rest, "without %v", newer)
		with = rest
	}
}

func TestProgressFraction(t *testing.T) {
	assert.Zero(t, Progress{}.Fraction())
	assert.InDelta(t, 0.25, Progress{Total: 100, Sent: 50}.Fraction(), 1e-9)
	assert.InDelta(t, 1.0, Progress{Total: 100, Sent: 100, Final: 100}.Fraction(), 1e-9)
}

// The workload must be a file the product accepts, with the mix the issue
// describes, and the same for the same seed.
func TestWorkloadIsAValidMixedFile(t *testing.T) {
	w := NewWorkload(500, 3)
	require.Len(t, w.Devices, 500)
	require.True(t, reflect.DeepEqual(w, NewWorkload(500, 3)))
	c := w.Count()
	for _, sh := range shares {
		assert.Positive(t, c[sh.cat], "%s", sh.cat)
	}
	assert.Greater(t, c[CatActivateBilled], c[CatSuspend], "billed activations are the biggest share")

	path := filepath.Join(t.TempDir(), "bulk.csv")
	require.NoError(t, w.WriteCSV(path))
	reqs, err := changefile.ParseFile(path, changefile.Options{})
	require.NoError(t, err, "the product's parser accepts the file")
	require.Len(t, reqs, 500)
	ops := map[string]int{}
	for i, r := range reqs {
		d := w.Devices[i]
		require.Equal(t, d.ICCID, r.ICCID)
		ops[string(r.Operation)]++
		if d.Operation == "activate" {
			require.NotNil(t, r.PPU, "activation %s carries its PPU", d.ICCID)
			assert.Equal(t, d.Billed, r.Billing != nil, "billing data of %s", d.ICCID)
		}
	}
	assert.Equal(t, c[CatSuspend], ops["suspend"])
	// Seeds: every device ThingSpace must know, and none it must not.
	seeded := map[string]bool{}
	for _, s := range w.Seeds {
		seeded[s.ICCID] = true
	}
	for _, d := range w.Devices {
		assert.Equal(t, d.SeedState != "", seeded[d.ICCID], "seeded %s (%s)", d.ICCID, d.Category)
	}
	assert.NotEmpty(t, w.PPUValues())
}

func TestEventString(t *testing.T) {
	e := Event{At: 0.5, Kind: KillOneWorker, Down: time.Second, Worker: 1}
	assert.Contains(t, e.String(), "worker-2")
	assert.Contains(t, NewSchedule(1, ShortMix()).String(), "seed 1")
}
