package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/harness/stack"
	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/submission"
)

// TestRequestLimitHoldsAcrossTwoWorkers runs four bulk changes at once on
// two worker processes, with one device per ThingSpace request so that they
// compete for the account's budget (20 requests per 10-second window here,
// standing in for ThingSpace's hourly limit). The simulator counts what it
// received: never more than the limit in any window.
func TestRequestLimitHoldsAcrossTwoWorkers(t *testing.T) {
	const limit, window = 20, 10 * time.Second
	s := newStack(t, stack.Options{
		ThingSpace: tssim.Config{
			CompletionDelay:       200 * time.Millisecond,
			CallbackRetryInterval: 500 * time.Millisecond,
		},
		Config: func(c *config.Config) {
			c.Limits.RequestsPerHour = limit
			c.Limits.RequestsWindow = window
			c.Bulk.BatchSize = 1
		},
	})
	w1 := startWorkerProcess(t, s)
	w2 := startWorkerProcess(t, s)
	s.TS.ResetStats() // the stack's own set-up requests are not the workers'

	var subs []*submission.Result
	for i := 0; i < 4; i++ {
		_, file := suspendFile(t, s, fmt.Sprintf("891480002%d", i), 12)
		subs = append(subs, submit(t, s, file))
	}
	start := time.Now()
	for _, res := range subs {
		out := waitBulk(t, s, res, 10*time.Minute)
		require.Equal(t, 12, out.Processed, "worker logs:\n%s\n%s", w1.log, w2.log)
	}
	elapsed := time.Since(start)

	st := s.TS.Stats(window)
	account := s.Config.ThingSpace.Account
	require.LessOrEqual(t, st.MaxRequestsInWindow[account], limit, "requests in the busiest %s window", window)
	require.GreaterOrEqual(t, st.RequestsPerAccount[account], 48, "at least one request per device")
	// 48+ requests at 20 per 10 s cannot finish in less than two windows:
	// the limit was binding, not idle.
	require.Greater(t, elapsed, 2*window)
	require.Equal(t, 2, workersThatRan(t, s, subs), "both workers took part")
	t.Logf("FIGURES limit: %d requests in %s, busiest %s window %d (limit %d)",
		st.RequestsPerAccount[account], elapsed.Round(time.Second), window, st.MaxRequestsInWindow[account], limit)
}

// workersThatRan counts the distinct worker identities that ran the bulk
// changes' ThingSpace submissions.
func workersThatRan(t *testing.T, s *stack.Stack, subs []*submission.Result) int {
	t.Helper()
	ids := map[string]bool{}
	for _, res := range subs {
		for _, ev := range history(t, s, res.WorkflowID) {
			if a := ev.GetActivityTaskStartedEventAttributes(); a != nil {
				ids[a.GetIdentity()] = true
			}
		}
	}
	return len(ids)
}

// TestThrottledAccountWaitsThenPaces: ThingSpace allows 2 activations a
// minute here and the product is not told (its own activation limit is
// off). The third activation request is answered 429; the account then
// waits for Retry-After instead of retrying in a burst, and everything is
// activated with exactly one 429.
func TestThrottledAccountWaitsThenPaces(t *testing.T) {
	s := newStackWithWorker(t, stack.Options{
		ThingSpace: tssim.Config{CompletionDelay: 100 * time.Millisecond, CallbackRetryInterval: 300 * time.Millisecond,
			Limits: tssim.Limits{ActivateRequestsPerMinute: 2}},
		Config: func(c *config.Config) {
			c.Limits.RequestsPerHour = 1000 // the limiter is on, so it can be told about the 429
			c.Limits.ActivatesPerMinute = 0
			c.Bulk.BatchSize = 1
		},
	})
	devs := tssim.GenerateDevices(4, "8914800040", "preactive")
	require.NoError(t, s.TS.Seed(devs...))
	var rows []row
	for _, d := range devs {
		rows = append(
			rows,
			row{"iccid": d.ICCID, "imei": d.IMEI, "operation": "activate", "service_plan": "m2m_4G", "mdn_zip_code": "98801"},
		)
	}
	res := submit(t, s, writeCSV(t, []string{"iccid", "imei", "operation", "service_plan", "mdn_zip_code"}, rows))

	out := waitBulk(t, s, res, 5*time.Minute)

	require.Equal(t, 4, out.Processed)
	st := s.TS.Stats(time.Hour)
	activate := st.Responses["POST /api/m2m/v1/devices/actions/activate"]
	require.Equal(t, 1, activate[429], "one 429, then the account waited: %v", activate)
	require.Equal(t, 4, activate[200])
	throttled := countRows(t, s, `SELECT count(*) FROM rate_limit_buckets WHERE throttled_until IS NOT NULL`)
	require.Greater(t, throttled, 0, "the 429 reached the shared limiter")
}

// TestSameDeviceInTwoBulkChanges: two bulk changes submitted at once both
// suspend the same device. One change reaches ThingSpace; the other ends
// as DEVICE_BUSY naming the first, and ThingSpace sees one request.
func TestSameDeviceInTwoBulkChanges(t *testing.T) {
	s := newStackWithWorker(t, stack.Options{
		ThingSpace: tssim.Config{CompletionDelay: 3 * time.Second, CallbackRetryInterval: 300 * time.Millisecond},
	})
	shared := tssim.GenerateDevices(1, "8914800050", "active")[0]
	others := tssim.GenerateDevices(2, "8914800051", "active")
	require.NoError(t, s.TS.Seed(append(others, shared)...))
	fileA := writeCSV(
		t,
		[]string{"iccid", "operation"},
		[]row{{"iccid": shared.ICCID, "operation": "suspend"}, {"iccid": others[0].ICCID, "operation": "suspend"}},
	)
	fileB := writeCSV(
		t,
		[]string{"iccid", "operation"},
		[]row{{"iccid": shared.ICCID, "operation": "suspend"}, {"iccid": others[1].ICCID, "operation": "suspend"}},
	)

	a := submit(t, s, fileA)
	b := submit(t, s, fileB)
	require.NotEmpty(t, b.Plan.Warnings, "the second submission is warned about the first")
	require.Contains(t, b.Plan.Warnings[0], a.ID)
	waitBulk(t, s, a, 5*time.Minute)
	waitBulk(t, s, b, 5*time.Minute)

	ra, rb := results(t, s, a.ID)[shared.ICCID], results(t, s, b.ID)[shared.ICCID]
	statuses := []change.Status{ra.Status, rb.Status}
	require.ElementsMatch(t, []change.Status{change.Processed, change.Failed}, statuses, "one wins, one is refused")
	loser, winner := rb, a.ID
	if ra.Status == change.Failed {
		loser, winner = ra, b.ID
	}
	require.EqualValues(t, "DEVICE_BUSY", loser.ErrorCode)
	require.Contains(t, loser.ErrorMessage, winner)
	require.Equal(
		t,
		1,
		s.TS.Stats(time.Hour).AcceptedChanges[shared.ICCID]["suspend"],
		"ThingSpace saw one suspend of the device",
	)
	require.EqualValues(t, "PROCESSED", results(t, s, a.ID)[others[0].ICCID].Status)
	require.EqualValues(t, "PROCESSED", results(t, s, b.ID)[others[1].ICCID].Status)
}

// TestCallbackOutageIsPolledInBatches: ThingSpace delivers no callback at
// all. Every device is confirmed by polling, and polling 300 devices costs
// one device-list page per polling cycle, not a request per device.
//
// How many cycles find devices due depends on how fast this host starts
// the 300 device workflows (the callback wait starts at each one's
// request), so the bound is counted in cycles: the run's length over the
// poll interval. A batch threshold of 1 makes every cycle with more than
// one device due read the list; the one-request-per-device lookup of a
// few due devices has its own tests (activities).
func TestCallbackOutageIsPolledInBatches(t *testing.T) {
	const interval = 2 * time.Second
	s := newStackWithWorker(t, stack.Options{
		ThingSpace: tssim.Config{CompletionDelay: 500 * time.Millisecond, CompletionJitter: time.Second,
			Faults: tssim.Faults{DropCallbackRate: 1}},
		Config: func(c *config.Config) {
			c.Bulk.CallbackTimeout = 5 * time.Second
			c.Bulk.PollInterval = interval
			c.Worker.PollBatchThreshold = 1
		},
	})
	_, file := suspendFile(t, s, "8914800060", 300)
	s.TS.ResetStats()
	began := time.Now()
	res := submit(t, s, file)
	out := waitBulk(t, s, res, 5*time.Minute)
	elapsed := time.Since(began)

	require.Equal(t, 300, out.Processed)
	require.Equal(t, 300, confirmedByPoll(t, s, res.ID))
	st := s.TS.Stats(time.Hour)
	lists := st.Requests["POST /api/m2m/v1/devices/actions/list"]
	// A cycle starts at most once an interval; +2 for the first and for a
	// poller that ended with nothing due and was woken again.
	cycles := int(elapsed/interval) + 2
	require.LessOrEqual(t, lists, cycles, "device-list requests: at most one page a cycle in %s", elapsed)
	require.Less(t, lists, 300/2, "device-list requests for 300 polled devices")
	t.Logf(
		"FIGURES outage: 300 devices confirmed by polling with %d device-list requests in %s (%d requests in all)",
		lists,
		elapsed.Round(time.Second),
		st.RequestsPerAccount[s.Config.ThingSpace.Account],
	)
}
