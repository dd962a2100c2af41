package thingspace

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
)

func TestStateChangeEndpoints(t *testing.T) {
	f := newFake(t)
	f.route(http.MethodPost, pathActivate, okRequestID("a"))
	f.route(http.MethodPost, pathSuspend, okRequestID("s"))
	f.route(http.MethodPost, pathRestore, okRequestID("r"))
	f.route(http.MethodPost, pathDeactivate, okRequestID("d"))
	f.route(http.MethodPut, pathContactInfo, okRequestID("c"))
	c := newTestClient(t, f, nil)
	ctx := context.Background()

	id, err := c.Activate(
		ctx,
		ActivateRequest{Devices: oneDevice(), AccountName: "other-acct", ServicePlan: "p", MdnZipCode: "12345"},
	)
	require.NoError(t, err)
	assert.Equal(t, "a", id)
	assert.Contains(t, f.lastBody(http.MethodPost, pathActivate), `"accountName":"other-acct"`)

	id, err = c.Suspend(ctx, ActionRequest{Devices: oneDevice()})
	require.NoError(t, err)
	assert.Equal(t, "s", id)
	id, err = c.Restore(ctx, ActionRequest{Devices: oneDevice()})
	require.NoError(t, err)
	assert.Equal(t, "r", id)

	id, err = c.Deactivate(ctx, DeactivateRequest{Devices: oneDevice(), EtfWaiver: true})
	require.NoError(t, err)
	assert.Equal(t, "d", id)
	var deact map[string]any
	require.NoError(t, json.Unmarshal([]byte(f.lastBody(http.MethodPost, pathDeactivate)), &deact))
	assert.Equal(t, "FF", deact["reasonCode"])
	assert.Equal(t, testAccount, deact["accountName"])
	assert.Equal(t, true, deact["etfWaiver"])
	assert.Equal(t, false, deact["deleteAfterDeactivation"], "sent even when false: ThingSpace's default is not relied on")

	id, err = c.UpdateContactInfo(ctx, ContactInfoRequest{Devices: oneDevice(), PrimaryPlaceOfUse: samplePPU()})
	require.NoError(t, err)
	assert.Equal(t, "c", id)
	assert.Contains(t, f.lastBody(http.MethodPut, pathContactInfo), `"firstName":"Zelda"`)
}

func TestStateChangeWithoutRequestIDMayHaveApplied(t *testing.T) {
	f := newFake(t)
	f.route(http.MethodPost, pathSuspend, answerJSON(http.StatusOK, map[string]string{}))
	c := newTestClient(t, f, nil)
	_, err := c.Suspend(context.Background(), ActionRequest{Devices: oneDevice()})
	e, _ := AsError(err)
	require.NotNil(t, e)
	assert.True(t, e.MayHaveApplied())
}

func TestLocalValidation(t *testing.T) {
	f := newFake(t)
	c := newTestClient(t, f, nil)
	ctx := context.Background()
	many := func(n int) []DeviceRef {
		refs := make([]DeviceRef, n)
		for i := range refs {
			refs[i] = ICCIDRef(fmt.Sprintf("8914800000000%07d", i), "")
		}
		return refs
	}
	check := func(err error) {
		t.Helper()
		e, ok := AsError(err)
		require.True(t, ok, "%v", err)
		assert.Equal(t, KindInvalidInput, e.Kind)
		assert.False(t, e.Sent)
		assert.False(t, e.Retryable())
	}
	_, err := c.AddDevices(ctx, AddRequest{DevicesToAdd: many(MaxDevicesPerAdd + 1)})
	check(err)
	_, err = c.Suspend(ctx, ActionRequest{})
	check(err) // an empty list would select the whole account
	_, err = c.Activate(ctx, ActivateRequest{Devices: many(MaxDevicesPerRequest + 1)})
	check(err)
	_, err = c.Restore(ctx, ActionRequest{Devices: []DeviceRef{{}}})
	check(err)
	_, err = c.Deactivate(ctx, DeactivateRequest{Devices: []DeviceRef{{DeviceIDs: []DeviceID{{ID: "1"}}}}})
	check(err)
	_, err = c.GetDevice(ctx, DeviceID{})
	check(err)
	_, err = c.RequestStatus(ctx, "", "")
	check(err)
	check(c.RegisterCallback(ctx, "", CallbackRegistration{Name: CarrierServiceCallback}))
	assert.EqualValues(t, 0, f.oauthN.Load(), "refused locally, before any request")

	noAcct := newTestClient(t, f, nil, func(cfg *Config) { cfg.AccountName = "" })
	_, err = noAcct.Deactivate(ctx, DeactivateRequest{Devices: oneDevice()})
	check(err)
}

func TestAddDevices(t *testing.T) {
	f := newFake(t)
	f.route(http.MethodPost, pathAdd, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, []map[string]any{
			{"deviceIds": []DeviceID{{ID: "1", Kind: "ICCID"}}, "response": "Success"},
			{"deviceIds": []DeviceID{{ID: "2", Kind: "iccid"}}, "response": "Device already exists"},
		})
	})
	c := newTestClient(t, f, nil)
	refs := make([]DeviceRef, MaxDevicesPerAdd)
	for i := range refs {
		refs[i] = ICCIDRef(fmt.Sprint(i+1), "")
	}
	res, err := c.AddDevices(context.Background(), AddRequest{DevicesToAdd: refs, State: "active"})
	require.NoError(t, err)
	require.Len(t, res, 2)
	assert.True(t, res[0].Succeeded())
	assert.False(t, res[1].Succeeded())
	var body map[string]any
	require.NoError(t, json.Unmarshal([]byte(f.lastBody(http.MethodPost, pathAdd)), &body))
	assert.Equal(t, "preactive", body["state"])
	assert.Equal(t, testAccount, body["accountName"])
	assert.Len(t, body["devicesToAdd"], MaxDevicesPerAdd)
}

func TestDecodeArrayTolerance(t *testing.T) {
	var out []AddResult
	require.NoError(t, decodeArray(json.RawMessage(`{"results":[{"response":"Success"}]}`), &out))
	assert.Len(t, out, 1)
	out = nil
	require.NoError(t, decodeArray(json.RawMessage(`null`), &out))
	assert.Empty(t, out)
	require.Error(t, decodeArray(json.RawMessage(`{"a":1}`), &out))
}

func device(iccid, createdAt string) Device {
	return Device{
		AccountName:         testAccount,
		CreatedAt:           createdAt,
		DeviceIDs:           []DeviceID{{ID: iccid, Kind: "iccid"}},
		CarrierInformations: []CarrierInformation{{State: "active"}},
	}
}

func TestListDevicesSinglePageAnd202(t *testing.T) {
	f := newFake(t)
	answer := f.settableRoute(http.MethodPost, pathList, http.StatusOK, `{"hasMoreData":false,"devices":[]}`)
	c := newTestClient(t, f, nil)
	ctx := context.Background()

	resp, err := c.ListDevices(ctx, ListRequest{CurrentState: "active"})
	require.NoError(t, err)
	assert.False(t, resp.HasMoreData)
	assert.Contains(t, f.lastBody(http.MethodPost, pathList), `"accountName":"`+testAccount+`"`)

	answer(http.StatusAccepted, `{"devices":[{"deviceIds":[{"id":"1","kind":"iccid"}]}]}`)
	resp, err = c.ListDevices(ctx, ListRequest{})
	require.NoError(t, err)
	assert.True(t, resp.HasMoreData, "202 without hasMoreData means more data")
	assert.Len(t, resp.Devices, 1)

	answer(http.StatusAccepted, `{"hasMoreData":true,"largestDeviceIdSeen":"12345","devices":[]}`)
	resp, err = c.ListDevices(ctx, ListRequest{})
	require.NoError(t, err)
	require.NotNil(t, resp.LargestDeviceIDSeen)
	assert.EqualValues(t, 12345, *resp.LargestDeviceIDSeen, "cursor accepted as a string too")
}

// listedICCIDs walks the fake's whole device list with a new client, from
// the start r gives.
func listedICCIDs(t *testing.T, f *fakeTS, r ListRequest) []string {
	t.Helper()
	var got []string
	err := newTestClient(t, f, nil).ForEachDevice(context.Background(), r, func(d Device) error {
		got = append(got, d.ID(KindICCID))
		return nil
	})
	require.NoError(t, err)
	return got
}

func decodeListRequest(t *testing.T, r *http.Request) ListRequest {
	t.Helper()
	var req ListRequest
	require.NoError(t, json.NewDecoder(r.Body).Decode(&req))
	return req
}

func TestForEachDeviceByCursor(t *testing.T) {
	f := newFake(t)
	const total, pageSize = 25, 10
	f.route(http.MethodPost, pathList, func(w http.ResponseWriter, r *http.Request) {
		req := decodeListRequest(t, r)
		start := int64(0)
		if req.LargestDeviceIDSeen != nil {
			start = *req.LargestDeviceIDSeen
		}
		var devs []Device
		for i := start + 1; i <= total && len(devs) < pageSize; i++ {
			devs = append(devs, device(fmt.Sprint(i), "2024-01-01T00:00:00Z"))
		}
		last := start + int64(len(devs))
		more := last < total
		status := http.StatusOK
		if more {
			status = http.StatusAccepted
		}
		writeJSON(w, status, map[string]any{"hasMoreData": more, "devices": devs, "largestDeviceIdSeen": last})
	})
	got := listedICCIDs(t, f, ListRequest{LargestDeviceIDSeen: new(int64)})
	assert.Len(t, got, total)
	assert.Equal(t, 3, f.hitCount(http.MethodPost, pathList))
}

// Paging by largestDeviceIdSeen needs every answer with more data to carry
// the next cursor: such pages are in device-ID order, and moving `earliest`
// from one could skip devices. Without a cursor to start from, a cursor in
// the answer is not followed: the page was in date-added order.
func TestListCursorOnlyWhenAskedAndAnswered(t *testing.T) {
	f := newFake(t)
	f.route(http.MethodPost, pathList, answerJSON(http.StatusAccepted, map[string]any{"hasMoreData": true,
		"devices": []Device{device("1", "2024-01-01T00:00:00Z"), device("2", "2024-01-01T00:00:01Z")}}))
	c := newTestClient(t, f, nil)
	_, err := c.ListDevicePage(context.Background(), ListRequest{}, ListCursor{LargestDeviceIDSeen: new(int64)})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "carries none")

	f.route(http.MethodPost, pathList, answerJSON(http.StatusAccepted, map[string]any{"hasMoreData": true,
		"largestDeviceIdSeen": 99,
		"devices":             []Device{device("1", "2024-01-01T00:00:00Z"), device("2", "2024-01-01T00:00:01Z")}}))
	page, err := c.ListDevicePage(context.Background(), ListRequest{}, ListCursor{})
	require.NoError(t, err)
	assert.Nil(t, page.Next.LargestDeviceIDSeen, "a cursor the caller did not ask for is not followed")
	assert.Equal(t, "2024-01-01T00:00:01Z", page.Next.Earliest)
	assert.Equal(t, []string{"iccid:2"}, page.Next.SeenAtEarliest)
}

func TestForEachDeviceByEarliest(t *testing.T) {
	// 7 devices, three sharing one instant; pages of 4, and `earliest` is
	// inclusive here, so pages overlap at the boundary.
	all := []Device{
		device("1", "2024-01-01T10:00:00-04:00"),
		device("2", "2024-01-01T10:00:01-04:00"),
		device("3", "2024-01-01T10:00:01-04:00"),
		device("4", "2024-01-01T14:00:01Z"), // same instant as 2 and 3
		device("5", "2024-01-01T10:00:02-04:00"),
		device("6", "2024-01-01T10:00:03-04:00"),
		device("7", "2024-01-01T10:00:04-04:00"),
	}
	f := newFake(t)
	f.route(http.MethodPost, pathList, func(w http.ResponseWriter, r *http.Request) {
		req := decodeListRequest(t, r)
		var from time.Time
		if req.Earliest != "" {
			var err error
			from, err = time.Parse(time.RFC3339, req.Earliest)
			require.NoError(t, err)
		}
		var devs []Device
		for _, d := range all {
			ts, _ := time.Parse(time.RFC3339, d.CreatedAt)
			if !ts.Before(from) && len(devs) < 4 {
				devs = append(devs, d)
			}
		}
		last := devs[len(devs)-1].ID(KindICCID)
		writeJSON(w, http.StatusOK, map[string]any{"hasMoreData": last != "7", "devices": devs})
	})
	got := listedICCIDs(t, f, ListRequest{})
	sort.Strings(got)
	assert.Equal(t, []string{"1", "2", "3", "4", "5", "6", "7"}, got, "each device exactly once")
}

func TestForEachDeviceStopsWithoutProgress(t *testing.T) {
	f := newFake(t)
	f.route(http.MethodPost, pathList, answerJSON(http.StatusOK, map[string]any{"hasMoreData": true,
		"devices": []Device{device("1", "2024-01-01T00:00:00Z"), device("2", "2024-01-01T00:00:00Z")}}))
	c := newTestClient(t, f, nil)
	n := 0
	err := c.ForEachDevice(context.Background(), ListRequest{}, func(Device) error { n++; return nil })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no progress")
	assert.Equal(t, 2, n)
	assert.Equal(t, 2, f.hitCount(http.MethodPost, pathList))

	f.route(http.MethodPost, pathList,
		answerJSON(http.StatusAccepted, map[string]any{"largestDeviceIdSeen": 5, "devices": []Device{}}))
	five := int64(5)
	err = c.ForEachDevice(context.Background(), ListRequest{LargestDeviceIDSeen: &five}, func(Device) error { return nil })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "cursor did not advance")
}

func TestForEachDeviceCallbackError(t *testing.T) {
	f := newFake(t)
	f.route(http.MethodPost, pathList,
		answerJSON(http.StatusOK, map[string]any{"devices": []Device{device("1", ""), device("2", "")}}))
	c := newTestClient(t, f, nil)
	stop := fmt.Errorf("stop")
	err := c.ForEachDevice(context.Background(), ListRequest{}, func(Device) error { return stop })
	assert.Same(t, stop, err)
}

func TestGetDevice(t *testing.T) {
	f := newFake(t)
	f.route(http.MethodPost, pathList, func(w http.ResponseWriter, r *http.Request) {
		req := decodeListRequest(t, r)
		switch req.DeviceID.ID {
		case "111":
			writeJSON(w, http.StatusOK, map[string]any{"hasMoreData": false, "devices": []Device{
				{DeviceIDs: []DeviceID{{ID: "111", Kind: "ICCID"}, {ID: "5551234567", Kind: "msisdn"}},
					CarrierInformations: []CarrierInformation{{State: "Pre-active"}}}}})
		case "222":
			writeJSON(w, http.StatusOK, map[string]any{"hasMoreData": false, "devices": []Device{}})
		default:
			m2mError(w, http.StatusBadRequest, "UnifiedWebService.REQUEST_FAILED.DeviceNotFound", "Device not found")
		}
	})
	c := newTestClient(t, f, nil)
	ctx := context.Background()
	d, err := c.GetDevice(ctx, DeviceID{ID: "111", Kind: KindICCID})
	require.NoError(t, err)
	assert.Equal(t, change.StatePreActive, d.State())
	assert.Equal(t, "5551234567", d.MSISDN())
	assert.Contains(t, f.lastBody(http.MethodPost, pathList), `"deviceId":{"id":"111","kind":"iccid"}`)

	_, err = c.GetDevice(ctx, DeviceID{ID: "222", Kind: KindICCID})
	assert.Equal(t, KindDeviceNotFound, KindOf(err))
	_, err = c.GetDevice(ctx, DeviceID{ID: "333", Kind: KindICCID})
	assert.Equal(t, KindDeviceNotFound, KindOf(err))
	assert.Equal(t, CodeDeviceNotFound, err.(*Error).ShortCode())
}

func TestRequestStatus(t *testing.T) {
	f := newFake(t)
	path := "/api/m2m/v1/accounts/" + testAccount + "/requests/86c83330-1/status"
	f.route(http.MethodGet, path,
		answerJSON(http.StatusOK, map[string]string{"requestId": "86c83330-1", "status": "Success"}))
	c := newTestClient(t, f, nil)
	st, err := c.RequestStatus(context.Background(), "", "86c83330-1")
	require.NoError(t, err)
	assert.Equal(t, RequestSuccess, st.Status)
	assert.Equal(t, "", f.lastBody(http.MethodGet, path))
}

func TestCallbackEndpoints(t *testing.T) {
	f := newFake(t)
	base := "/api/m2m/v1/callbacks/" + testAccount
	listener := map[string]string{"accountName": testAccount, "serviceName": "CarrierService"}
	f.route(http.MethodPost, base, answerJSON(http.StatusOK, listener))
	f.route(http.MethodGet, base, answerJSON(http.StatusOK, []map[string]string{{"accountName": testAccount,
		"serviceName": "CarrierService", "url": "https://cb.example:9001/ts", "username": "cbuser",
		"password": "cb-password-123"}}))
	f.route(http.MethodDelete, base+"/name/CarrierService", answerJSON(http.StatusOK, listener))
	c := newTestClient(t, f, nil)
	ctx := context.Background()
	require.NoError(t, c.RegisterCallback(ctx, "", CallbackRegistration{Name: CarrierServiceCallback,
		URL: "https://cb.example:9001/ts", Username: "cbuser", Password: "cb-password-123"}))
	assert.Contains(t, f.lastBody(http.MethodPost, base), `"password":"cb-password-123"`)
	ls, err := c.ListCallbacks(ctx, testAccount)
	require.NoError(t, err)
	require.Len(t, ls, 1)
	assert.Equal(t, CallbackListener{AccountName: testAccount, ServiceName: "CarrierService",
		URL: "https://cb.example:9001/ts", Username: "cbuser"}, ls[0])
	require.NoError(t, c.DeleteCallback(ctx, "", CarrierServiceCallback))
	assert.Equal(t, 1, f.hitCount(http.MethodDelete, base+"/name/CarrierService"))
}

func TestParseCallbackMessage(t *testing.T) {
	t.Run("failure from the docs", func(t *testing.T) {
		m, err := ParseCallbackMessage(
			[]byte(`{"username": "", "password": "", "requestId": "076f7ea9-8230-49b1-9386-8dafaddc7d9e",
 "deviceIds": [{"id": "20180903000000000009", "kind": "Iccid"}, {"id": "201809030000009", "kind": "Imei"}],
 "faultResponse": {"faultcode": "UnifiedWebService.REQUEST_FAILED.DeviceAlreadyActive",
                   "faultstring": "REQUEST_FAILED. Device is already active"},
 "status": "Failed", "callbackCount": 1, "maxCallbackThreshold": 4}`),
		)
		require.NoError(t, err)
		assert.False(t, m.Succeeded())
		assert.Equal(t, CodeDeviceAlreadyActive, m.ShortFaultCode())
		assert.Equal(t, "20180903000000000009", m.ICCID(), "kind matched in any case")
		assert.Equal(t, 4, m.MaxCallbackThreshold)
		assert.Equal(t, "", m.MSISDN())
	})
	t.Run("activate success with MSISDN in activateResponse", func(t *testing.T) {
		m, err := ParseCallbackMessage([]byte(`{"username":"u","password":"cb-secret","requestId":"r1",
 "deviceIds":[{"id":"89148000000000000001","kind":"ICCID"}],
 "deviceResponse":{"activateResponse":{"deviceIds":[{"id":"5551230000","kind":"MDN"},{"id":"15551230000","kind":"Msisdn"},{"id":"89148000000000000001","kind":"iccid"}]}},
 "status":"success","callbackCount":"2","maxCallbackThreshold":"4"}`))
		require.NoError(t, err)
		assert.True(t, m.Succeeded())
		assert.Equal(t, "15551230000", m.MSISDN())
		assert.Equal(t, 2, m.CallbackCount)
		assert.Equal(t, "89148000000000000001", m.ICCID())
		assert.Equal(t, "", m.ShortFaultCode())
	})
	t.Run("odd shapes", func(t *testing.T) {
		m, err := ParseCallbackMessage([]byte(`{"requestId":"r","deviceIds":[{"id":"1","kind":"esn"}],
 "deviceResponse":"ok","faultResponse":{"faultcode":"","faultstring":""},"status":"Success","Comment":"x"}`))
		require.NoError(t, err)
		assert.Nil(t, m.DeviceResponse)
		assert.Nil(t, m.FaultResponse)
		assert.True(t, m.Succeeded())
		assert.Equal(t, "x", m.Comment)

		m, err = ParseCallbackMessage(
			[]byte(
				`{"status":"Success","faultResponse":{"faultcode":"CarrierService.INPUT_INVALID.DeviceState.Invalid","faultstring":"s"}}`,
			),
		)
		require.NoError(t, err)
		assert.False(t, m.Succeeded(), "a fault wins over the status")
		assert.Equal(t, CodeDeviceStateInvalid, m.ShortFaultCode())

		_, err = ParseCallbackMessage([]byte(`not json`))
		require.Error(t, err)
	})
	t.Run("MDN fallback for 3G", func(t *testing.T) {
		m, err := ParseCallbackMessage([]byte(`{"deviceIds":[{"id":"A1","kind":"meid"}],
 "deviceResponse":{"ActivateResponse":{"deviceIds":[{"id":"5550001111","kind":"mdn"}]}},"status":"Success"}`))
		require.NoError(t, err)
		assert.Equal(t, "5550001111", m.MSISDN())
	})
}

func TestParseStateAndShortCode(t *testing.T) {
	for in, want := range map[string]change.State{
		"active": change.StateActive, "Pre-active": change.StatePreActive, "Deactive": change.StateDeactive, "suspend": change.StateSuspended,
		"pending activation": change.StatePendingActivation, "PENDING RESUME": change.StatePendingResume,
		"pending mdn change": change.StatePendingOther, "": change.StateUnknown, "weird": change.StateUnknown,
	} {
		assert.Equal(t, want, ParseState(in), in)
	}
	assert.True(t, ParseState("pending preactive").Pending())
	assert.Equal(t, "REQUEST_FAILED.DeviceNotFound", change.ShortCode("UnifiedWebService.REQUEST_FAILED.DeviceNotFound"))
	assert.Equal(t, "900901", change.ShortCode("900901"))
	assert.True(t, strings.HasPrefix(change.ShortCode("X.SYSTEM_ERROR.Y"), "SYSTEM_ERROR."))
}

func TestListCursorReached(t *testing.T) {
	at := func(ts string, seen ...string) ListCursor { return ListCursor{Earliest: ts, SeenAtEarliest: seen} }
	const t1, t1z, t2 = "2024-01-01T10:00:01-04:00", "2024-01-01T14:00:01Z", "2024-01-01T10:00:02-04:00"
	for _, tc := range []struct {
		c, o ListCursor
		want bool
	}{
		{at(t1), ListCursor{}, true},
		{at(t2), at(t1, "a", "b"), true},
		{at(t1, "a", "b"), at(t2), false},
		{at(t1z, "a", "b", "c"), at(t1, "a", "b"), true}, // same instant, more delivered
		{at(t1, "a"), at(t1z, "a", "b"), false},          // same instant, b not yet delivered
		{ListCursor{LargestDeviceIDSeen: ptr(int64(7))}, ListCursor{LargestDeviceIDSeen: ptr(int64(5))}, true},
		{ListCursor{LargestDeviceIDSeen: ptr(int64(7))}, at(t1), false},
	} {
		assert.Equal(t, tc.want, tc.c.Reached(tc.o), "%+v reached %+v", tc.c, tc.o)
	}
}
