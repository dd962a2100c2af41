package integration

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/harness/stack"
	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
)

// mixedFile builds a bulk change of the four non-activation operations:
// per operation n devices seeded in the state the operation needs, plus a
// few that must fail (ThingSpace refuses them, or they are in the wrong
// state). It returns the file and the expected outcome per ICCID.
type expectation struct {
	operation string
	state     string      // simulator state afterwards
	errCode   change.Code // "" = PROCESSED
}

func mixedFile(t *testing.T, s *stack.Stack, n int) (string, map[string]expectation) {
	t.Helper()
	want := map[string]expectation{}
	var rows []row
	add := func(seeds []tssim.DeviceSeed, op, state string, code change.Code, seed bool) {
		if seed {
			require.NoError(t, s.TS.Seed(seeds...))
		}
		for _, d := range seeds {
			rows = append(rows, row{"iccid": d.ICCID, "imei": d.IMEI, "operation": op})
			want[d.ICCID] = expectation{operation: op, state: state, errCode: code}
		}
	}
	add(tssim.GenerateDevices(n, "8914800001", "active"), "suspend", "suspend", "", true)
	add(tssim.GenerateDevices(n, "8914800002", "suspend"), "restore", "active", "", true)
	add(tssim.GenerateDevices(n, "8914800003", "active"), "deactivate", "deactive", "", true)
	add(tssim.GenerateDevices(n, "8914800004", ""), "inventory", "pre-active", "", false)
	// Must fail: restore of active devices (wrong state), and devices
	// ThingSpace refuses.
	add(
		tssim.GenerateDevices(10, "8914800005", "active"),
		"restore",
		"active",
		"INPUT_INVALID.DeviceState.Invalid",
		true,
	)
	refused := tssim.GenerateDevices(10, "8914800006", "active")
	for i := range refused {
		refused[i].FailWith = "UnifiedWebService.REQUEST_FAILED.DeviceNotFound"
	}
	add(refused, "suspend", "active", "REQUEST_FAILED.DeviceNotFound", true)
	// Interleave operations, as an operator's spreadsheet would.
	shuffled := make([]row, 0, len(rows))
	for i := 0; i < len(rows); i++ {
		j := (i * 7919) % len(rows)
		shuffled = append(shuffled, rows[j])
	}
	return writeCSV(t, []string{"iccid", "imei", "operation"}, shuffled), want
}

// assertOutcome checks every device change against its expectation and
// returns how many device changes must have ended in ERROR.
//
// A device whose callback the simulator dropped is judged by polling, which
// sees only the device's state: a refused change shows as the device still
// in its old state (POLL_STATE_MISMATCH, because ThingSpace's reason went
// with the callback and request status carries no code), and a restore of a
// device that was already active is indistinguishable from a successful one.
// So is such a restore whose request was answered 5xx: the outcome of that
// request is unknown, reconciling finds the device already in the target
// state, counts it as reached and never sends it (it may have been the
// request that moved it), and polling confirms it.
func assertOutcome(t *testing.T, s *stack.Stack, bulkID string, want map[string]expectation) (wantErrors int) {
	t.Helper()
	rows := results(t, s, bulkID)
	require.Len(t, rows, len(want), "one device change per device")
	expectFinal(t, rows)
	st := s.TS.Stats(time.Hour)
	uncalled := withoutDeliveredCallback(s)
	for iccid, w := range want {
		r := rows[iccid]
		sent := 1
		if w.errCode != "" && changesSent(st, iccid) == 0 && w.state == targetOf(w.operation) {
			w.errCode, sent = "", 0
			t.Logf("%s %s: reconciled as reached, never sent; expecting the poll verdict", w.operation, iccid)
			require.Empty(t, r.RequestID, "%s %s: reconciled, no requestId", w.operation, iccid)
			require.EqualValues(t, change.ByPoll, r.ConfirmedBy, "%s %s: confirmed by polling", w.operation, iccid)
		}
		if w.errCode != "" && uncalled[iccid] {
			if w.state == targetOf(w.operation) {
				w.errCode = ""
			} else {
				w.errCode = change.PollStateMismatch
			}
			t.Logf("%s %s: failure callback dropped, expecting the poll verdict %q", w.operation, iccid, w.errCode)
		}
		if w.errCode == "" {
			require.Equal(
				t,
				change.Processed,
				r.Status,
				"%s %s: %s %s",
				w.operation,
				iccid,
				r.ErrorCode,
				r.ErrorMessage,
			)
		} else {
			wantErrors++
			require.EqualValues(t, change.Failed, r.Status, "%s %s should fail", w.operation, iccid)
			require.Equal(t, w.errCode, r.ErrorCode, "%s %s", w.operation, iccid)
		}
		sim := simState(t, s, iccid)
		require.Equal(t, w.state, sim.State, "ThingSpace state of %s after %s", iccid, w.operation)
		// A deactivation removes the device from ThingSpace's inventory
		// (thingspace.delete_after_deactivation, default true), and says so.
		removed := w.operation == "deactivate" && r.Status == change.Processed
		require.Equal(t, removed, sim.Removed, "%s %s: removed from ThingSpace", w.operation, iccid)
		require.Equal(t, removed, r.RemovedFromThingSpace, "%s %s: results say removed", w.operation, iccid)
		// Exactly one state-change request per device change reached
		// ThingSpace (requests it refused before applying anything are not
		// counted), none for a device reconciled as reached.
		require.Equal(t, sent, changesSent(st, iccid), "state-change requests accepted for %s (%s)", iccid, w.operation)
	}
	return wantErrors
}

// withoutDeliveredCallback lists the devices whose callback never reached
// the receiver (the simulator dropped every copy).
func withoutDeliveredCallback(s *stack.Stack) map[string]bool {
	delivered := map[string]bool{}
	seen := map[string]bool{}
	for _, e := range s.TS.DeliveryLog() {
		seen[e.ICCID] = true
		if e.Outcome == tssim.OutcomeDelivered {
			delivered[e.ICCID] = true
		}
	}
	out := map[string]bool{}
	for iccid := range seen {
		if !delivered[iccid] {
			out[iccid] = true
		}
	}
	return out
}

// targetOf is the simulator state an operation of mixedFile leads to.
func targetOf(op string) string {
	return map[string]string{
		"suspend":    tssim.StateSuspend,
		"restore":    tssim.StateActive,
		"deactivate": tssim.StateDeactive,
		"inventory":  tssim.StatePreActive,
	}[op]
}

// TestMixedBulkChangeWithFaults runs 1,220 devices through suspend,
// restore, deactivate and inventory while ThingSpace answers 5% of requests
// with 5xx and drops or duplicates 5% of callbacks each.
func TestMixedBulkChangeWithFaults(t *testing.T) {
	s := newStackWithWorker(t, stack.Options{
		ThingSpace: tssim.Config{
			CompletionDelay: 300 * time.Millisecond, CompletionJitter: time.Second, CallbackRetryInterval: 500 * time.Millisecond,
			Faults: tssim.Faults{ErrorRate: 0.05, DropCallbackRate: 0.05, DuplicateCallbackRate: 0.05},
			Seed:   42,
		},
		Config: func(c *config.Config) {
			c.Bulk.CallbackTimeout = 8 * time.Second
			c.Bulk.DefaultSite = "WAREHOUSE-1"
		},
	})
	file, want := mixedFile(t, s, 300)

	start := time.Now()
	res := submit(t, s, file)
	out := waitBulk(t, s, res, 15*time.Minute)
	elapsed := time.Since(start)

	require.Equal(t, len(want), out.Total)
	wantErrors := assertOutcome(t, s, res.ID, want)
	require.Equal(t, wantErrors, out.Errors, "the devices meant to fail, and only them")
	require.Equal(t, len(want)-wantErrors, out.Processed)

	ctx := context.Background()
	b := bulkChange(t, s, res.ID)
	require.EqualValues(t, change.BulkFinished, b.Status)
	require.Equal(t, out.Processed, b.Processed)

	// Duplicated callbacks were stored once, their copies counted.
	stored, copies, err := s.Store.CallbackStats(ctx, res.ID)
	require.NoError(t, err)
	require.Greater(t, copies, stored, "duplicate callbacks arrived and were absorbed")

	// Devices left in inventory got the default site; others did not.
	var sited, inventory int
	require.NoError(t, s.Store.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE site = 'WAREHOUSE-1'),
		count(*) FILTER (WHERE status = 'preactive') FROM devices`).Scan(&sited, &inventory))
	require.Equal(t, 300, inventory)
	require.Equal(t, inventory, sited)
	// Our view of the devices knows which ones ThingSpace no longer has:
	// the deactivated ones.
	removed := countRows(t, s, `SELECT count(*) FROM devices d JOIN device_changes dc ON dc.iccid = d.iccid
		WHERE dc.bulk_change_id = $1 AND d.removed_from_thingspace_at IS NOT NULL`, res.ID)
	require.Equal(t, 300, removed)
	// Every device of the bulk change is known, those whose change failed
	// included.
	known := countRows(t, s, `SELECT count(*) FROM devices d JOIN device_changes dc ON dc.iccid = d.iccid
		WHERE dc.bulk_change_id = $1`, res.ID)
	require.Equal(t, len(want), known)

	// Every ThingSpace exchange is in the audit log, without secrets.
	assertAuditClean(t, s, res.ID)

	st := s.TS.Stats(time.Hour)
	total := 0
	for _, n := range st.Requests {
		total += n
	}
	t.Logf(
		"FIGURES mixed: %d devices, wall time %s, %d ThingSpace API requests (%.3f per device), batches %d, callbacks stored %d (+%d duplicate copies)",
		len(
			want,
		),
		elapsed.Round(time.Second),
		total,
		float64(total)/float64(len(want)),
		b.Batches,
		stored,
		copies-stored,
	)
}

// assertAuditClean checks that the audit log holds the bulk change's
// exchanges and that no secret of the stack appears in it.
func assertAuditClean(t *testing.T, s *stack.Stack, bulkID string) {
	t.Helper()
	ctx := context.Background()
	counts, err := s.Store.AuditCount(ctx, bulkID)
	require.NoError(t, err)
	require.Greater(t, counts["thingspace"], 0)
	rows, err := s.Store.Pool.Query(
		ctx,
		`SELECT coalesce(request_body, '') || coalesce(response_body, '') || coalesce(error_message, '') FROM m2m_log`,
	)
	require.NoError(t, err)
	defer rows.Close()
	secrets := []string{
		s.Config.ThingSpace.ClientSecret.Reveal(),
		s.Config.ThingSpace.Password.Reveal(),
		stack.CallbackPassword,
		stack.RevioPassword,
		stack.RevioKey,
	}
	for rows.Next() {
		var text string
		require.NoError(t, rows.Scan(&text))
		for _, secret := range secrets {
			require.False(t, strings.Contains(text, secret), "a secret leaked into the audit log: %.200s", text)
		}
	}
	require.NoError(t, rows.Err())
	var payloads string
	require.NoError(
		t,
		s.Store.Pool.QueryRow(ctx, `SELECT coalesce(string_agg(payload::text, ''), '') FROM callbacks`).Scan(&payloads),
	)
	require.NotContains(t, payloads, stack.CallbackPassword, "stored callbacks keep no listener password")
}

// TestSplitIsolatesRefusedDevices runs a bulk change of 200 suspends, of
// which three cannot be suspended (ThingSpace does not know one, one
// belongs to another account: Device.Account.Invalid, one is already
// suspended), against a
// ThingSpace that refuses a whole multi-device request when any of its
// devices is refused. Only those three end in ERROR, with ThingSpace's
// codes; the 197 others are suspended, each by exactly one accepted
// request; and isolating the three took no more state-change requests than
// the bound of splitting in halves (1 + 2k⌈log2 n⌉).
func TestSplitIsolatesRefusedDevices(t *testing.T) {
	const other = "0000654321-00001"
	s := newStackWithWorker(t, stack.Options{
		ThingSpace: tssim.Config{
			Accounts:           []string{tssim.DefaultAccount, other},
			RefuseWholeRequest: true,
			CompletionDelay:    300 * time.Millisecond, CompletionJitter: 500 * time.Millisecond,
			CallbackRetryInterval: 500 * time.Millisecond,
			Seed:                  11,
		},
		Config: func(c *config.Config) {
			c.Bulk.BatchSize = 200 // the whole file in one request
			c.Bulk.CallbackTimeout = 20 * time.Second
		},
	})

	const n = 200
	devs := tssim.GenerateDevices(n, "8914800901", "active")
	unknown, foreign, suspended := 17, 101, 180
	devs[foreign].Account = other
	devs[suspended].State = "suspend"
	bad := map[string]string{
		devs[unknown].ICCID:   "REQUEST_FAILED.DeviceNotFound",
		devs[foreign].ICCID:   "INPUT_INVALID.Device.Account.Invalid",
		devs[suspended].ICCID: "INPUT_INVALID.DeviceState.Invalid",
	}
	var seeded []tssim.DeviceSeed
	rows := make([]row, n)
	for i, d := range devs {
		if i != unknown {
			seeded = append(seeded, d)
		}
		rows[i] = row{"iccid": d.ICCID, "operation": "suspend"}
	}
	require.NoError(t, s.TS.Seed(seeded...))
	file := writeCSV(t, []string{"iccid", "operation"}, rows)

	res := submit(t, s, file)
	require.Equal(t, 1, res.BulkChange.Batches, "one batch, one request to start with")
	out := waitBulk(t, s, res, 10*time.Minute)
	require.Equal(t, n, out.Total)
	require.Equal(t, len(bad), out.Errors, "only the refused devices fail")
	require.Equal(t, n-len(bad), out.Processed)

	results := results(t, s, res.ID)
	require.Len(t, results, n)
	expectFinal(t, results)
	st := simStats(t, s)
	for _, d := range devs {
		r := results[d.ICCID]
		if code, ok := bad[d.ICCID]; ok {
			require.EqualValues(t, change.Failed, r.Status, "refused device %s", d.ICCID)
			require.EqualValues(t, code, r.ErrorCode, "ThingSpace's code for %s", d.ICCID)
			require.Zero(t, st.AcceptedChanges[d.ICCID]["suspend"])
			continue
		}
		require.EqualValues(t, change.Processed, r.Status, "%s: %s %s", d.ICCID, r.ErrorCode, r.ErrorMessage)
		require.NotEmpty(t, r.RequestID, "%s holds the requestId of the sub-request that carried it", d.ICCID)
		require.Equal(t, tssim.StateSuspend, simState(t, s, d.ICCID).State)
		require.Equal(t, 1, st.AcceptedChanges[d.ICCID]["suspend"], "suspend requests accepted for %s", d.ICCID)
	}

	requests := st.Requests["POST /api/m2m/v1/devices/actions/suspend"]
	bound := 1 + 2*len(bad)*int(math.Ceil(math.Log2(n)))
	t.Logf(
		"FIGURES split: %d suspends, %d refused by ThingSpace: %d suspend requests (bound %d; unsplit: 1 request and %d devices in ERROR)",
		n,
		len(bad),
		requests,
		bound,
		n,
	)
	require.Greater(t, requests, 1, "the batch was split")
	require.LessOrEqual(t, requests, bound)
}
