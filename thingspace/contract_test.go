package thingspace

// Contract tests: the client against the simulator over real HTTP. The
// simulator defines its own wire types, so these catch mistakes on either
// side. Only the simulator's exported API is used.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/harness/thingspacesim"
)

const (
	keyOAuth    = "POST /api/ts/v1/oauth2/token"
	keyLogin    = "POST /api/m2m/v1/session/login"
	keyActivate = "POST /api/m2m/v1/devices/actions/activate"
	keySuspend  = "POST /api/m2m/v1/devices/actions/suspend"
	keyAdd      = "POST /api/m2m/v1/devices/actions/add"
	keyList     = "POST /api/m2m/v1/devices/actions/list"
)

func newSim(t *testing.T, cfg thingspacesim.Config) (*thingspacesim.Simulator, string) {
	t.Helper()
	if cfg.CompletionDelay == 0 {
		cfg.CompletionDelay = 20 * time.Millisecond
	}
	if cfg.CallbackRetryInterval == 0 {
		cfg.CallbackRetryInterval = 20 * time.Millisecond
	}
	if cfg.Seed == 0 {
		cfg.Seed = 42
	}
	sim := thingspacesim.New(cfg)
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() {
		sim.Close()
		srv.Close()
	})
	return sim, srv.URL
}

func simClient(t *testing.T, baseURL string, rec *recorder, mods ...func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		BaseURL:      baseURL,
		ClientID:     thingspacesim.DefaultClientID,
		ClientSecret: thingspacesim.DefaultClientSecret,
		Username:     thingspacesim.DefaultUsername,
		Password:     thingspacesim.DefaultPassword,
		AccountName:  thingspacesim.DefaultAccount,
		HTTPTimeout:  5 * time.Second,
	}
	if rec != nil {
		cfg.Observer = rec.observe
		cfg.Limiter = rec
	}
	for _, m := range mods {
		m(&cfg)
	}
	c, err := New(cfg)
	require.NoError(t, err)
	fastRetries(c)
	return c
}

func refOf(d thingspacesim.DeviceSeed) DeviceRef { return ICCIDRef(d.ICCID, d.IMEI) }

func contractPPU() PlaceOfUse {
	return PlaceOfUse{
		CustomerName: CustomerName{FirstName: "Wilhelmina", LastName: "Contractson"},
		Address: Address{AddressLine1: "1600 Testing Parkway", City: "Mountainview",
			State: "CA", Zip: "94043", Country: "USA"},
	}
}

func TestContractDeviceLifecycle(t *testing.T) {
	sim, url := newSim(t, thingspacesim.Config{Limits: thingspacesim.Limits{ActionsPerLinePerDay: -1}})
	devs := thingspacesim.GenerateDevices(3, "891480000100", "preactive")
	require.NoError(t, sim.Seed(devs...))
	l := newListener(t)
	rec := &recorder{}
	c := simClient(t, url, rec)
	ctx := context.Background()

	// Callback listener registration.
	require.NoError(t, c.RegisterCallback(ctx, "", CallbackRegistration{Name: CarrierServiceCallback, URL: l.url,
		Username: "cb-user", Password: "cb-listener-secret"}))
	ls, err := c.ListCallbacks(ctx, "")
	require.NoError(t, err)
	require.Len(t, ls, 1)
	assert.Equal(t, CallbackListener{AccountName: thingspacesim.DefaultAccount, ServiceName: CarrierServiceCallback,
		URL: l.url, Username: "cb-user"}, ls[0])

	d0 := devs[0]
	waitState := func(want change.State) *Device {
		t.Helper()
		dev, err := c.GetDevice(ctx, DeviceID{ID: d0.ICCID, Kind: KindICCID})
		require.NoError(t, err)
		assert.Equal(t, want, dev.State(), "%+v", dev.CarrierInformations)
		return dev
	}
	waitState(change.StatePreActive)

	// Activate one device: requestId, status polling, callback with MSISDN.
	reqID, err := c.Activate(
		ctx,
		ActivateRequest{Devices: []DeviceRef{refOf(d0)}, ServicePlan: "m2m_4G", MdnZipCode: "98801"},
	)
	require.NoError(t, err)
	require.NotEmpty(t, reqID)
	st, err := c.RequestStatus(ctx, "", reqID)
	require.NoError(t, err)
	assert.Contains(t, []string{RequestPending, RequestSuccess}, st.Status)
	cb := l.await(t, reqID, 1)[0]
	assert.True(t, cb.Succeeded())
	assert.Equal(t, d0.ICCID, cb.ICCID())
	assert.Equal(t, "cb-user", cb.Username)
	assert.Equal(t, "cb-listener-secret", cb.Password, "listener credentials are echoed in the body")
	require.NotEmpty(t, cb.MSISDN(), "activateResponse carries the new number")
	assert.Contains(t, cb.DeviceResponse, "activateResponse")
	st, err = c.RequestStatus(ctx, thingspacesim.DefaultAccount, reqID)
	require.NoError(t, err)
	assert.Equal(t, RequestSuccess, st.Status)
	dev := waitState(change.StateActive)
	assert.Equal(t, cb.MSISDN(), dev.MSISDN())
	snap, ok := sim.Device(d0.ICCID)
	require.True(t, ok)
	assert.Equal(t, cb.MSISDN(), snap.MSISDN)

	// PPU update of the active device.
	reqID, err = c.UpdateContactInfo(
		ctx,
		ContactInfoRequest{Devices: []DeviceRef{refOf(d0)}, PrimaryPlaceOfUse: contractPPU()},
	)
	require.NoError(t, err)
	assert.True(t, l.await(t, reqID, 1)[0].Succeeded())
	dev = waitState(change.StateActive)
	assert.NotEmpty(t, dev.ExtendedAttributes, "single-device lookups carry the PPU")

	// Suspend, restore, deactivate.
	for _, step := range []struct {
		do   func() (string, error)
		want change.State
	}{
		{func() (string, error) { return c.Suspend(ctx, ActionRequest{Devices: []DeviceRef{refOf(d0)}}) }, change.StateSuspended},
		{func() (string, error) { return c.Restore(ctx, ActionRequest{Devices: []DeviceRef{refOf(d0)}}) }, change.StateActive},
		{func() (string, error) {
			return c.Deactivate(ctx, DeactivateRequest{Devices: []DeviceRef{refOf(d0)}, ReasonCode: DeactivateReasonGeneral})
		}, change.StateDeactive},
	} {
		id, err := step.do()
		require.NoError(t, err)
		m := l.await(t, id, 1)[0]
		require.True(t, m.Succeeded(), "%+v", m.FaultResponse)
		waitState(step.want)
	}

	// Multi-device activation: one requestId, one callback per device;
	// request status is not available for it.
	reqID, err = c.Activate(ctx, ActivateRequest{Devices: []DeviceRef{refOf(devs[1]), refOf(devs[2])},
		ServicePlan: "m2m_4G", MdnZipCode: "98801"})
	require.NoError(t, err)
	msgs := l.await(t, reqID, 2)
	got := map[string]bool{}
	for _, m := range msgs {
		assert.True(t, m.Succeeded())
		assert.NotEmpty(t, m.MSISDN())
		got[m.ICCID()] = true
	}
	assert.Equal(t, map[string]bool{devs[1].ICCID: true, devs[2].ICCID: true}, got)
	_, err = c.RequestStatus(ctx, "", reqID)
	assert.Equal(t, KindPermanent, KindOf(err))
	assert.Equal(t, "REQUEST_FAILED.RequestStatusNotSupported", err.(*Error).ShortCode())

	// Deregistration.
	require.NoError(t, c.DeleteCallback(ctx, "", CarrierServiceCallback))
	ls, err = c.ListCallbacks(ctx, "")
	require.NoError(t, err)
	assert.Empty(t, ls)
	err = c.DeleteCallback(ctx, "", CarrierServiceCallback)
	assert.Equal(t, KindNotFound, KindOf(err))

	// Nothing was submitted twice.
	stats := sim.Stats(0)
	for _, d := range devs {
		for action, n := range stats.AcceptedChanges[d.ICCID] {
			assert.Equal(t, 1, n, "%s %s", d.ICCID, action)
		}
	}
	assert.Equal(t, 1, stats.OAuthTokensIssued)
	assert.Equal(t, 1, stats.Logins)

	// Logout ends the session; the next call logs in again.
	require.NoError(t, c.Logout(ctx))
	_, err = c.ListCallbacks(ctx, "")
	require.NoError(t, err)
	assert.Equal(t, 2, sim.Stats(0).Logins)

	// The audit trail holds no secret and no PPU.
	var all strings.Builder
	for _, x := range rec.all() {
		fmt.Fprintf(&all, "%s %s %s %s\n", x.RequestBody, x.ResponseBody, x.Code, x.Err)
	}
	for _, s := range []string{thingspacesim.DefaultClientSecret, thingspacesim.DefaultPassword, "cb-listener-secret",
		"Wilhelmina", "Contractson", "1600 Testing Parkway", "Mountainview"} {
		assert.NotContains(t, all.String(), s)
	}
	assert.Contains(t, all.String(), `"access_token":"[REDACTED]"`)
	assert.Contains(t, all.String(), `"sessionToken":"[REDACTED]"`)
}

func TestContractAddAndList(t *testing.T) {
	sim, url := newSim(t, thingspacesim.Config{})
	require.NoError(t, sim.Seed(thingspacesim.GenerateDevices(25, "891480000200", "active")...))
	c := simClient(t, url, nil)
	ctx := context.Background()

	// Add to inventory.
	fresh := thingspacesim.GenerateDevices(3, "891480000300", "")
	refs := []DeviceRef{refOf(fresh[0]), refOf(fresh[1]), refOf(fresh[2])}
	res, err := c.AddDevices(ctx, AddRequest{DevicesToAdd: refs})
	require.NoError(t, err)
	require.Len(t, res, 3)
	for _, r := range res {
		assert.True(t, r.Succeeded(), r.Response)
	}
	dev, err := c.GetDevice(ctx, DeviceID{ID: fresh[1].ICCID, Kind: KindICCID})
	require.NoError(t, err)
	assert.Equal(t, change.StatePreActive, dev.State())
	res, err = c.AddDevices(ctx, AddRequest{DevicesToAdd: refs[:1]})
	require.NoError(t, err)
	require.Len(t, res, 1)
	assert.False(t, res[0].Succeeded(), "already in the account")

	// More than 200 is refused before reaching ThingSpace.
	many := thingspacesim.GenerateDevices(MaxDevicesPerAdd+1, "891480000400", "")
	manyRefs := make([]DeviceRef, len(many))
	for i, d := range many {
		manyRefs[i] = refOf(d)
	}
	before := sim.Stats(0).Requests[keyAdd]
	_, err = c.AddDevices(ctx, AddRequest{DevicesToAdd: manyRefs})
	assert.Equal(t, KindInvalidInput, KindOf(err))
	assert.Equal(t, before, sim.Stats(0).Requests[keyAdd])

	// The simulator's own limit gives the documented code.
	sim.SetLimits(thingspacesim.Limits{MaxDevicesPerAdd: 2})
	_, err = c.AddDevices(ctx, AddRequest{DevicesToAdd: manyRefs[:3]})
	assert.Equal(t, KindInvalidInput, KindOf(err))
	assert.Equal(t, CodeNumberOfDevices, err.(*Error).ShortCode())
	sim.SetLimits(thingspacesim.Limits{})

	// Listing: a single short page answers 202 with hasMoreData.
	page, err := c.ListDevices(ctx, ListRequest{MaxNumberOfDevices: 10})
	require.NoError(t, err)
	assert.True(t, page.HasMoreData)
	assert.Len(t, page.Devices, 10)
	assert.Positive(t, sim.Stats(0).Responses[keyList][http.StatusAccepted])

	// Filtered listing.
	n := 0
	require.NoError(t, c.ForEachDevice(ctx, ListRequest{CurrentState: "pre-active"}, func(d Device) error {
		n++
		assert.Equal(t, change.StatePreActive, d.State())
		return nil
	}))
	assert.Equal(t, 3, n)
}

// tiedSeeds makes n device seeds added in groups of 1 to maxTie devices at
// the same instant (group sizes cycling), one second apart, so that page
// boundaries fall inside groups.
func tiedSeeds(n, maxTie int, prefix string) []thingspacesim.DeviceSeed {
	seeds := thingspacesim.GenerateDevices(n, prefix, "active")
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	group, left := 0, 0
	for i := range seeds {
		if left == 0 {
			group++
			left = group%maxTie + 1
		}
		seeds[i].AddedAt = base.Add(time.Duration(group) * time.Second)
		left--
	}
	return seeds
}

// The client pages through the simulator's device list in each of its
// modes: by earliest (the default: the published answer has no cursor),
// with devices added at the same instant across page boundaries, and by
// largestDeviceIdSeen for a caller that starts with one, against a
// simulator that answers it (ListCursorPaging). Every device is delivered
// once, in the order added.
func TestContractListPaging(t *testing.T) {
	const n, pageSize, maxTie = 250, 20, 7
	for _, tc := range []struct {
		name       string
		cursorMode bool
		start      *int64
	}{
		{"by earliest", false, nil},
		{"by earliest, simulator in cursor mode", true, nil},
		{"by cursor", true, ptr(int64(0))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim, url := newSim(t, thingspacesim.Config{ListCursorPaging: tc.cursorMode})
			seeds := tiedSeeds(n, maxTie, "891480000800")
			require.NoError(t, sim.Seed(seeds...))
			rec := &recorder{}
			c := simClient(t, url, rec)
			var order []string
			err := c.ForEachDevice(context.Background(),
				ListRequest{MaxNumberOfDevices: pageSize, LargestDeviceIDSeen: tc.start},
				func(d Device) error {
					order = append(order, d.ID(KindICCID))
					return nil
				})
			require.NoError(t, err)
			want := make([]string, n)
			for i, sd := range seeds {
				want[i] = sd.ICCID
			}
			require.Equal(t, want, order, "every device once, in the order added")

			var pages int
			for _, x := range rec.all() {
				if x.Op != OpList {
					continue
				}
				pages++
				var req, resp map[string]json.RawMessage
				require.NoError(t, json.Unmarshal(x.RequestBody, &req))
				require.NoError(t, json.Unmarshal(x.ResponseBody, &resp))
				_, sentCursor := req["largestDeviceIdSeen"]
				_, gotCursor := resp["largestDeviceIdSeen"]
				require.Equal(t, tc.start != nil, sentCursor, "page %d: %s", pages, x.RequestBody)
				require.Equal(t, tc.start != nil, gotCursor, "page %d", pages)
				_, sentEarliest := req["earliest"]
				require.Equal(t, tc.start == nil && pages > 1, sentEarliest, "page %d: %s", pages, x.RequestBody)
			}
			if tc.start != nil {
				require.Equal(t, (n+pageSize-1)/pageSize, pages)
			} else {
				// Each page after the first repeats the devices of its first
				// instant, at most maxTie.
				require.GreaterOrEqual(t, pages, (n+pageSize-1)/pageSize)
				require.LessOrEqual(t, pages, 1+(n+pageSize-maxTie-1)/(pageSize-maxTie))
			}
		})
	}

	// More devices added at one instant than a page holds cannot be paged
	// past by earliest: an error, not an endless loop.
	sim, url := newSim(t, thingspacesim.Config{})
	crowd := thingspacesim.GenerateDevices(20, "891480000801", "active")
	at := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	for i := range crowd {
		switch {
		case i < 5:
			crowd[i].AddedAt = at
		case i < 15:
			crowd[i].AddedAt = at.Add(time.Second) // ten at one instant
		default:
			crowd[i].AddedAt = at.Add(2 * time.Second)
		}
	}
	require.NoError(t, sim.Seed(crowd...))
	c := simClient(t, url, nil)
	delivered := 0
	err := c.ForEachDevice(context.Background(), ListRequest{MaxNumberOfDevices: 8}, func(Device) error {
		delivered++
		return nil
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no progress")
	assert.Equal(t, 13, delivered, "the first five, then eight of the ten")
}

func TestContractErrors(t *testing.T) {
	sim, url := newSim(t, thingspacesim.Config{})
	pre := thingspacesim.GenerateDevices(4, "891480000500", "preactive")
	act := thingspacesim.GenerateDevices(3, "891480000600", "active")
	require.NoError(t, sim.Seed(append(pre, act...)...))
	unknown := thingspacesim.GenerateDevices(1, "891480000999", "")[0]
	rec := &recorder{}
	c := simClient(t, url, rec)
	ctx := context.Background()
	activate := func(d ...thingspacesim.DeviceSeed) (string, error) {
		refs := make([]DeviceRef, len(d))
		for i := range d {
			refs[i] = refOf(d[i])
		}
		return c.Activate(ctx, ActivateRequest{Devices: refs, ServicePlan: "m2m_4G", MdnZipCode: "98801"})
	}
	expectKind := func(err error, kind ErrorKind, short string) {
		t.Helper()
		e, ok := AsError(err)
		require.True(t, ok, "%v", err)
		assert.Equal(t, kind, e.Kind, "%v", e)
		if short != "" {
			assert.Equal(t, short, e.ShortCode())
		}
	}

	// 429 with Retry-After: reported to the Limiter, not retried. First,
	// because the window counts every admitted activate request.
	sim.SetLimits(thingspacesim.Limits{ActivateRequestsPerMinute: 1})
	_, err := activate(pre[1])
	require.NoError(t, err)
	before := sim.Stats(0).Requests[keyActivate]
	_, err = activate(pre[2])
	expectKind(err, KindRateLimited, CodeGatewayThrottled)
	assert.GreaterOrEqual(t, err.(*Error).RetryAfter, time.Second)
	assert.LessOrEqual(t, err.(*Error).RetryAfter, time.Minute)
	assert.Equal(t, before+1, sim.Stats(0).Requests[keyActivate])
	rec.mu.Lock()
	assert.Equal(t, []time.Duration{err.(*Error).RetryAfter}, rec.throttled)
	rec.mu.Unlock()
	sim.SetLimits(thingspacesim.Limits{})

	_, err = c.GetDevice(ctx, DeviceID{ID: unknown.ICCID, Kind: KindICCID})
	expectKind(err, KindDeviceNotFound, CodeDeviceNotFound)
	_, err = activate(unknown)
	expectKind(err, KindDeviceNotFound, CodeDeviceNotFound)
	_, err = activate(act[0])
	expectKind(err, KindDeviceAlreadyActive, CodeDeviceAlreadyActive)
	_, err = c.Suspend(ctx, ActionRequest{Devices: []DeviceRef{refOf(pre[0])}})
	expectKind(err, KindInvalidState, CodeDeviceStateInvalid)
	_, err = c.Suspend(ctx, ActionRequest{Devices: []DeviceRef{ICCIDRef("1234", "")}})
	expectKind(err, KindInvalidInput, CodeDeviceIDInvalid)
	_, err = c.RequestStatus(ctx, "", "7d4f3c1e-0000-4000-8000-000000000000")
	expectKind(err, KindNotFound, "REQUEST_FAILED.RequestNotFound")
	_, err = c.ListDevices(ctx, ListRequest{AccountName: "9999999999-00001"})
	expectKind(err, KindNotFound, CodeAccountNotFound)

	// Too many devices for the account's limit.
	sim.SetLimits(thingspacesim.Limits{MaxDevicesPerRequest: 2})
	_, err = c.Suspend(ctx, ActionRequest{Devices: []DeviceRef{refOf(act[0]), refOf(act[1]), refOf(act[2])}})
	expectKind(err, KindInvalidInput, CodeMaxRequestsExceeded)
	sim.SetLimits(thingspacesim.Limits{})

	// Gateway 900901 (expired Bearer): one new token, call succeeds.
	sim.ResetStats()
	sim.ExpireOAuthToken()
	_, err = c.ListDevices(ctx, ListRequest{MaxNumberOfDevices: 1})
	require.NoError(t, err)
	s := sim.Stats(0)
	assert.Equal(t, 1, s.OAuthTokensIssued)
	assert.Equal(t, 1, s.Responses[keyList][http.StatusUnauthorized])
	assert.Equal(t, 0, s.Logins, "the session survives a new OAuth token")

	// Session expired: one new login, call succeeds.
	sim.ResetStats()
	sim.ExpireSessions()
	_, err = c.ListDevices(ctx, ListRequest{MaxNumberOfDevices: 1})
	require.NoError(t, err)
	s = sim.Stats(0)
	assert.Equal(t, 1, s.Logins)
	assert.Equal(t, 1, s.Responses[keyList][http.StatusBadRequest])

	// Server errors: a list is retried, an activation is not.
	sim.ResetStats()
	sim.SetFaults(thingspacesim.Faults{ErrorRate: 1})
	_, err = c.ListDevices(ctx, ListRequest{})
	expectKind(err, KindTemporary, "")
	assert.Equal(t, 3, sim.Stats(0).Requests[keyList])
	_, err = activate(pre[3])
	expectKind(err, KindTemporary, "")
	assert.True(t, err.(*Error).MayHaveApplied(), "a 5xx proves nothing: reconciled, not resent")
	assert.Equal(t, 1, sim.Stats(0).Requests[keyActivate])
	sim.SetFaults(thingspacesim.Faults{})

	// A stalled answer to a state change: applied once, reported as
	// ambiguous, not resent.
	sim.ResetStats()
	sim.SetFaults(thingspacesim.Faults{TimeoutRate: 1, StallFor: 3 * time.Second})
	short := simClient(t, url, nil, func(cfg *Config) { cfg.HTTPTimeout = 300 * time.Millisecond })
	_, err = short.Suspend(ctx, ActionRequest{Devices: []DeviceRef{refOf(act[1])}})
	expectKind(err, KindTemporary, "")
	assert.True(t, err.(*Error).MayHaveApplied())
	sim.SetFaults(thingspacesim.Faults{})
	s = sim.Stats(0)
	assert.Equal(t, 1, s.Requests[keySuspend])
	assert.Equal(t, 1, s.AcceptedChanges[act[1].ICCID][thingspacesim.ActionSuspend])
	// Reconcile instead of resending: the device is (becoming) suspended.
	dev, err := c.GetDevice(ctx, DeviceID{ID: act[1].ICCID, Kind: KindICCID})
	require.NoError(t, err)
	assert.Contains(t, []change.State{change.StatePendingSuspend, change.StateSuspended}, dev.State())

	// The gateway answers 502/504 after the backend applied the change:
	// a temporary error that may have applied, not resent, and applied.
	sim.ResetStats()
	sim.SetFaults(thingspacesim.Faults{GatewayAfterApplyRate: 1})
	_, err = c.Suspend(ctx, ActionRequest{Devices: []DeviceRef{refOf(act[2])}})
	expectKind(err, KindTemporary, "")
	e := err.(*Error)
	assert.Contains(t, []int{http.StatusBadGateway, http.StatusGatewayTimeout}, e.HTTPStatus)
	assert.Empty(t, e.Code, "the gateway's HTML page carries no code")
	assert.True(t, e.MayHaveApplied())
	sim.SetFaults(thingspacesim.Faults{})
	s = sim.Stats(0)
	assert.Equal(t, 1, s.Requests[keySuspend], "not resent by the client")
	assert.Equal(t, 1, s.GatewayAfterApply)
	assert.Equal(t, 1, s.AppliedChanges[act[2].ICCID][thingspacesim.ActionSuspend])
}

// ThingSpace's refusal of a device of another account than the request's
// is its own kind, not invalid input (which would refuse the whole batch)
// nor DeviceNotFound (the device exists).
func TestContractDeviceOfAnotherAccount(t *testing.T) {
	const other = "0000777777-00001"
	sim, url := newSim(t, thingspacesim.Config{Accounts: []string{thingspacesim.DefaultAccount, other}})
	foreign := thingspacesim.GenerateDevices(1, "891480000700", "active")[0]
	foreign.Account = other
	require.NoError(t, sim.Seed(foreign))
	c := simClient(t, url, nil)

	_, err := c.Suspend(context.Background(), ActionRequest{Devices: []DeviceRef{refOf(foreign)}})
	e, ok := AsError(err)
	require.True(t, ok, "%v", err)
	assert.Equal(t, KindDeviceAccountInvalid, e.Kind, "%v", e)
	assert.Equal(t, CodeDeviceAccountInvalid, e.ShortCode())
	assert.False(t, e.Retryable())
	snap, _ := sim.Device(foreign.ICCID)
	assert.Equal(t, thingspacesim.StateActive, snap.State)
}

func TestContractAuthExpiryMidRun(t *testing.T) {
	sim, url := newSim(t, thingspacesim.Config{OAuthTokenTTL: 2 * time.Second, SessionIdleTimeout: 600 * time.Millisecond})
	c := simClient(t, url, nil)
	ctx := context.Background()
	call := func() {
		t.Helper()
		_, err := c.ListDevices(ctx, ListRequest{})
		require.NoError(t, err)
	}
	call()
	call()
	time.Sleep(900 * time.Millisecond) // session idles out
	call()
	s := sim.Stats(0)
	assert.Equal(t, 2, s.Logins, "re-login exactly once")
	assert.Equal(t, 1, s.Responses[keyList][http.StatusBadRequest])
	assert.Equal(t, 1, s.OAuthTokensIssued)

	time.Sleep(1400 * time.Millisecond) // OAuth token (2s) expired, session idle again
	call()
	call()
	s = sim.Stats(0)
	assert.Equal(t, 3, s.Logins)
	assert.Equal(t, 2, s.Responses[keyList][http.StatusBadRequest])
	assert.GreaterOrEqual(t, s.OAuthTokensIssued, 2)
	assert.LessOrEqual(t, s.Responses[keyList][http.StatusUnauthorized], 1, "at most one 900901 per expiry")
	assert.Equal(t, 0, s.FailedLogins)
}

func TestContractBadCredentials(t *testing.T) {
	t.Run("wrong password: one attempt, latched", func(t *testing.T) {
		sim, url := newSim(t, thingspacesim.Config{})
		bad := simClient(t, url, nil, func(cfg *Config) { cfg.Password = "not-the-password" })
		ctx := context.Background()
		err := bad.CheckAuth(ctx)
		assert.True(t, IsInvalidCredentials(err))
		assert.Equal(t, thingspacesim.CodeInvalidCredentials, err.(*Error).Code)
		for range 6 {
			_, err := bad.ListDevices(ctx, ListRequest{})
			assert.True(t, IsInvalidCredentials(err))
		}
		s := sim.Stats(0)
		assert.Equal(t, 1, s.FailedLogins, "exactly one failed login reached ThingSpace")
		assert.Equal(t, 1, s.Requests[keyLogin])
		assert.Equal(t, 0, s.Requests[keyList])

		good := simClient(t, url, nil)
		require.NoError(t, good.CheckAuth(ctx), "the account is not locked")
	})
	t.Run("account locked is a credential refusal too", func(t *testing.T) {
		sim, url := newSim(t, thingspacesim.Config{MaxFailedLogins: 1})
		ctx := context.Background()
		bad := simClient(t, url, nil, func(cfg *Config) { cfg.Password = "not-the-password" })
		require.True(t, IsInvalidCredentials(bad.CheckAuth(ctx)))
		good := simClient(t, url, nil)
		err := good.CheckAuth(ctx)
		assert.True(t, IsInvalidCredentials(err))
		assert.Equal(t, thingspacesim.CodeAccountLocked, err.(*Error).Code)
		require.Error(t, good.CheckAuth(ctx))
		assert.Equal(t, 2, sim.Stats(0).Requests[keyLogin])
	})
	t.Run("wrong client secret: one token request, latched", func(t *testing.T) {
		sim, url := newSim(t, thingspacesim.Config{})
		bad := simClient(t, url, nil, func(cfg *Config) { cfg.ClientSecret = "not-the-secret" })
		ctx := context.Background()
		for range 4 {
			err := bad.CheckAuth(ctx)
			assert.True(t, IsInvalidCredentials(err))
			assert.Equal(t, "invalid_client", err.(*Error).Code)
		}
		s := sim.Stats(0)
		assert.Equal(t, 1, s.Requests[keyOAuth])
		assert.Equal(t, 0, s.Requests[keyLogin])
	})
}

func TestContractConcurrentFirstCallsShareOneLogin(t *testing.T) {
	sim, url := newSim(t, thingspacesim.Config{Faults: thingspacesim.Faults{Latency: 30 * time.Millisecond}})
	require.NoError(t, sim.Seed(thingspacesim.GenerateDevices(5, "891480000700", "active")...))
	c := simClient(t, url, nil)
	errs := concurrently(50, func(int) error {
		_, err := c.ListDevices(context.Background(), ListRequest{MaxNumberOfDevices: 2})
		return err
	})
	for _, err := range errs {
		require.NoError(t, err)
	}
	s := sim.Stats(0)
	assert.Equal(t, 1, s.Requests[keyOAuth])
	assert.Equal(t, 1, s.OAuthTokensIssued)
	assert.Equal(t, 1, s.Requests[keyLogin])
	assert.Equal(t, 1, s.Logins)
	assert.Equal(t, 50, s.Requests[keyList])
}

// ThingSpace refuses a request with an apostrophe, < or backslash
// (INPUT_INVALID.Request.InvalidCharacter): the client reports it as the
// request's own fault (KindInvalidInput), not retryable, without the PPU
// value, on activate and on the contactInfo update alike.
func TestContractPPUInvalidCharacter(t *testing.T) {
	sim, url := newSim(t, thingspacesim.Config{})
	pre := thingspacesim.GenerateDevices(2, "891480000700", "preactive")
	act := thingspacesim.GenerateDevices(1, "891480000800", "active")
	require.NoError(t, sim.Seed(append(pre, act...)...))
	c := simClient(t, url, nil)
	ctx := context.Background()
	ppu := contractPPU()
	ppu.CustomerName.LastName = "O'Contractson"

	_, errActivate := c.Activate(ctx, ActivateRequest{Devices: []DeviceRef{refOf(pre[0]), refOf(pre[1])},
		ServicePlan: "m2m_4G", MdnZipCode: "98801", PrimaryPlaceOfUse: &ppu})
	_, errContact := c.UpdateContactInfo(ctx, ContactInfoRequest{Devices: []DeviceRef{refOf(act[0])},
		PrimaryPlaceOfUse: ppu})
	for _, err := range []error{errActivate, errContact} {
		e, ok := AsError(err)
		require.True(t, ok, "%v", err)
		assert.Equal(t, KindInvalidInput, e.Kind)
		assert.Equal(t, CodeInvalidCharacter, e.ShortCode())
		assert.Equal(t, http.StatusBadRequest, e.HTTPStatus)
		assert.False(t, e.Retryable())
		assert.NotContains(t, err.Error(), "Contractson")
	}
	for _, d := range pre {
		got, _ := sim.Device(d.ICCID)
		assert.Equal(t, thingspacesim.StatePreActive, got.State)
	}
}

// TestContractSKUAndDeleteAfterDeactivation: an activation by ICCID alone
// carries the SKU in lieu of the IMEI; a deactivation with
// DeleteAfterDeactivation leaves the device out of the account's list
// once done, and false (always sent) keeps it.
func TestContractSKUAndDeleteAfterDeactivation(t *testing.T) {
	sim, url := newSim(t, thingspacesim.Config{Limits: thingspacesim.Limits{ActionsPerLinePerDay: -1}})
	devs := thingspacesim.GenerateDevices(3, "891480000400", "preactive")
	require.NoError(t, sim.Seed(devs...))
	l := newListener(t)
	c := simClient(t, url, nil)
	ctx := context.Background()
	require.NoError(t, c.RegisterCallback(ctx, "", CallbackRegistration{Name: CarrierServiceCallback, URL: l.url}))

	byICCID := []DeviceRef{ICCIDRef(devs[0].ICCID, ""), ICCIDRef(devs[1].ICCID, ""), ICCIDRef(devs[2].ICCID, "")}
	_, err := c.Activate(ctx, ActivateRequest{Devices: byICCID, ServicePlan: "m2m_4G", MdnZipCode: "98801"})
	require.Error(t, err, "an ICCID alone needs the SKU")
	assert.Equal(t, "REQUEST_FAILED.UnexpectedError", err.(*Error).ShortCode())
	id, err := c.Activate(ctx, ActivateRequest{Devices: byICCID, ServicePlan: "m2m_4G", MdnZipCode: "98801",
		SkuNumber: "SM-T387VZKAVZW"})
	require.NoError(t, err)
	for _, m := range l.await(t, id, 3) {
		require.True(t, m.Succeeded(), "%+v", m.FaultResponse)
	}

	deleted, err := c.Deactivate(ctx, DeactivateRequest{Devices: byICCID[:2], DeleteAfterDeactivation: true})
	require.NoError(t, err)
	kept, err := c.Deactivate(ctx, DeactivateRequest{Devices: byICCID[2:]})
	require.NoError(t, err)
	for _, m := range append(l.await(t, deleted, 2), l.await(t, kept, 1)...) {
		require.True(t, m.Succeeded(), "the callback reports the deactivation: %+v", m.FaultResponse)
	}
	for _, d := range devs[:2] {
		_, err := c.GetDevice(ctx, DeviceID{ID: d.ICCID, Kind: KindICCID})
		assert.Equal(t, KindDeviceNotFound, KindOf(err), "%s was removed from the account", d.ICCID)
	}
	dev, err := c.GetDevice(ctx, DeviceID{ID: devs[2].ICCID, Kind: KindICCID})
	require.NoError(t, err)
	assert.Equal(t, change.StateDeactive, dev.State())
	var listed []string
	require.NoError(t, c.ForEachDevice(ctx, ListRequest{}, func(d Device) error {
		listed = append(listed, d.ID(KindICCID))
		return nil
	}))
	assert.Equal(t, []string{devs[2].ICCID}, listed)
}
