package activities_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/thingspace"
)

// Every HTTP attempt made for a bulk change, failed ones and transport
// retries included, lands in the audit log under the bulk change, with its
// HTTP status and ThingSpace's requestId.
func TestAuditorRecordsEveryThingSpaceAttempt(t *testing.T) {
	t.Parallel()
	h := newHarness(t, pendingAnHour)
	devs := devices(2, "8914800501", "active")
	bulk, ids := h.seededBulk(account, "suspend", devs...)

	// ThingSpace is down: the token request is retried by the transport,
	// every attempt answered 5xx.
	h.sim.SetFaults(thingspacesim.Faults{ErrorRate: 1})
	_, err := h.sendBatch(bulk, 1)
	require.False(t, appError(t, err).NonRetryable())
	h.sim.SetFaults(thingspacesim.Faults{})
	res := h.mustSendBatch(bulk, 1)
	require.Equal(t, db.RequestAccepted, res.State)

	rows := h.audit(bulk)
	st := h.stats()
	require.Len(t, rows, sumRequests(st), "one audit row per request ThingSpace saw")

	var failedOAuth []auditRow
	var suspend []auditRow
	for _, r := range rows {
		require.Equal(t, bulk, r.BulkChangeID)
		require.Equal(t, "thingspace", r.Service)
		require.NotZero(t, r.HTTPStatus)
		require.NotEmpty(t, r.Path)
		switch {
		case r.Operation == thingspace.OpOAuth && r.HTTPStatus >= 500:
			failedOAuth = append(failedOAuth, r)
		case r.Operation == thingspace.OpSuspend:
			suspend = append(suspend, r)
		}
	}
	require.Len(t, failedOAuth, 3, "first try and two transport retries")
	for i, r := range failedOAuth {
		require.Equal(t, i+1, r.Attempt)
		require.Equal(t, "error", r.Outcome)
	}
	require.Len(t, suspend, 1)
	s := suspend[0]
	require.Equal(t, 200, s.HTTPStatus)
	require.Equal(t, "ok", s.Outcome)
	require.Equal(t, "/api/m2m/v1/devices/actions/suspend", s.Path)
	require.Equal(t, res.RequestID, s.RequestID, "requestId parsed from the answer")
	require.Contains(t, s.RequestBody, devs[0].ICCID)
	require.Contains(t, s.RequestBody, devs[1].ICCID)

	// A device-level lookup is audited under its device change; a refusal
	// keeps ThingSpace's code.
	var look activities.DeviceLookup
	require.NoError(
		t,
		h.run(&look, h.acts.LookupDevice, activities.LookupInput{BulkChangeID: bulk, DeviceChangeID: ids[devs[0].ICCID],
			ICCID: devs[0].ICCID}),
	)
	require.True(t, look.Found)
	require.Equal(t, change.StatePendingSuspend, look.State)
	unknown := devices(1, "8914800502", "")[0]
	require.NoError(
		t,
		h.run(&look, h.acts.LookupDevice, activities.LookupInput{BulkChangeID: bulk, DeviceChangeID: ids[devs[1].ICCID],
			ICCID: unknown.ICCID}),
	)
	require.False(t, look.Found)
	rows = h.audit(bulk)
	last2 := rows[len(rows)-2:]
	require.Equal(t, ids[devs[0].ICCID], last2[0].DeviceChangeID)
	require.Equal(t, thingspace.OpList, last2[0].Operation)
	require.Equal(t, 200, last2[0].HTTPStatus)
	require.Equal(t, ids[devs[1].ICCID], last2[1].DeviceChangeID)
	require.Equal(t, 400, last2[1].HTTPStatus)
	require.Equal(t, "error", last2[1].Outcome)
	require.Equal(t, thingspacesim.CodeDeviceNotFound, last2[1].ErrorCode)
}

// auditRow is an m2m_log row.
type auditRow struct {
	BulkChangeID   string
	DeviceChangeID int64
	Service        string
	Operation      string
	Path           string
	RequestBody    string
	ResponseBody   string
	HTTPStatus     int
	Outcome        string
	ErrorCode      string
	ErrorMessage   string
	RequestID      string
	Attempt        int
	DedupeKey      string
}

// audit lists the audit log, oldest first; bulkID "" lists every row.
func (h *harness) audit(bulkID string) []auditRow {
	h.t.Helper()
	var out []auditRow
	var r auditRow
	h.eachRow(
		[]any{
			&r.BulkChangeID,
			&r.DeviceChangeID,
			&r.Service,
			&r.Operation,
			&r.Path,
			&r.RequestBody,
			&r.ResponseBody,
			&r.HTTPStatus,
			&r.Outcome,
			&r.ErrorCode,
			&r.ErrorMessage,
			&r.RequestID,
			&r.Attempt,
			&r.DedupeKey,
		},
		func() { out = append(out, r) },
		`SELECT coalesce(bulk_change_id::text, ''), coalesce(device_change_id, 0), service,
		operation, coalesce(path, ''), coalesce(request_body, ''), coalesce(response_body, ''), coalesce(http_status, 0), outcome,
		coalesce(error_code, ''), coalesce(error_message, ''), coalesce(request_id, ''), coalesce(attempt, 0), coalesce(dedupe_key, '')
		FROM m2m_log WHERE $1 = '' OR bulk_change_id::text = $1 ORDER BY id`,
		bulkID,
	)
	return out
}
