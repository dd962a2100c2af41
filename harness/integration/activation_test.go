package integration

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/config"
	revsim "github.com/iot-ops/tsbulk/harness/reviosim"
	"github.com/iot-ops/tsbulk/harness/stack"
	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
)

var activationColumns = []string{"iccid", "imei", "operation", "service_plan", "mdn_zip_code",
	"ppu_first_name", "ppu_last_name", "ppu_address_line1", "ppu_city", "ppu_state", "ppu_zip", "ppu_country",
	"rev_customer_id", "rev_service_type_id", "rev_provider_id", "rev_product_ids", "rev_rates"}

// sites are the places of use of the test's devices: devices at one site
// share their PPU, so they share activation requests.
var sites = []row{
	{
		"ppu_first_name":    "Ada",
		"ppu_last_name":     "Byron",
		"ppu_address_line1": "1 Analytical Way",
		"ppu_city":          "Reno",
		"ppu_state":         "NV",
		"ppu_zip":           "89501",
		"ppu_country":       "USA",
	},
	{
		"ppu_first_name":    "Alan",
		"ppu_last_name":     "Turing",
		"ppu_address_line1": "2 Bletchley Park Rd",
		"ppu_city":          "Austin",
		"ppu_state":         "TX",
		"ppu_zip":           "73301",
		"ppu_country":       "US",
	},
	{
		"ppu_first_name":    "Grace",
		"ppu_last_name":     "Hopper",
		"ppu_address_line1": "3 Cobol Ct",
		"ppu_city":          "Arlington",
		"ppu_state":         "VA",
		"ppu_zip":           "22201-1234",
		"ppu_country":       "USA",
	},
}

func activationRow(d tssim.DeviceSeed, i int, billing bool) row {
	r := row{
		"iccid":        d.ICCID,
		"imei":         d.IMEI,
		"operation":    "activate",
		"service_plan": "m2m_4G",
		"mdn_zip_code": "98801",
	}
	if billing {
		for k, v := range map[string]string{"rev_customer_id": "4242", "rev_service_type_id": "7", "rev_provider_id": "3",
			"rev_product_ids": "501;502", "rev_rates": "9.99;1.50"} {
			r[k] = v
		}
	}
	for k, v := range sites[i%len(sites)] {
		r[k] = v
	}
	return r
}

// TestActivationEndToEnd activates 500 devices with PPU: most are
// pre-active, some already active (PPU update only), some unknown to
// ThingSpace (fail), some lose their callback (confirmed by polling), and
// Rev.io answers some calls with 429 or 5xx.
func TestActivationEndToEnd(t *testing.T) {
	s := newStackWithWorker(t, stack.Options{
		ThingSpace: tssim.Config{CompletionDelay: 500 * time.Millisecond, CompletionJitter: 2 * time.Second,
			CallbackRetryInterval: 500 * time.Millisecond, Seed: 3,
			Faults: tssim.Faults{DropCallbackRate: 0.08}},
		Revio: revsim.Config{Faults: revsim.Faults{ErrorRate: 0.05, RateLimitRate: 0.05}},
		Config: func(c *config.Config) {
			c.Bulk.CallbackTimeout = 6 * time.Second
		},
	})

	fresh := tssim.GenerateDevices(430, "8914800010", "preactive")
	active := tssim.GenerateDevices(40, "8914800011", "active")
	unknown := tssim.GenerateDevices(30, "8914800012", "")
	require.NoError(t, s.TS.Seed(fresh...))
	require.NoError(t, s.TS.Seed(active...))
	var rows []row
	// Rev.io allows 500 calls a minute; billing data on every other device
	// keeps the test's duration reasonable while covering the path.
	billed := map[string]bool{}
	for i, d := range append(append(append([]tssim.DeviceSeed{}, fresh...), active...), unknown...) {
		billed[d.ICCID] = i%2 == 0
		rows = append(rows, activationRow(d, i, billed[d.ICCID]))
	}
	file := writeCSV(t, activationColumns, rows)
	beforeActive := map[string]string{}
	for _, d := range active {
		beforeActive[d.ICCID] = simState(t, s, d.ICCID).MSISDN
	}

	start := time.Now()
	res := submit(t, s, file)
	out := waitBulk(t, s, res, 15*time.Minute)
	elapsed := time.Since(start)

	got := results(t, s, res.ID)
	expectFinal(t, got)
	st := s.TS.Stats(time.Hour)
	for _, d := range fresh {
		r := got[d.ICCID]
		sim := simState(t, s, d.ICCID)
		require.EqualValues(t, change.Processed, r.Status, "%s: %s %s", d.ICCID, r.ErrorCode, r.ErrorMessage)
		require.EqualValues(t, change.Activated, r.Outcome)
		require.Equal(t, "active", sim.State)
		require.NotEmpty(t, sim.MSISDN)
		require.Equal(t, sim.MSISDN, r.MSISDN, "MSISDN recorded for %s", d.ICCID)
		require.Equal(t, 1, st.AcceptedChanges[d.ICCID]["activate"], "one activation request for %s", d.ICCID)
		if billed[d.ICCID] {
			require.EqualValues(t, "CREATED", r.BillingStatus, "%s: %s", d.ICCID, r.BillingError)
		} else {
			require.EqualValues(t, "NONE", r.BillingStatus)
		}
	}
	for _, d := range active {
		r := got[d.ICCID]
		require.EqualValues(t, change.Processed, r.Status, "%s: %s %s", d.ICCID, r.ErrorCode, r.ErrorMessage)
		// Some callbacks are dropped: a PPU update is made only when its
		// own callback says so.
		if r.ConfirmedBy == string(change.ByCallback) {
			require.EqualValues(t, change.AlreadyActivePPU, r.Outcome)
		} else {
			require.EqualValues(t, change.AlreadyActivePPUUnconfirmed, r.Outcome, "%s confirmed by %q", d.ICCID, r.ConfirmedBy)
		}
		require.Equal(t, beforeActive[d.ICCID], r.MSISDN, "the MSISDN it already had")
		// Detection costs the device's place in one batched activation
		// request (answered DeviceAlreadyActive) and nothing more.
		require.Equal(t, 1, st.AcceptedChanges[d.ICCID]["activate"], "activation requests including %s", d.ICCID)
		require.Equal(t, 1, st.AcceptedChanges[d.ICCID]["contactInfo"], "one PPU update for %s", d.ICCID)
	}
	for _, d := range unknown {
		r := got[d.ICCID]
		require.EqualValues(t, change.Failed, r.Status)
		require.EqualValues(t, "REQUEST_FAILED.DeviceNotFound", r.ErrorCode)
		require.EqualValues(t, "NONE", r.BillingStatus, "no Rev.io service without an activation")
	}
	require.Equal(t, len(unknown), out.Errors)

	// Exactly one Rev.io service per activated device, with its billing
	// data and both products.
	services := map[string][]revsim.ServiceRecord{}
	for _, svc := range s.Revio.Services() {
		services[svc.Number2] = append(services[svc.Number2], svc)
	}
	products := map[int64]int{}
	for _, p := range s.Revio.ServiceProducts() {
		products[p.ServiceID]++
	}
	withBilling := 0
	for _, d := range append(append([]tssim.DeviceSeed{}, fresh...), active...) {
		svcs := services[d.ICCID]
		if !billed[d.ICCID] {
			require.Empty(t, svcs, "no billing data, no Rev.io service for %s", d.ICCID)
			continue
		}
		withBilling++
		require.Len(t, svcs, 1, "Rev.io services of %s", d.ICCID)
		require.Equal(t, got[d.ICCID].MSISDN, svcs[0].Number)
		require.Equal(t, int64(4242), svcs[0].CustomerID)
		require.Equal(t, int64(7), svcs[0].ServiceTypeID)
		require.Equal(t, int64(3), svcs[0].ProviderID)
		require.Equal(t, 2, products[svcs[0].ServiceID], "service products of %s", d.ICCID)
	}
	require.Len(t, s.Revio.Services(), withBilling)

	// Some callbacks were dropped: those devices were confirmed by polling.
	byPoll := confirmedByPoll(t, s, res.ID)
	require.Greater(t, byPoll, 0, "dropped callbacks were made up for by polling")

	assertAuditClean(t, s, res.ID)
	assertNoPPUInAudit(t, s)

	activated := len(fresh) + len(active)
	total := 0
	for _, n := range st.Requests {
		total += n
	}
	rv := s.Revio.Stats()
	t.Logf(
		"FIGURES activation: %d devices (%d activated, %d already active, %d failing), wall time %s, %d ThingSpace requests (%.3f per activated device), %d Rev.io calls (%.2f per billed device, %d billed, %d answered 429), %d confirmed by polling",
		len(
			rows,
		),
		len(fresh),
		len(active),
		len(unknown),
		elapsed.Round(time.Second),
		total,
		float64(total)/float64(activated),
		rv.Total,
		float64(rv.Total)/float64(withBilling),
		withBilling,
		rv.RateLimited,
		byPoll,
	)
}

// assertNoPPUInAudit checks that no PPU value reached the audit log.
func assertNoPPUInAudit(t *testing.T, s *stack.Stack) {
	t.Helper()
	var text string
	require.NoError(t, s.Store.Pool.QueryRow(
		context.Background(),
		`SELECT coalesce(string_agg(coalesce(request_body, '') || coalesce(response_body, '') || coalesce(error_message, ''), ' '), '') FROM m2m_log`,
	).Scan(&text))
	for _, site := range sites {
		for _, k := range []string{"ppu_last_name", "ppu_address_line1"} {
			require.NotContains(t, text, site[k], "PPU data in the audit log")
		}
	}
}

// TestRevioServiceNeverCreatedTwice kills the worker after Rev.io created a
// service and before the worker could store its id; the retried step finds
// the service instead of creating a second one.
func TestRevioServiceNeverCreatedTwice(t *testing.T) {
	s := newStack(t, stack.Options{
		ThingSpace: tssim.Config{
			CompletionDelay:       200 * time.Millisecond,
			CallbackRetryInterval: 200 * time.Millisecond,
		},
		// Rev.io creates the service, then holds its answer.
		Revio: revsim.Config{Faults: revsim.Faults{StallCreateService: 5 * time.Minute}},
	})
	devs := tssim.GenerateDevices(1, "8914800013", "preactive")
	require.NoError(t, s.TS.Seed(devs...))
	file := writeCSV(t, activationColumns, []row{activationRow(devs[0], 0, true)})
	w1 := startWorkerProcess(t, s)
	res := submit(t, s, file)

	require.Eventually(t, func() bool { return len(s.Revio.Services()) == 1 }, 2*time.Minute, 100*time.Millisecond,
		"Rev.io should have created the service; worker log:\n%s", w1.log)
	w1.kill()
	stored := countRows(t, s, `SELECT count(*) FROM revio_services`)
	require.Zero(t, stored, "the worker died before storing the service id")

	s.Revio.SetFaults(revsim.Faults{})
	startWorkerProcess(t, s)
	waitBulk(t, s, res, 5*time.Minute)

	require.Len(t, s.Revio.Services(), 1, "no second service")
	var foundBy string
	require.NoError(
		t,
		s.Store.Pool.QueryRow(context.Background(), `SELECT found_by FROM revio_services`).Scan(&foundBy),
	)
	require.Equal(t, "search", foundBy, "the retried step found the service by number")
	r := results(t, s, res.ID)[devs[0].ICCID]
	require.EqualValues(t, "CREATED", r.BillingStatus)
	require.Len(t, s.Revio.ServiceProducts(), 2)

}

// TestPPUUpdateWithoutItsCallbackIsNotCalledMade: polling sees an
// already-active device active whether or not its PPU update was applied,
// and ThingSpace's request status does not cover contactInfo, so without
// the update's own callback the outcome says the address is unproven.
func TestPPUUpdateWithoutItsCallbackIsNotCalledMade(t *testing.T) {
	s := newStackWithWorker(t, stack.Options{
		ThingSpace: tssim.Config{CompletionDelay: 200 * time.Millisecond, Seed: 5,
			Faults: tssim.Faults{DropCallbackRate: 1}},
		Config: func(c *config.Config) {
			c.Bulk.CallbackTimeout = 2 * time.Second
		},
	})
	fresh := tssim.GenerateDevices(3, "8914800015", "preactive")
	active := tssim.GenerateDevices(3, "8914800016", "active")
	require.NoError(t, s.TS.Seed(fresh...))
	require.NoError(t, s.TS.Seed(active...))
	var rows []row
	for i, d := range append(append([]tssim.DeviceSeed{}, fresh...), active...) {
		rows = append(rows, activationRow(d, i, false))
	}
	res := submit(t, s, writeCSV(t, activationColumns, rows))
	waitBulk(t, s, res, 5*time.Minute)

	got := results(t, s, res.ID)
	st := s.TS.Stats(time.Hour)
	for _, d := range fresh {
		r := got[d.ICCID]
		require.EqualValues(t, change.Processed, r.Status, "%s: %s %s", d.ICCID, r.ErrorCode, r.ErrorMessage)
		require.EqualValues(t, change.Activated, r.Outcome, "an activation is proven by the state polling reads")
		require.Equal(t, "poll", r.ConfirmedBy)
	}
	for _, d := range active {
		r := got[d.ICCID]
		require.EqualValues(t, change.Processed, r.Status, "%s: %s %s", d.ICCID, r.ErrorCode, r.ErrorMessage)
		require.EqualValues(t, change.AlreadyActivePPUUnconfirmed, r.Outcome, "%s confirmed by %q", d.ICCID, r.ConfirmedBy)
		require.Equal(t, 1, st.AcceptedChanges[d.ICCID]["contactInfo"], "one PPU update for %s, not re-sent", d.ICCID)
	}
}
