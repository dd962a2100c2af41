package activities_test

import (
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/thingspace"
)

// refusingWhole makes the simulator refuse a multi-device request as a
// whole when any of its devices would be refused.
func refusingWhole(s *setup) {
	s.sim.RefuseWholeRequest = true
	pendingAnHour(s)
}

// splitBound is the most requests isolating k bad devices in a batch of n
// may take: the batch's request, then per round at most k refused requests
// split in two, for ⌈log2 n⌉ rounds.
func splitBound(n, k int) int {
	return 1 + 2*k*int(math.Ceil(math.Log2(float64(n))))
}

// subRequestRow is a thingspace_requests row of a batch.
type subRequestRow struct {
	Key, State, RequestID, ErrorCode string
	Devices, Attempts                int
}

func (h *harness) batchRequests(bulkID string, batch int) []subRequestRow {
	h.t.Helper()
	var out []subRequestRow
	var r subRequestRow
	h.eachRow([]any{&r.Key, &r.State, &r.RequestID, &r.ErrorCode, &r.Devices, &r.Attempts},
		func() { out = append(out, r) },
		`SELECT request_key, state, coalesce(request_id, ''), coalesce(error_code, ''),
		devices, attempts FROM thingspace_requests WHERE bulk_change_id = $1 AND (request_key = $2 OR request_key LIKE $2 || '/%')
		ORDER BY length(request_key), request_key`,
		bulkID,
		db.BatchKey(batch),
	)
	return out
}

// badSuspends seeds n active devices of which three cannot be suspended,
// spread over the batch: one ThingSpace does not know, one of another
// account, one already suspended. It returns the devices in file order and
// the expected refusal code of each bad one.
func badSuspends(h *harness, n int, prefix, other string) ([]thingspacesim.DeviceSeed, map[string]string) {
	h.t.Helper()
	devs := devices(n, prefix, "active")
	unknown, foreign, suspended := n/10, n/2, n-3
	devs[foreign].Account = other
	devs[suspended].State = "suspend"
	var seeded []thingspacesim.DeviceSeed
	for i, d := range devs {
		if i != unknown {
			seeded = append(seeded, d)
		}
	}
	h.seed(seeded...)
	return devs, map[string]string{
		devs[unknown].ICCID:   thingspace.CodeDeviceNotFound,
		devs[foreign].ICCID:   thingspace.CodeDeviceAccountInvalid,
		devs[suspended].ICCID: thingspace.CodeDeviceStateInvalid,
	}
}

// Refused as a whole because of three of its devices, a batch of 200 is
// split until those three are isolated: they keep ThingSpace's per-device
// refusal, every other device is sent exactly once and holds the requestId
// of the sub-request that carried it, within the log2 bound of rounds and
// requests. Asking again sends nothing.
func TestSendBatchSplitIsolatesRefusedDevices(t *testing.T) {
	t.Parallel()
	const other = "0000654321-00001"
	h := newHarness(t, refusingWhole, func(s *setup) { s.sim.Accounts = []string{account, other} })
	const n = 200
	devs, bad := badSuspends(h, n, "8914800601", other)
	bulk, ids := h.newBulk(account, changes("suspend", 1, devs...)...)

	res := h.mustSendBatch(bulk, 1)
	require.Equal(t, db.RequestAccepted, res.State, "the good devices were accepted")
	require.Equal(t, n, res.Devices)
	require.Equal(t, n, res.Sent)
	require.Empty(t, res.RequestID, "split: each sub-request has its own requestId")
	require.Equal(t, thingspace.CodeDeviceNotFound, res.ErrorCode, "the refusal that made the batch split")
	require.Positive(t, res.SubRequests)

	st := h.stats()
	requests := st.Requests[epSuspend]
	t.Logf(
		"FIGURES split: %d devices, %d refused: %d suspend requests (bound %d), %d sub-requests",
		n,
		len(bad),
		requests,
		splitBound(n, len(bad)),
		res.SubRequests,
	)
	require.LessOrEqual(t, requests, splitBound(n, len(bad)))
	require.Equal(t, res.SubRequests+1, requests, "every request of the batch sent once")

	rows := h.batchRequests(bulk, 1)
	maxDepth := 0
	accepted := map[string]int{} // requestId → devices
	for _, r := range rows {
		maxDepth = max(maxDepth, db.RequestDepth(r.Key))
		require.Contains(t, []string{db.RequestAccepted, db.RequestRejected}, r.State, "request %s settled", r.Key)
		require.LessOrEqual(t, r.Attempts, 1, "request %s sent at most once", r.Key)
		if r.State == db.RequestAccepted {
			require.NotEmpty(t, r.RequestID)
			accepted[r.RequestID] = r.Devices
		}
	}
	require.LessOrEqual(t, maxDepth+1, int(math.Ceil(math.Log2(n)))+1, "rounds bounded by log2 of the batch size")

	for _, d := range devs {
		dc := h.change(ids[d.ICCID])
		require.Equal(t, change.Sent, dc.Status, "device %s in flight until its workflow ends it", d.ICCID)
		if code, ok := bad[d.ICCID]; ok {
			require.Zero(t, h.accepted(d.ICCID, "suspend"), "refused device %s", d.ICCID)
			require.NotNil(t, dc.SyncResult, d.ICCID)
			require.False(t, dc.SyncResult.Success)
			require.EqualValues(t, code, dc.SyncResult.FaultCode, d.ICCID)
			require.Empty(t, dc.RequestID)
			h.requireSyncFault(ids[d.ICCID], code)
			continue
		}
		require.Equal(t, 1, h.accepted(d.ICCID, "suspend"), "device %s sent once", d.ICCID)
		require.Nil(t, dc.SyncResult)
		require.NotNil(t, dc.SentAt)
		require.Contains(t, accepted, dc.RequestID, "device %s holds the requestId of an accepted sub-request", d.ICCID)
		sd, _ := h.sim.Device(d.ICCID)
		require.Equal(t, thingspacesim.StatePendingSuspend, sd.State)
		require.Equal(t, sd.PendingRequestID, dc.RequestID, "the requestId ThingSpace's callback will carry")
		ds := h.load(ids[d.ICCID])
		require.Equal(t, dc.RequestID, ds.RequestID)
		require.Nil(t, ds.Sync)
	}
	sum := 0
	for _, k := range accepted {
		sum += k
	}
	require.Equal(t, n-len(bad), sum, "the accepted sub-requests carried every good device once")

	// A retried activity (or a restarted worker) sends nothing more.
	again := h.mustSendBatch(bulk, 1)
	require.Equal(t, res, again)
	require.Equal(t, requests, h.stats().Requests[epSuspend])
}

// A batch carrying one device of another account than the bulk change's:
// ThingSpace refuses the request with Device.Account.Invalid, a refusal of
// that device alone, so the batch is split until the device is isolated
// with the code for its workflow, and every other device is accepted once.
func TestSendBatchSplitIsolatesDeviceOfAnotherAccount(t *testing.T) {
	t.Parallel()
	const other = "0000654321-00001"
	h := newHarness(t, refusingWhole, func(s *setup) { s.sim.Accounts = []string{account, other} })
	const n, foreign = 16, 11
	devs := devices(n, "8914800606", "active")
	devs[foreign].Account = other
	h.seed(devs...)
	bulk, ids := h.newBulk(account, changes("suspend", 1, devs...)...)

	res := h.mustSendBatch(bulk, 1)
	require.Equal(t, db.RequestAccepted, res.State, "the other devices were accepted")
	require.Equal(t, thingspace.CodeDeviceAccountInvalid, res.ErrorCode, "the refusal that made the batch split")
	require.LessOrEqual(t, h.stats().Requests[epSuspend], splitBound(n, 1))
	for i, d := range devs {
		dc := h.change(ids[d.ICCID])
		require.Equal(t, change.Sent, dc.Status, "device %s in flight until its workflow ends it", d.ICCID)
		if i == foreign {
			require.Zero(t, h.accepted(d.ICCID, "suspend"))
			require.Empty(t, dc.RequestID)
			h.requireSyncFault(ids[d.ICCID], thingspace.CodeDeviceAccountInvalid)
			sd, _ := h.sim.Device(d.ICCID)
			require.Equal(t, thingspacesim.StateActive, sd.State, "the other account's device is untouched")
			continue
		}
		require.Equal(t, 1, h.accepted(d.ICCID, "suspend"), "device %s sent once", d.ICCID)
		require.NotEmpty(t, dc.RequestID)
		require.Nil(t, dc.SyncResult)
	}
}

// An activation batch refused because one device is already active: the
// device is isolated with DeviceAlreadyActive, which its workflow turns
// into a PPU update, and the others are activated with the batch's plan.
func TestSendBatchSplitActivationAlreadyActive(t *testing.T) {
	t.Parallel()
	h := newHarness(t, refusingWhole)
	devs := devices(9, "8914800602", "preactive")
	devs[4].State = "active"
	h.seed(devs...)
	cs := activations("92101", 1, devs...)
	bulk, ids := h.newBulk(account, cs...)

	res := h.mustSendBatch(bulk, 1)
	require.Equal(t, db.RequestAccepted, res.State)
	require.Equal(t, thingspace.CodeDeviceAlreadyActive, res.ErrorCode)
	require.LessOrEqual(t, h.stats().Requests[epActivate], splitBound(len(devs), 1))
	for i, d := range devs {
		dc := h.change(ids[d.ICCID])
		if i == 4 {
			require.Zero(t, h.accepted(d.ICCID, "activate"))
			require.NotNil(t, dc.SyncResult)
			require.EqualValues(t, thingspace.CodeDeviceAlreadyActive, dc.SyncResult.FaultCode)
			continue
		}
		require.Equal(t, 1, h.accepted(d.ICCID, "activate"), d.ICCID)
		require.NotEmpty(t, dc.RequestID)
	}
}

// A half that ThingSpace refuses for a request-level reason that is not a
// device's ends its devices as ERROR with the code, as an unsplit batch
// would; the other half is unaffected.
func TestSendBatchSplitHalfRefusedForTheRequest(t *testing.T) {
	t.Parallel()
	h := newHarness(t, refusingWhole)
	devs := devices(8, "8914800603", "active")
	devs[6].State = "suspend" // refused: makes the batch split
	bulk, ids := h.seededBulk(account, "suspend", devs...)
	// The batch's request (1st) is refused by the simulator; the first
	// half (2nd request, devices 0-3) is refused for the request itself.
	ft := &faultyTransport{
		path:   "/devices/actions/suspend",
		faults: map[int]string{2: "refuse:" + thingspacesim.CodeUnexpectedError},
	}
	h.acts.ThingSpace = h.newThingSpaceClient(ft.install)

	res := h.mustSendBatch(bulk, 1)
	require.Equal(t, db.RequestAccepted, res.State)
	for i, d := range devs {
		dc := h.change(ids[d.ICCID])
		switch {
		case i < 4:
			require.Equal(t, change.Failed, dc.Status, d.ICCID)
			require.EqualValues(t, change.ShortCode(thingspacesim.CodeUnexpectedError), dc.ErrorCode)
			require.Zero(t, h.accepted(d.ICCID, "suspend"))
		case i == 6:
			require.Equal(t, change.Sent, dc.Status)
			require.EqualValues(t, thingspace.CodeDeviceStateInvalid, dc.SyncResult.FaultCode)
		default:
			require.Equal(t, change.Sent, dc.Status)
			require.Equal(t, 1, h.accepted(d.ICCID, "suspend"))
			require.NotEmpty(t, dc.RequestID)
		}
	}
}

// Failures in the middle of splitting: a 429 (refused before anything was
// applied: the sub-request is sent again by the next attempt), a lost
// answer and a gateway's 502 (the outcome is unknown: the sub-request
// stays SENDING and the next attempt reconciles it instead of sending
// blindly). Whatever the failures, no device is sent twice and the refused
// ones end isolated.
func TestSendBatchSplitSurvivesFailures(t *testing.T) {
	t.Parallel()
	const other = "0000654321-00001"
	h := newHarness(t, refusingWhole, func(s *setup) { s.sim.Accounts = []string{account, other} })
	h.acts.ReconcileSettle = 300 * time.Millisecond
	const n = 64
	devs, bad := badSuspends(h, n, "8914800604", other)
	bulk, ids := h.newBulk(account, changes("suspend", 1, devs...)...)
	// 3rd request: a 429; 6th: applied by ThingSpace, answer lost; 9th: a
	// 502 from the gateway.
	ft := &faultyTransport{path: "/devices/actions/suspend", faults: map[int]string{3: "429", 6: "lost", 9: "502"}}
	h.acts.ThingSpace = h.newThingSpaceClient(ft.install)

	var res *activities.SendBatchResult
	failures := 0
	for attempt := 1; res == nil; attempt++ {
		require.LessOrEqual(t, attempt, 20, "the batch gets through")
		r, err := h.sendBatch(bulk, 1)
		if err == nil {
			res = r
			break
		}
		ae := appError(t, err)
		require.False(t, ae.NonRetryable(), "attempt %d: %v", attempt, err)
		failures++
		time.Sleep(max(ae.NextRetryDelay(), 10*time.Millisecond))
	}
	require.GreaterOrEqual(t, failures, 3, "each fault failed an attempt")
	require.Equal(t, n, res.Devices)

	// The 429 changed nothing and was sent again; the lost answer and the
	// 502 were reconciled, not resent.
	st := h.stats()
	for _, d := range devs {
		dc := h.change(ids[d.ICCID])
		require.Equal(t, change.Sent, dc.Status, d.ICCID)
		if code, ok := bad[d.ICCID]; ok {
			require.Zero(t, st.AcceptedChanges[d.ICCID]["suspend"])
			require.NotNil(t, dc.SyncResult, d.ICCID)
			require.EqualValues(t, code, dc.SyncResult.FaultCode)
			continue
		}
		require.Equal(t, 1, st.AcceptedChanges[d.ICCID]["suspend"], "device %s sent once", d.ICCID)
	}
	reconciled, retried := 0, 0
	for _, r := range h.batchRequests(bulk, 1) {
		require.Contains(t, []string{db.RequestAccepted, db.RequestRejected}, r.State, r.Key)
		if r.Attempts == 2 {
			retried++
		}
		if r.ErrorCode == "RECONCILED" {
			reconciled++
		}
	}
	require.Equal(t, 1, reconciled, "the sub-request whose answer was lost was reconciled, all its devices found changed")
	require.Equal(t, 2, retried, "the sub-request answered 429, and the one answered 502 (found untouched), were sent again")
	require.LessOrEqual(
		t,
		st.Requests[epSuspend],
		splitBound(n, len(bad))+3,
		"the bound, plus the requests the faults cost",
	)
}

// A batch refused for a reason most of its devices share (restoring
// active devices) is not isolated device by device: the splitting stops
// after a round with more than a handful of refusals, far below two
// requests per device, and nothing is accepted.
func TestSendBatchSplitStopsWhenMostDevicesAreRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, refusingWhole)
	const n = 1000
	devs := devices(n, "8914800605", "active")
	bulk, ids := h.seededBulk(account, "restore", devs...)

	res := h.mustSendBatch(bulk, 1)
	require.Equal(t, db.RequestRejected, res.State)
	requests := h.stats().Requests[epRestore]
	t.Logf("FIGURES split, every device refused: %d devices, %d restore requests", n, requests)
	require.LessOrEqual(t, requests, 1+6*16, "about six times the per-round limit, whatever the batch size")
	for _, d := range devs {
		require.Zero(t, h.accepted(d.ICCID, "restore"))
		dc := h.change(ids[d.ICCID])
		switch dc.Status {
		case change.Failed:
			require.EqualValues(t, thingspace.CodeDeviceStateInvalid, dc.ErrorCode)
			require.Contains(t, dc.ErrorMessage, "too many")
		case change.Sent:
			require.NotNil(t, dc.SyncResult, "isolated before the splitting stopped")
			require.EqualValues(t, thingspace.CodeDeviceStateInvalid, dc.SyncResult.FaultCode)
		default:
			t.Fatalf("device %s left %s", d.ICCID, dc.Status)
		}
	}
}

// faultyTransport answers chosen state-change requests (counted from 1 by
// path) with a fault instead of ThingSpace's answer: "502" (never
// forwarded, the gateway's HTML page: the client cannot tell), "429"
// (throttled by the gateway), "lost" (forwarded and applied, its answer
// replaced by a connection error), "refuse:<code>" (never forwarded, a 400
// with the code).
type faultyTransport struct {
	path   string
	faults map[int]string

	mu   sync.Mutex
	next http.RoundTripper
	n    int
}

func (f *faultyTransport) install(c *thingspace.Config) {
	f.next = http.DefaultTransport
	c.HTTPClient = &http.Client{Transport: f}
}

func (f *faultyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, f.path) {
		return f.next.RoundTrip(r)
	}
	f.mu.Lock()
	f.n++
	mode := f.faults[f.n]
	f.mu.Unlock()
	answer := func(status int, body string) (*http.Response, error) {
		if r.Body != nil {
			_ = r.Body.Close()
		}
		return &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {"application/json"}},
			Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
	}
	switch {
	case mode == "502":
		return answer(http.StatusBadGateway, "<html><body><h1>502 Bad Gateway</h1></body></html>")
	case mode == "429":
		return answer(http.StatusTooManyRequests, `{"fault":{"code":"900800","message":"Message throttled out"}}`)
	case strings.HasPrefix(mode, "refuse:"):
		return answer(
			http.StatusBadRequest,
			`{"errorCode":"`+strings.TrimPrefix(mode, "refuse:")+`","errorMessage":"refused by the test"}`,
		)
	case mode == "lost":
		resp, err := f.next.RoundTrip(r)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
		return nil, errors.New("connection reset by peer (the test lost the answer)")
	}
	return f.next.RoundTrip(r)
}
