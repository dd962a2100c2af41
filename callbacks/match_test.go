package callbacks

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// claimed creates a bulk change suspending the test ICCID and claims its
// batch: the device change is in flight, its request SENDING.
func claimed(t *testing.T, st *db.Store) (bulkID string, req *db.ThingSpaceRequest, changeID int64) {
	t.Helper()
	ctx := context.Background()
	bulkID = uuid.NewString()
	_, _, err := st.CreateBulkChange(ctx, db.NewBulkChange{ID: bulkID, AccountName: "acct", Batches: 1,
		WorkflowID: api.BulkChangeWorkflowID(bulkID),
		Devices:    []db.NewDeviceChange{{Seq: 1, RowNumber: 2, ICCID: iccid, Operation: "suspend", BatchNo: 1}}})
	require.NoError(t, err)
	req, devs, _, err := st.ClaimBatch(ctx, bulkID, 1, db.ClaimLimits{})
	require.NoError(t, err)
	require.Len(t, devs, 1)
	return bulkID, req, devs[0].ID
}

// postHTTP sends a callback to the receiver over HTTP.
func postHTTP(t *testing.T, url, body string) int {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	return resp.StatusCode
}

// An old request's callback, redelivered while a newer change of the same
// ICCID is in flight, belongs to the old change: it neither signals nor is
// stored for the newer one, whether the newer request's requestId is known
// yet or not.
func TestRedeliveredCallbackOfOldRequestDoesNotDecideNewerChange(t *testing.T) {
	for _, newerAccepted := range []bool{false, true} {
		t.Run(map[bool]string{false: "newer request being sent", true: "newer request accepted"}[newerAccepted], func(t *testing.T) {
			r, sig, st := newReceiver(t)
			srv := httptest.NewServer(r.Handler())
			defer srv.Close()
			ctx := context.Background()

			// The old change: accepted as req1 and confirmed by polling, its
			// callback not delivered (ThingSpace keeps trying).
			oldBulk, oldReq, oldID := claimed(t, st)
			require.NoError(t, st.MarkRequestAccepted(ctx, oldReq, req1, nil))
			_, _, err := st.Complete(ctx, db.Completion{DeviceChangeID: oldID, Status: change.Processed,
				Outcome: "suspended", ConfirmedBy: "poll", RequestID: req1})
			require.NoError(t, err)

			// The newer change of the same device.
			newBulk, newReq, newID := claimed(t, st)
			if newerAccepted {
				require.NoError(t, st.MarkRequestAccepted(ctx, newReq, uuid.NewString(), nil))
			}

			// ThingSpace finally delivers the old request's callback.
			require.Equal(t, http.StatusOK, postHTTP(t, srv.URL,
				callback("listener", "s3cret-listener", req1, "Failed", "UnifiedWebService.REQUEST_FAILED.DeviceNotFound")))
			require.Equal(t, http.StatusOK, postHTTP(t, srv.URL,
				callback("listener", "s3cret-listener", req1, "Failed", "UnifiedWebService.REQUEST_FAILED.DeviceNotFound")),
				"and again")

			for _, s := range sig.signals {
				require.NotEqual(t, api.DeviceChangeWorkflowID(newBulk, iccid), s.WorkflowID,
					"the newer change's workflow was signalled an old request's callback")
			}
			cbs, err := st.StoredCallbacks(ctx, newID)
			require.NoError(t, err)
			require.Empty(t, cbs, "no callback stored for the newer change")
			old, err := st.StoredCallbacks(ctx, oldID)
			require.NoError(t, err)
			require.Len(t, old, 1, "the callback belongs to the old change")
			require.Equal(t, 2, old[0].Copies)
			require.Equal(t, oldBulk, old[0].BulkChangeID)

			// And it is no proof that the newer request reached ThingSpace.
			called, err := st.DeviceChangesWithCallbacks(ctx, newReq.PK, []int64{newID})
			require.NoError(t, err)
			require.False(t, called[newID])
		})
	}
}

// A callback of a requestId no request of ours holds (the answer was lost,
// or the callback outran it) goes to the ICCID's change in flight whose
// requestId is not known yet, and counts as proof of its request; never to
// a change whose requestId is known.
func TestCallbackOfUnknownRequestGoesOnlyToChangeAwaitingItsRequestID(t *testing.T) {
	r, sig, st := newReceiver(t)
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()
	ctx := context.Background()

	bulk, req, id := claimed(t, st)
	require.Equal(t, http.StatusOK, postHTTP(t, srv.URL, callback("listener", "s3cret-listener", reqUnknown, "Success", "")))
	require.Len(t, sig.signals, 1)
	require.Equal(t, api.DeviceChangeWorkflowID(bulk, iccid), sig.signals[0].WorkflowID)
	called, err := st.DeviceChangesWithCallbacks(ctx, req.PK, []int64{id})
	require.NoError(t, err)
	require.True(t, called[id], "a callback received after the claim proves the lost request")

	// Once the change's requestId is known, another request's callback is
	// not its own.
	require.NoError(t, st.MarkRequestAccepted(ctx, req, req1, nil))
	other := uuid.NewString()
	require.Equal(t, http.StatusOK, postHTTP(t, srv.URL, callback("listener", "s3cret-listener", other, "Success", "")))
	require.Len(t, sig.signals, 1, "not signalled")
	cbs, err := st.StoredCallbacks(ctx, id)
	require.NoError(t, err)
	require.Len(t, cbs, 1)
	require.Equal(t, reqUnknown, cbs[0].RequestID)
}
