package activities_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// What the parent hands each child (ListDevicesToStart with WithState) is
// what the child would have read itself (LoadDeviceChange), for a change
// waiting for its callback, one whose callback is stored, one answered
// synchronously and one that already ended.
func TestListDevicesToStartWithStateIsWhatTheChildWouldRead(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	devs := devices(4, "8914800310", "active")
	bulk, ids := h.newBulk(account, changes("suspend", 1, devs...)...)
	h.exec(`UPDATE device_changes SET status = 'SUBMITTED', request_id = 'req-310', submitted_at = now() WHERE bulk_change_id = $1`, bulk)
	_, _, err := h.store.StoreCallback(ctx(t), db.NewCallback{RequestID: "req-310", ICCID: devs[1].ICCID, Status: "Success",
		Payload: json.RawMessage(`{}`)})
	require.NoError(t, err)
	h.exec(`UPDATE device_changes SET sync_result = '{"success": false, "faultCode": "REQUEST_FAILED.DeviceNotFound"}' WHERE id = $1`,
		ids[devs[2].ICCID])
	h.exec(`UPDATE device_changes SET status = 'ERROR', error_code = 'DEVICE_BUSY' WHERE id = $1`, ids[devs[3].ICCID])

	var page []activities.DeviceToStart
	require.NoError(t, h.run(&page, h.acts.ListDevicesToStart, activities.ListDevicesInput{BulkChangeID: bulk, MaxBatch: 1,
		Limit: 10, WithState: true}))
	require.Len(t, page, 4)
	for _, d := range page {
		require.Equal(t, h.load(d.ID).Known(), d.Known, d.ICCID)
	}
	byICCID := map[string]*api.KnownDeviceChange{}
	for _, d := range page {
		byICCID[d.ICCID] = d.Known
	}
	require.False(t, byICCID[devs[0].ICCID].Complete(), "still waiting: the child reads the change at start")
	require.Equal(t, change.ByCallback, byICCID[devs[1].ICCID].Confirmation.Source)
	require.Equal(t, change.BySync, byICCID[devs[2].ICCID].Confirmation.Source)
	require.Equal(t, change.Code("REQUEST_FAILED.DeviceNotFound"), byICCID[devs[2].ICCID].Confirmation.FaultCode)
	require.True(t, byICCID[devs[3].ICCID].Final)

	// Without WithState the page is as before: ids only.
	var plain []activities.DeviceToStart
	require.NoError(t, h.run(&plain, h.acts.ListDevicesToStart, activities.ListDevicesInput{BulkChangeID: bulk, MaxBatch: 1,
		Limit: 10}))
	require.Len(t, plain, 4)
	require.Nil(t, plain[0].Known)
}
