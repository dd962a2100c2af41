package activities_test

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/thingspace"
)

const account = thingspacesim.DefaultAccount

// A batch goes to ThingSpace as one request carrying every device, and a
// second call for the same batch sends nothing and answers the same.
func TestSendBatchSendsOneRequestAndIsIdempotent(t *testing.T) {
	t.Parallel()
	h := newHarness(t, pendingAnHour)
	devs := devices(3, "8914800001", "active")
	bulk, ids := h.seededBulk(account, "suspend", devs...)

	res := h.mustSendBatch(bulk, 1)
	require.Equal(t, db.RequestAccepted, res.State)
	require.Equal(t, 3, res.Devices)
	require.Equal(t, 3, res.Sent)
	require.NotEmpty(t, res.RequestID)
	require.Empty(t, res.ErrorCode)

	st := h.stats()
	require.Equal(t, 1, st.Requests[epSuspend], "one request for the whole batch")
	for _, d := range devs {
		require.Equal(t, 1, st.AcceptedChanges[d.ICCID]["suspend"], "device %s sent once", d.ICCID)
		dc := h.change(ids[d.ICCID])
		require.Equal(t, change.Sent, dc.Status)
		require.Equal(t, res.RequestID, dc.RequestID)
		require.NotNil(t, dc.SentAt)
		sd, ok := h.sim.Device(d.ICCID)
		require.True(t, ok)
		require.Equal(t, thingspacesim.StatePendingSuspend, sd.State)
		require.Equal(t, res.RequestID, sd.PendingRequestID)
	}
	req := h.request(bulk, 1)
	require.Equal(t, requestRow{State: db.RequestAccepted, RequestID: res.RequestID, Devices: 3, Attempts: 1}, req)

	// The activity is retried (or the worker restarted): nothing is sent
	// again, not even a status check, and the answer is the same.
	before := h.stats().Requests
	again := h.mustSendBatch(bulk, 1)
	require.Equal(t, res, again)
	require.Equal(t, before, h.stats().Requests)
	require.Equal(t, 1, h.request(bulk, 1).Attempts)
}

// An activation carries the service plan, the MDN ZIP code and the Primary
// Place of Use; the PPU never reaches the audit log, nor does any secret.
func TestSendBatchActivateCarriesPlanZipAndPPU(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(s *setup) { s.sim.CompletionDelay = 20 * time.Millisecond })
	devs := devices(2, "8914800002", "preactive")
	h.seed(devs...)
	ppu := &thingspace.PlaceOfUse{
		CustomerName: thingspace.CustomerName{FirstName: "Zebulonia", LastName: "Quackenbushley"},
		Address: thingspace.Address{
			AddressLine1: "4821 Wintergreen Hollow Rd",
			AddressLine2: "Suite Marigold",
			City:         "Esperanzaville",
			State:        "CA",
			Zip:          "92101",
			Country:      "USA",
			EmailAddress: "zeb.quack@example.org",
		},
	}
	bulk, ids := h.newBulk(account, withPPU(ppu, activations("92101", 1, devs...))...)

	res := h.mustSendBatch(bulk, 1)
	require.Equal(t, db.RequestAccepted, res.State)
	require.Equal(t, 1, h.stats().Requests[epActivate])
	for _, d := range devs {
		require.Equal(t, 1, h.accepted(d.ICCID, "activate"))
		require.Equal(t, change.Sent, h.change(ids[d.ICCID]).Status)
	}

	// What ThingSpace received, seen from its side once the activations
	// completed: the plan and the PPU are on the device.
	for _, d := range devs {
		require.Eventually(t, func() bool {
			sd, _ := h.sim.Device(d.ICCID)
			return sd.State == thingspacesim.StateActive
		}, 5*time.Second, 10*time.Millisecond)
		got, err := h.acts.ThingSpace.GetDevice(ctx(t), thingspace.DeviceID{ID: d.ICCID, Kind: thingspace.KindICCID})
		require.NoError(t, err)
		require.Equal(t, "M2M_FLEX_5GB", got.CarrierInformations[0].ServicePlan)
		attrs := map[string]string{}
		for _, kv := range got.ExtendedAttributes {
			attrs[kv.Key] = kv.Value
		}
		require.Equal(t, "Zebulonia", attrs["PrimaryPlaceOfUseFirstName"])
		require.Equal(t, "4821 Wintergreen Hollow Rd", attrs["PrimaryPlaceOfUseAddressLine1"])
		require.Equal(t, "Esperanzaville", attrs["PrimaryPlaceOfUseCity"])
	}

	// The request as the audit log has it: plan and ZIP in clear, the PPU
	// replaced whole.
	var activate *auditRow
	rows := h.audit(bulk)
	for i := range rows {
		if rows[i].Operation == thingspace.OpActivate {
			require.Nil(t, activate, "one activate exchange")
			activate = &rows[i]
		}
	}
	require.NotNil(t, activate)
	require.Contains(t, activate.RequestBody, `"servicePlan":"M2M_FLEX_5GB"`)
	require.Contains(t, activate.RequestBody, `"mdnZipCode":"92101"`)
	require.Contains(t, activate.RequestBody, `"primaryPlaceOfUse":"[REDACTED]"`)
	require.Contains(t, activate.RequestBody, devs[0].ICCID)
	require.Equal(t, res.RequestID, activate.RequestID)

	// No row of the audit log (the device lookups above included) holds
	// personal data or a secret.
	all := h.audit("")
	require.NotEmpty(t, all)
	forbidden := []string{"Zebulonia", "Quackenbushley", "Wintergreen", "Marigold", "Esperanzaville", "zeb.quack",
		thingspacesim.DefaultClientSecret, thingspacesim.DefaultPassword}
	sawOAuth, sawLogin := false, false
	for _, r := range all {
		text := strings.Join([]string{r.Path, r.RequestBody, r.ResponseBody, r.ErrorCode, r.ErrorMessage}, "\n")
		for _, f := range forbidden {
			require.NotContains(t, text, f, "audit row %s %s", r.Service, r.Operation)
		}
		switch r.Operation {
		case thingspace.OpOAuth:
			sawOAuth = true
			require.Contains(t, r.ResponseBody, `"access_token":"[REDACTED]"`)
		case thingspace.OpLogin:
			sawLogin = true
			require.Contains(t, r.RequestBody, `"password":"[REDACTED]"`)
			require.Contains(t, r.ResponseBody, `"sessionToken":"[REDACTED]"`)
		}
	}
	require.True(t, sawOAuth && sawLogin, "authentication exchanges are audited too")
}

// /add answers per device: each device change keeps its own result.
func TestSendBatchInventoryRecordsPerDeviceResults(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	fresh := devices(1, "8914800003", "")[0]
	existing := devices(1, "8914800004", "preactive")[0]
	h.seed(existing)
	bulk, ids := h.newBulk(account, changes("inventory", 1, fresh, existing)...)

	res := h.mustSendBatch(bulk, 1)
	require.Equal(t, db.RequestAccepted, res.State)
	require.Empty(t, res.RequestID, "/add is synchronous: no requestId")
	require.Equal(t, 2, res.Sent)
	require.Equal(t, 1, h.stats().Requests[epAdd])

	ok := h.change(ids[fresh.ICCID])
	require.Equal(t, change.Sent, ok.Status)
	require.Equal(t, &db.SyncResult{Success: true, State: change.StatePreActive}, ok.SyncResult)
	sd, found := h.sim.Device(fresh.ICCID)
	require.True(t, found, "the device is now in the account")
	require.Equal(t, thingspacesim.StatePreActive, sd.State)

	dup := h.change(ids[existing.ICCID])
	require.Equal(t, change.Sent, dup.Status)
	require.NotNil(t, dup.SyncResult)
	require.False(t, dup.SyncResult.Success)
	require.Equal(t, change.AddFailed, dup.SyncResult.FaultCode)
	require.Contains(t, dup.SyncResult.FaultMessage, "already exists")

	// The device's workflow sees the synchronous answers when it loads.
	require.False(t, h.requireSyncFault(ids[existing.ICCID], string(change.AddFailed)).Final)
}

// A one-device request is refused synchronously for a device-level reason:
// the refusal is kept for the device's workflow and the device stays in
// flight until the workflow has dealt with it.
func TestSendBatchOneDeviceRefusedSynchronously(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	dev := devices(1, "8914800005", "active")[0]
	h.seed(dev)
	bulk, ids := h.newBulk(account, changes("restore", 1, dev)...)

	res := h.mustSendBatch(bulk, 1)
	require.Equal(t, db.RequestRejected, res.State)
	require.Equal(t, 1, res.Devices)
	require.Equal(t, 1, h.stats().Requests[epRestore])
	require.Zero(t, h.accepted(dev.ICCID, "restore"))

	dc := h.change(ids[dev.ICCID])
	require.Equal(t, change.Sent, dc.Status, "in flight until its workflow completes it")
	require.NotNil(t, dc.SyncResult)
	require.False(t, dc.SyncResult.Success)
	require.EqualValues(t, thingspace.CodeDeviceStateInvalid, dc.SyncResult.FaultCode)
	require.NotEmpty(t, dc.SyncResult.FaultMessage)
	require.Nil(t, dc.SentAt, "ThingSpace accepted nothing")

	sd, _ := h.sim.Device(dev.ICCID)
	require.Equal(t, thingspacesim.StateActive, sd.State)

	h.requireSyncFault(ids[dev.ICCID], thingspace.CodeDeviceStateInvalid)

	// Asking again changes nothing.
	again := h.mustSendBatch(bulk, 1)
	require.Equal(t, res, again)
	require.Equal(t, 1, h.stats().Requests[epRestore])
}

// ThingSpace refuses the request as a whole: its devices end as ERROR with
// ThingSpace's code and are no longer in flight.
func TestSendBatchWholeRequestRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	devs := devices(2, "8914800006", "active")
	bulk, ids := h.seededBulk("0000999999-00001", "suspend", devs...)

	res := h.mustSendBatch(bulk, 1)
	require.Equal(t, db.RequestRejected, res.State)
	require.Equal(t, thingspace.CodeAccountNotFound, res.ErrorCode)
	require.Equal(t, 1, h.stats().Requests[epSuspend])
	for _, d := range devs {
		require.Zero(t, h.accepted(d.ICCID, "suspend"))
		dc := h.change(ids[d.ICCID])
		require.Equal(t, change.Failed, dc.Status)
		require.EqualValues(t, thingspace.CodeAccountNotFound, dc.ErrorCode)
		require.NotEmpty(t, dc.ErrorMessage)
		require.NotNil(t, dc.CompletedAt)
		_, err := h.store.InFlightChange(ctx(t), d.ICCID)
		require.ErrorIs(t, err, db.ErrNotFound)
	}
}

// A device whose ICCID is in flight in another bulk change is refused with
// DEVICE_BUSY naming that bulk change, and is not sent; the rest of the
// batch is.
func TestSendBatchRefusesDeviceInFlightElsewhere(t *testing.T) {
	t.Parallel()
	h := newHarness(t, pendingAnHour)
	busy := devices(1, "8914800007", "active")[0]
	free := devices(1, "8914800008", "active")[0]
	h.seed(busy, free)

	first, _ := h.newBulk(account, changes("suspend", 1, busy)...)
	h.mustSendBatch(first, 1)

	second, ids := h.newBulk(account, changes("suspend", 1, busy, free)...)
	res := h.mustSendBatch(second, 1)
	require.Equal(t, db.RequestAccepted, res.State)
	require.Equal(t, 2, res.Devices)
	require.Equal(t, 1, res.Sent)

	dc := h.change(ids[busy.ICCID])
	require.Equal(t, change.Failed, dc.Status)
	require.Equal(t, change.DeviceBusy, dc.ErrorCode)
	require.Contains(t, dc.ErrorMessage, first)
	require.Equal(t, change.Sent, h.change(ids[free.ICCID]).Status)

	st := h.stats()
	require.Equal(t, 2, st.Requests[epSuspend])
	require.Equal(t, 1, st.AcceptedChanges[busy.ICCID]["suspend"], "sent by the first bulk change only")
	require.Equal(t, 1, st.AcceptedChanges[free.ICCID]["suspend"])

	// A batch whose every device is refused sends nothing at all.
	third, ids3 := h.newBulk(account, changes("suspend", 1, busy)...)
	res3 := h.mustSendBatch(third, 1)
	require.Equal(t, db.RequestRejected, res3.State)
	require.Equal(t, "NOTHING_TO_SEND", res3.ErrorCode)
	require.Zero(t, res3.Sent)
	require.Equal(t, change.DeviceBusy, h.change(ids3[busy.ICCID]).ErrorCode)
	require.Equal(t, 2, h.stats().Requests[epSuspend])
}

// A line that already had its daily share of state changes is refused with
// DAILY_LIMIT and not sent. Changes older than 24 hours and inventory
// additions do not count.
func TestSendBatchRefusesDeviceOverDailyLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, pendingAnHour)
	h.acts.Limits.ActionsPerLinePerDay = 2
	over := devices(1, "8914800009", "active")[0]
	under := devices(1, "8914800010", "active")[0]
	h.seed(over, under)

	// Earlier device changes of the same lines, in other bulk changes.
	h.history(over, "suspend", 2*time.Hour)
	h.history(over, "restore", time.Hour)
	h.history(over, "suspend", 25*time.Hour) // outside the window
	h.history(under, "restore", 3*time.Hour)
	h.history(under, "inventory", 30*time.Minute) // not a state change

	bulk, ids := h.newBulk(account, changes("suspend", 1, over, under)...)
	res := h.mustSendBatch(bulk, 1)
	require.Equal(t, db.RequestAccepted, res.State)
	require.Equal(t, 1, res.Sent)

	dc := h.change(ids[over.ICCID])
	require.Equal(t, change.Failed, dc.Status)
	require.Equal(t, change.DailyLimit, dc.ErrorCode)
	require.Contains(t, dc.ErrorMessage, "2 state changes")
	require.Zero(t, h.accepted(over.ICCID, "suspend"))

	require.Equal(t, change.Sent, h.change(ids[under.ICCID]).Status)
	require.Equal(t, 1, h.accepted(under.ICCID, "suspend"))
}

// history records an earlier, finished device change of the device,
// sent the given time ago.
func (h *harness) history(dev thingspacesim.DeviceSeed, op change.Operation, ago time.Duration) {
	h.t.Helper()
	_, ids := h.newBulk(account, changes(op, 1, dev)...)
	h.exec(`UPDATE device_changes SET status = 'PROCESSED', submitted_at = now() - make_interval(secs => $2),
		completed_at = now() WHERE id = $1`, ids[dev.ICCID], ago.Seconds())
}

// A 5xx answer does not say whether ThingSpace applied the change (this
// one, the simulator's ErrorRate, comes before any processing): the
// activity fails retryably, the request stays SENDING, and the next attempt
// checks the devices at ThingSpace, finds them untouched, and once the
// settle time has passed sends the request exactly once more.
func TestSendBatchServerErrorIsReconciledThenSentOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, pendingAnHour)
	const settle = 500 * time.Millisecond
	h.acts.ReconcileSettle = settle
	devs := devices(2, "8914800011", "active")
	bulk, ids := h.seededBulk(account, "suspend", devs...)
	// Tokens first, so that the fault hits the state change itself.
	require.NoError(t, h.run(nil, h.acts.CheckThingSpaceAuth, ""))

	h.sim.SetFaults(thingspacesim.Faults{ErrorRate: 1})
	_, err := h.sendBatch(bulk, 1)
	ae := appError(t, err)
	require.False(t, ae.NonRetryable())
	require.Equal(t, activities.ErrTypeThingSpace, ae.Type())
	require.Equal(t, 1, h.stats().Requests[epSuspend], "a state change is not retried by the transport")
	req := h.request(bulk, 1)
	require.Equal(t, db.RequestSending, req.State, "the outcome is unknown")
	for _, d := range devs {
		require.Zero(t, h.accepted(d.ICCID, "suspend"))
		require.Equal(t, change.Sending, h.change(ids[d.ICCID]).Status)
	}

	h.sim.SetFaults(thingspacesim.Faults{})
	_, err = h.sendBatch(bulk, 1)
	ae = appError(t, err)
	require.False(t, ae.NonRetryable())
	require.Positive(t, ae.NextRetryDelay(), "too early to tell untouched from refused")
	require.LessOrEqual(t, ae.NextRetryDelay(), settle)
	require.Equal(t, 1, h.stats().Requests[epSuspend], "nothing sent before the settle time")

	time.Sleep(ae.NextRetryDelay() + 50*time.Millisecond)
	h.requireSuspended(h.mustSendBatch(bulk, 1), 2, ids, devs)
	req = h.request(bulk, 1)
	require.Equal(t, 2, req.Attempts)
	require.Empty(t, req.ErrorCode)
}

// A 429 comes back as a retryable error that waits exactly the
// Retry-After ThingSpace asked for.
func TestSendBatchRateLimitedWaitsForRetryAfter(t *testing.T) {
	t.Parallel()
	h := newHarness(t, pendingAnHour, func(s *setup) { s.sim.Limits.ActivateRequestsPerMinute = 1 })
	devs := devices(2, "8914800012", "preactive")
	h.seed(devs...)
	cs := append(activations("30301", 1, devs[0]), activations("30301", 2, devs[1])...)
	bulk, ids := h.newBulk(account, cs...)
	h.mustSendBatch(bulk, 1)

	_, err := h.sendBatch(bulk, 2)
	ae := appError(t, err)
	require.False(t, ae.NonRetryable())
	require.Equal(t, activities.ErrTypeThingSpace, ae.Type())

	// Retry-After as ThingSpace sent it (its fault text repeats it).
	var throttled *auditRow
	rows := h.audit(bulk)
	for i := range rows {
		if rows[i].HTTPStatus == 429 {
			throttled = &rows[i]
		}
	}
	require.NotNil(t, throttled, "the 429 is audited")
	m := regexp.MustCompile(`Retry after (\d+) seconds`).FindStringSubmatch(throttled.ResponseBody)
	require.Len(t, m, 2, throttled.ResponseBody)
	secs, err := strconv.Atoi(m[1])
	require.NoError(t, err)
	require.Positive(t, secs)
	require.Equal(t, time.Duration(secs)*time.Second, ae.NextRetryDelay())

	require.Equal(t, db.RequestRetry, h.request(bulk, 2).State)
	require.Equal(t, change.Sending, h.change(ids[devs[1].ICCID]).Status)
	require.Zero(t, h.accepted(devs[1].ICCID, "activate"))
}

// Refused ThingSpace credentials stop everything: a non-retryable error of
// its own type, nothing sent, and the unsent devices can be failed.
func TestSendBatchInvalidCredentials(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(s *setup) { s.clientSecret = "not-the-secret" })
	devs := devices(2, "8914800013", "active")
	bulk, ids := h.seededBulk(account, "suspend", devs...)

	_, err := h.sendBatch(bulk, 1)
	ae := appError(t, err)
	require.True(t, ae.NonRetryable())
	require.Equal(t, activities.ErrTypeInvalidCredentials, ae.Type())
	st := h.stats()
	require.Zero(t, st.Requests[epSuspend])
	require.Zero(t, st.OAuthTokensIssued)
	require.Equal(t, db.RequestRetry, h.request(bulk, 1).State)

	// The credential check says the same, without asking ThingSpace again
	// (five refusals would lock the account).
	oauthCalls := sumRequests(h.stats())
	err = h.run(nil, h.acts.CheckThingSpaceAuth, "")
	ae = appError(t, err)
	require.True(t, ae.NonRetryable())
	require.Equal(t, activities.ErrTypeInvalidCredentials, ae.Type())
	require.Equal(t, oauthCalls, sumRequests(h.stats()))

	// What the bulk change workflow does next: end the unsent devices.
	var ended int
	require.NoError(t, h.run(&ended, h.acts.FailUnsent, activities.FailUnsentInput{BulkChangeID: bulk, FromBatch: 1,
		Code: change.AuthFailed, Message: "credentials refused"}))
	require.Equal(t, 2, ended)
	for _, d := range devs {
		dc := h.change(ids[d.ICCID])
		require.Equal(t, change.Failed, dc.Status)
		require.Equal(t, change.AuthFailed, dc.ErrorCode)
	}
	require.Equal(t, db.RequestRejected, h.request(bulk, 1).State)
}

func sumRequests(st thingspacesim.Stats) int {
	n := 0
	for _, v := range st.Requests {
		n += v
	}
	return n
}

// requireSuspended checks a batch of suspensions ThingSpace accepted after
// sent requests in all: each device's suspension was accepted once and its
// change is SUBMITTED under the request's id.
func (h *harness) requireSuspended(
	res *activities.SendBatchResult,
	sent int,
	ids map[string]int64,
	devs []thingspacesim.DeviceSeed,
) {
	h.t.Helper()
	require.Equal(h.t, db.RequestAccepted, res.State)
	require.NotEmpty(h.t, res.RequestID)
	require.Equal(h.t, sent, h.stats().Requests[epSuspend])
	for _, d := range devs {
		require.Equal(h.t, 1, h.accepted(d.ICCID, "suspend"))
		dc := h.change(ids[d.ICCID])
		require.Equal(h.t, change.Sent, dc.Status)
		require.Equal(h.t, res.RequestID, dc.RequestID)
	}
}

// An activation of devices known by their ICCID alone carries the SKU the
// file gave, in lieu of their IMEI; ThingSpace accepts it and activates
// them.
func TestSendBatchActivateByICCIDCarriesSKU(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(s *setup) { s.sim.CompletionDelay = 20 * time.Millisecond })
	devs := devices(2, "8914800005", "preactive")
	h.seed(devs...)
	cs := activations("98801", 1, devs...)
	for i := range cs {
		cs[i].seed.IMEI = "" // the file named the devices by ICCID only
		cs[i].params.SkuNumber = "SM-T387VZKAVZW"
	}
	bulk, ids := h.newBulk(account, cs...)

	res := h.mustSendBatch(bulk, 1)
	require.Equal(t, db.RequestAccepted, res.State, "%+v", res)
	for _, d := range devs {
		require.Equal(t, change.Sent, h.change(ids[d.ICCID]).Status)
		require.Eventually(t, func() bool {
			sd, _ := h.sim.Device(d.ICCID)
			return sd.State == thingspacesim.StateActive
		}, 5*time.Second, 10*time.Millisecond)
	}
	for _, r := range h.audit(bulk) {
		if r.Operation == thingspace.OpActivate {
			require.Contains(t, r.RequestBody, `"skuNumber":"SM-T387VZKAVZW"`)
			require.NotContains(t, r.RequestBody, `"kind":"imei"`)
		}
	}
}
