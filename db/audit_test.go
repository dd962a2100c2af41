package db_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
)

// A bulk change's audit log: its entries only, oldest first, cut at the
// limit with the whole count, without the bodies.
func TestAuditLog(t *testing.T) {
	t.Parallel()
	st, ctx := newStore(t)
	b := createBulkWith(t, st, db.NewBulkChange{Tenant: "acme"}, devs(change.Suspend, 1, 1)...)
	other := createBulk(t, st, devs(change.Suspend, 1, 1)...)
	at := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	require.NoError(t, st.WriteAudit(ctx, db.AuditEntry{BulkChangeID: b.ID, Service: "revio", Operation: "create",
		Method: "POST", Path: "/v1/Services", RequestBody: `{"secret":"body"}`, HTTPStatus: 500, Outcome: "error",
		ErrorCode: "HTTP_500", ErrorMessage: "down", Attempt: 2, Duration: 1500 * time.Millisecond, At: at.Add(time.Second)}))
	require.NoError(t, st.WriteAudit(ctx, db.AuditEntry{BulkChangeID: b.ID, Service: "thingspace", Operation: "suspend",
		Method: "PUT", Path: "/api/m2m/v1/devices/actions/suspend", HTTPStatus: 200, Outcome: "ok", RequestID: "req-1", At: at}))
	require.NoError(t, st.WriteAudit(ctx, db.AuditEntry{BulkChangeID: other.ID, Service: "thingspace", Operation: "restore",
		Outcome: "ok", At: at}))
	require.NoError(t, st.WriteAudit(ctx, db.AuditEntry{Service: "thingspace", Operation: "token", Outcome: "ok", At: at}))

	rows, total, err := st.AuditLog(ctx, b.ID, 10)
	require.NoError(t, err)
	require.Equal(t, 2, total)
	require.Len(t, rows, 2)
	require.Equal(t, "suspend", rows[0].Operation, "oldest first")
	require.Equal(t, "req-1", rows[0].RequestID)
	require.True(t, rows[0].At.Equal(at))
	require.Equal(t, db.AuditRow{At: rows[1].At, Service: "revio", Operation: "create", Method: "POST", Path: "/v1/Services",
		HTTPStatus: 500, Outcome: "error", ErrorCode: "HTTP_500", ErrorMessage: "down", Attempt: 2, DurationMS: 1500}, rows[1])

	rows, total, err = st.AuditLog(ctx, b.ID, 1)
	require.NoError(t, err)
	require.Equal(t, 2, total)
	require.Len(t, rows, 1)
}
