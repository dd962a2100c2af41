package activities_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
)

// A worker died between claiming a batch and sending it, and meanwhile an
// earlier change of the same device has its callback delivered late. That
// callback is no proof that the new request reached ThingSpace: the
// reconciliation finds the device untouched and sends the request, instead
// of recording the device as sent and waiting for a confirmation that
// never comes (or taking the old callback's verdict for the new change).
func TestStaleCallbackOfEarlierChangeIsNoProofOfLostRequest(t *testing.T) {
	t.Parallel()
	h := newHarness(t, pendingAnHour)
	h.acts.ReconcileSettle = 200 * time.Millisecond
	dev := devices(1, "8914800105", "active")[0]
	h.seed(dev)

	// The earlier change: accepted as oldReq, confirmed by polling.
	oldBulk, oldIDs := h.newBulk(account, changes("suspend", 1, dev)...)
	oldRequest, _, _, err := h.store.ClaimBatch(ctx(t), oldBulk, 1, db.ClaimLimits{})
	require.NoError(t, err)
	oldReq := uuid.NewString()
	require.NoError(t, h.store.MarkRequestAccepted(ctx(t), oldRequest, oldReq, nil))
	_, _, err = h.store.Complete(ctx(t), db.Completion{DeviceChangeID: oldIDs[dev.ICCID], Status: change.Processed,
		Outcome: "suspended", ConfirmedBy: "poll", RequestID: oldReq})
	require.NoError(t, err)

	// The new change is claimed, and the worker dies before sending it.
	bulk, ids := h.newBulk(account, changes("suspend", 1, dev)...)
	_, _, _, err = h.store.ClaimBatch(ctx(t), bulk, 1, db.ClaimLimits{})
	require.NoError(t, err)

	// The earlier request's callback arrives now.
	_, first, err := h.store.StoreCallback(ctx(t), db.NewCallback{RequestID: oldReq, ICCID: dev.ICCID, Status: "Success",
		Payload: json.RawMessage(`{}`)})
	require.NoError(t, err)
	require.True(t, first)

	time.Sleep(300 * time.Millisecond)
	res := h.mustSendBatch(bulk, 1)
	require.Equal(t, db.RequestAccepted, res.State)
	require.NotEmpty(t, res.RequestID, "sent, with ThingSpace's requestId")
	require.Equal(t, 1, h.stats().Requests[epSuspend], "the new change was sent")
	dc := h.change(ids[dev.ICCID])
	require.Equal(t, change.Sent, dc.Status)
	require.Equal(t, res.RequestID, dc.RequestID)
	st := h.load(ids[dev.ICCID])
	require.Empty(t, st.Stored, "the earlier request's callback is not the new change's")
}
