package callbacks

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/metrics"
	"github.com/iot-ops/tsbulk/thingspace"
	"github.com/iot-ops/tsbulk/workflows/api"
)

const (
	ppuStreet = "1234 Elm Grove Road"
	ppuLast   = "Kowalczyk"
)

// activationInFlight creates an activation with a PPU, sent as req1.
func activationInFlight(t *testing.T, st *db.Store) (bulkID string, changeID int64) {
	t.Helper()
	ctx := context.Background()
	ppu, err := json.Marshal(thingspace.PlaceOfUse{
		CustomerName: thingspace.CustomerName{FirstName: "Agnieszka", LastName: ppuLast},
		Address: thingspace.Address{AddressLine1: ppuStreet, City: "Springfield", State: "IL", Zip: "62701",
			Country: "USA"},
	})
	require.NoError(t, err)
	bulkID = uuid.NewString()
	_, _, err = st.CreateBulkChange(ctx, db.NewBulkChange{ID: bulkID, AccountName: "acct", Batches: 1,
		WorkflowID: api.BulkChangeWorkflowID(bulkID),
		Devices: []db.NewDeviceChange{{Seq: 1, RowNumber: 2, ICCID: iccid, Operation: "activate", BatchNo: 1,
			Params: json.RawMessage(`{"servicePlan":"m2m_4G","mdnZipCode":"62701"}`), PPU: ppu}}})
	require.NoError(t, err)
	req, devs, _, err := st.ClaimBatch(ctx, bulkID, 1, db.ClaimLimits{})
	require.NoError(t, err)
	require.NoError(t, st.MarkRequestAccepted(ctx, req, req1, nil))
	return bulkID, devs[0].ID
}

// A callback with a megabyte fault code and fault text, the text echoing
// the device's PPU, is stored with the code and text capped and the PPU
// replaced; what the workflow is signalled carries the same; the outcome
// recorded from it has no PPU in its error message, and the metric of
// device changes labels the unknown code "other".
func TestOversizedCallbackFieldsAreBounded(t *testing.T) {
	r, sig, st := newReceiver(t)
	r.MaxBodyBytes = 4 << 20
	m := metrics.New()
	r.Metrics = m
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()
	ctx := context.Background()
	_, id := activationInFlight(t, st)

	hugeCode := "UnifiedWebService.REQUEST_FAILED." + strings.Repeat("X", 1<<20)
	hugeText := "REQUEST_FAILED. address " + ppuStreet + " of " + ppuLast + " refused " + strings.Repeat("y", 1<<20)
	body, err := json.Marshal(map[string]any{
		"username": "listener", "password": "s3cret-listener", "requestId": req1, "status": strings.Repeat("F", 1<<20),
		"deviceIds":     []map[string]string{{"id": iccid, "kind": "iccid"}},
		"faultResponse": map[string]string{"faultcode": hugeCode, "faultstring": hugeText},
	})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, postHTTP(t, srv.URL, string(body)))

	cbs, err := st.StoredCallbacks(ctx, id)
	require.NoError(t, err)
	require.Len(t, cbs, 1)
	cb := cbs[0]
	require.LessOrEqual(t, len(cb.FaultCode), thingspace.MaxCodeLen)
	require.True(t, strings.HasPrefix(cb.FaultCode, "UnifiedWebService.REQUEST_FAILED.XXX"))
	require.LessOrEqual(t, utf8.RuneCountInString(cb.FaultString), thingspace.MaxTextLen+3)
	require.LessOrEqual(t, utf8.RuneCountInString(cb.Status), thingspace.MaxStatusLen+3)
	for _, stored := range []string{cb.FaultString, string(cb.Payload)} {
		require.NotContains(t, stored, ppuStreet)
		require.NotContains(t, stored, ppuLast)
	}
	require.Contains(t, cb.FaultString, thingspace.Redacted)

	require.Len(t, sig.signals, 1)
	conf := sig.signals[0].Conf
	require.LessOrEqual(t, len(conf.FaultCode), thingspace.MaxCodeLen)
	require.NotContains(t, conf.FaultMessage, ppuStreet)

	// The workflow records the outcome from the confirmation.
	acts := &activities.Activities{Store: st, Metrics: m}
	res, err := acts.CompleteDeviceChange(ctx, activities.CompleteInput{DeviceChangeID: id, Operation: change.Activate,
		Status: change.Failed, ErrorCode: conf.FaultCode,
		ErrorMessage: "device is already active; its PPU update failed: " + ppuStreet, ConfirmedBy: conf.Source})
	require.NoError(t, err)
	require.NotContains(t, res.ErrorMessage, ppuStreet)
	require.Contains(t, res.ErrorMessage, thingspace.Redacted)

	families, err := m.Registry.Gather()
	require.NoError(t, err)
	var reasons []string
	for _, f := range families {
		if f.GetName() != "tsbulk_device_changes_total" {
			continue
		}
		for _, metric := range f.GetMetric() {
			for _, l := range metric.GetLabel() {
				if l.GetName() == "reason" {
					reasons = append(reasons, l.GetValue())
				}
			}
		}
	}
	require.Equal(t, []string{thingspace.OtherCode}, reasons, "an unknown code is one label value")
}

// ThingSpace's request ids are UUIDs: a callback with anything else is
// refused with 400 and not stored.
func TestCallbackWithMalformedRequestIDIsRefused(t *testing.T) {
	r, sig, st := newReceiver(t)
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()
	inFlight(t, st)
	for _, id := range []string{"req-1", strings.Repeat("a", 1000), req1 + "x", "{" + req1 + "}"} {
		require.Equal(t, http.StatusBadRequest, postHTTP(t, srv.URL, callback("listener", "s3cret-listener", id, "Success", "")), "%.40s", id)
	}
	require.Empty(t, sig.signals)
	var n int
	require.NoError(t, st.Pool.QueryRow(context.Background(), `SELECT count(*) FROM callbacks`).Scan(&n))
	require.Zero(t, n)
}
