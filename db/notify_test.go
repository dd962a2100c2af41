package db_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/db/dbtest"
)

// Overlapping attempts that both delivered record the delivery once; failed
// attempts are all kept; only a delivered one counts as delivered.
func TestNotificationDeliveriesRecordedOnce(t *testing.T) {
	st, ctx := newStore(t)
	bulk := uuid.NewString()
	key := db.NotificationKey("bulk-change/"+bulk+"/finished", "webhook:ops")
	entry := func(outcome string) db.AuditEntry {
		return db.AuditEntry{BulkChangeID: bulk, Operation: "finished", Method: "POST", Path: "webhook:ops https://h",
			RequestBody: `{"kind":"finished"}`, Outcome: outcome, Attempt: 1, Duration: time.Second}
	}
	for range 2 {
		recorded, err := st.RecordNotification(ctx, entry("error"), "")
		require.NoError(t, err)
		require.True(t, recorded)
	}
	delivered, err := st.NotificationDelivered(ctx, key)
	require.NoError(t, err)
	require.False(t, delivered, "failures do not count as delivered")

	dbtest.RequireOneWinner(t, 4, func(int) (bool, bool, error) {
		recorded, err := st.RecordNotification(ctx, entry("ok"), key)
		return true, recorded, err
	})
	delivered, err = st.NotificationDelivered(ctx, key)
	require.NoError(t, err)
	require.True(t, delivered)
	counts, err := st.AuditCount(ctx, bulk)
	require.NoError(t, err)
	require.Equal(t, map[string]int{db.NotifyService: 3}, counts)
}
