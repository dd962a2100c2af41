package db_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/db/dbtest"
	"github.com/iot-ops/tsbulk/thingspace"
)

func newCallback(requestID, iccid string) db.NewCallback {
	return db.NewCallback{RequestID: requestID, ICCID: iccid, Status: "Success", MSISDN: "5551112222", CallbackCount: 1,
		Payload: json.RawMessage(`{"requestId":"` + requestID + `"}`)}
}

func TestStoreCallback(t *testing.T) {
	t.Parallel()
	st, ctx := newStore(t)

	t.Run("a redelivered callback is stored once and counted", func(t *testing.T) {
		b, id := newChange(t, st, change.Suspend)
		accept(t, st, b.ID, 1, "req-copies")
		iccid := getChange(t, st, id).ICCID

		cb, first, err := st.StoreCallback(ctx, newCallback("req-copies", iccid))
		require.NoError(t, err)
		require.True(t, first)
		require.Equal(t, 1, cb.Copies)
		require.NotNil(t, cb.DeviceChangeID)
		require.Equal(t, id, *cb.DeviceChangeID)
		require.Equal(t, b.ID, cb.BulkChangeID)
		require.Equal(t, "5551112222", cb.MSISDN)
		require.Equal(t, "req-copies", cb.RequestID)

		again, first, err := st.StoreCallback(ctx, newCallback("req-copies", iccid))
		require.NoError(t, err)
		require.False(t, first)
		require.Equal(t, cb.ID, again.ID)
		require.Equal(t, 2, again.Copies)

		stored, copies, err := st.CallbackStats(ctx, b.ID)
		require.NoError(t, err)
		require.Equal(t, 1, stored)
		require.Equal(t, 2, copies)
	})

	t.Run("concurrent copies: exactly one is the first", func(t *testing.T) {
		b, id := newChange(t, st, change.Suspend)
		accept(t, st, b.ID, 1, "req-copy-race")
		iccid := getChange(t, st, id).ICCID
		dbtest.RequireOneWinner(t, 8, func(int) (int64, bool, error) {
			cb, first, err := st.StoreCallback(ctx, newCallback("req-copy-race", iccid))
			if err != nil {
				return 0, false, err
			}
			return cb.ID, first, nil
		})
		stored, err := st.StoredCallbacks(ctx, id)
		require.NoError(t, err)
		require.Len(t, stored, 1)
		require.Equal(t, 8, stored[0].Copies)
	})

	t.Run("a known request id decides, even when a newer change of the ICCID is in flight", func(t *testing.T) {
		iccid := dbtest.NewICCID()
		old := createBulk(t, st, dev(iccid, change.Suspend, 1))
		oldID := changeIDs(t, st, old.ID)[0]
		accept(t, st, old.ID, 1, "req-old")
		_, _, err := st.Complete(ctx, db.Completion{DeviceChangeID: oldID, Status: change.Processed,
			Outcome: string(change.Suspended), FinalState: "suspended"})
		require.NoError(t, err)
		newer := createBulk(t, st, dev(iccid, change.Restore, 1))
		newerID := changeIDs(t, st, newer.ID)[0]
		claim(t, st, newer.ID, 1) // in flight, its request id not known yet

		cb, _, err := st.StoreCallback(ctx, newCallback("req-old", iccid))
		require.NoError(t, err)
		require.Equal(t, oldID, *cb.DeviceChangeID, "the old request's redelivered callback stays with its change")

		cb, _, err = st.StoreCallback(ctx, newCallback("req-unknown", iccid))
		require.NoError(t, err)
		require.NotNil(t, cb.DeviceChangeID, "an unknown request id falls back to the ICCID's change in flight")
		require.Equal(t, newerID, *cb.DeviceChangeID)
	})

	t.Run("a change whose request id is known never takes another request's callback", func(t *testing.T) {
		b, id := newChange(t, st, change.Suspend)
		accept(t, st, b.ID, 1, "req-known")
		cb, first, err := st.StoreCallback(ctx, newCallback("req-stranger", getChange(t, st, id).ICCID))
		require.NoError(t, err)
		require.True(t, first)
		require.Nil(t, cb.DeviceChangeID)
		require.Empty(t, cb.BulkChangeID)
	})

	t.Run("nothing stored reads as nothing", func(t *testing.T) {
		got, err := st.StoredCallbacks(ctx, 1<<40)
		require.NoError(t, err)
		require.Empty(t, got)
		stored, copies, err := st.CallbackStats(ctx, "00000000-0000-0000-0000-000000000000")
		require.NoError(t, err)
		require.Zero(t, stored)
		require.Zero(t, copies)
	})

	t.Run("an unknown ICCID is stored unmatched", func(t *testing.T) {
		cb, first, err := st.StoreCallback(ctx, newCallback("req-nobody", dbtest.NewICCID()))
		require.NoError(t, err)
		require.True(t, first)
		require.Nil(t, cb.DeviceChangeID)
	})

	t.Run("a PPU update's callback belongs to its device change", func(t *testing.T) {
		b, id := newChange(t, st, change.Activate)
		accept(t, st, b.ID, 1, "req-activate")
		req, _, err := st.ClaimSingle(ctx, id, db.PPUKey(id), "ppu")
		require.NoError(t, err)
		require.NoError(t, st.MarkSingleAccepted(ctx, req, "req-ppu"))
		cb, _, err := st.StoreCallback(ctx, newCallback("req-ppu", getChange(t, st, id).ICCID))
		require.NoError(t, err)
		require.NotNil(t, cb.DeviceChangeID)
		require.Equal(t, id, *cb.DeviceChangeID)
	})

	t.Run("the device's PPU is scrubbed from the fault text and the stored body", func(t *testing.T) {
		d := devs(change.Activate, 1, 1)
		d[0].PPU = ppuJSON("Hermione", "12 Grimmauld Place")
		b := createBulk(t, st, d...)
		accept(t, st, b.ID, 1, "req-scrub")
		n := newCallback("req-scrub", d[0].ICCID)
		n.Status, n.FaultCode, n.FaultString = "Failed", "InvalidAddress", "12 Grimmauld Place (Hermione) is not valid"
		n.Payload = json.RawMessage(`{"faultResponse":{"faultstring":"12 Grimmauld Place (Hermione) is not valid",` +
			`"count":12345678901234567890,"nested":["Hermione"]}}`)
		cb, _, err := st.StoreCallback(ctx, n)
		require.NoError(t, err)
		require.Equal(t, thingspace.Redacted+" ("+thingspace.Redacted+") is not valid", cb.FaultString)
		require.NotContains(t, string(cb.Payload), "Hermione")
		require.NotContains(t, string(cb.Payload), "Grimmauld")
		require.Contains(t, string(cb.Payload), "12345678901234567890", "numbers are kept as they came")
		require.Zero(t, queryInt(t, st, `SELECT count(*) FROM callbacks WHERE payload::text LIKE '%Hermione%'
			OR fault_string LIKE '%Hermione%'`))
	})
}

func TestCallbacksToSignal(t *testing.T) {
	t.Parallel()
	st, ctx := newStore(t)

	b, ids := newBatch(t, st, change.Suspend, 5)
	accept(t, st, b.ID, 1, "req-signal")
	cbs := make([]int64, len(ids))
	for i, id := range ids {
		cb, _, err := st.StoreCallback(ctx, newCallback("req-signal", getChange(t, st, id).ICCID))
		require.NoError(t, err)
		cbs[i] = cb.ID
	}
	exec(t, st, `UPDATE callbacks SET last_received_at = now() - interval '1 minute' WHERE id = ANY($1)`, cbs[:4])
	require.NoError(t, st.SetCallbackSignalResult(ctx, cbs[0], "signal_failed"))
	require.NoError(t, st.SetCallbackSignalResult(ctx, cbs[1], "signalled"))
	_, _, err := st.Complete(ctx, db.Completion{DeviceChangeID: ids[2], Status: change.Processed,
		Outcome: string(change.Suspended), FinalState: "suspended"})
	require.NoError(t, err)
	// cbs[3]: never signalled; cbs[4]: received just now, still being
	// answered.

	due, err := st.CallbacksToSignal(ctx, 30*time.Second, 10)
	require.NoError(t, err)
	require.Equal(t, []int64{cbs[0], cbs[3]}, callbackIDs(due),
		"failed or never signalled, of a change in flight, settled; oldest first")
	require.Equal(t, "signal_failed", due[0].SignalResult)

	due, err = st.CallbacksToSignal(ctx, 30*time.Second, 1)
	require.NoError(t, err)
	require.Equal(t, []int64{cbs[0]}, callbackIDs(due))

	due, err = st.CallbacksToSignal(ctx, 2*time.Minute, 10)
	require.NoError(t, err)
	require.Empty(t, due)
}

func callbackIDs(cs []db.Callback) []int64 {
	return each(cs, func(c db.Callback) int64 { return c.ID })
}

// A callback is the tenant's whose endpoint received it: a callback of
// another tenant's request is refused, nothing stored; the fallback by
// ICCID considers the receiving tenant's bulk changes only; a copy of a
// callback stored as another tenant's is refused, not counted.
func TestStoreCallbackTenants(t *testing.T) {
	t.Parallel()
	st, ctx := newStore(t)
	tenantCallback := func(tenant, requestID, iccid string) db.NewCallback {
		n := newCallback(requestID, iccid)
		n.Tenant = tenant
		return n
	}
	stored := func(requestID string) int {
		return queryInt(t, st, `SELECT count(*) FROM callbacks WHERE request_id = $1`, requestID)
	}

	t.Run("stored with its tenant; before tenants, the default one", func(t *testing.T) {
		iccid := dbtest.NewICCID()
		b := createBulkWith(t, st, db.NewBulkChange{Tenant: "acme"}, dev(iccid, change.Suspend, 1))
		accept(t, st, b.ID, 1, "req-acme")
		cb, first, err := st.StoreCallback(ctx, tenantCallback("acme", "req-acme", iccid))
		require.NoError(t, err)
		require.True(t, first)
		require.Equal(t, "acme", cb.Tenant)
		require.Equal(t, b.ID, cb.BulkChangeID)
		var column string
		require.NoError(t, st.Pool.QueryRow(ctx, `SELECT tenant FROM callbacks WHERE id = $1`, cb.ID).Scan(&column))
		require.Equal(t, "acme", column)

		def, _, err := st.StoreCallback(ctx, newCallback("req-default-tenant", dbtest.NewICCID()))
		require.NoError(t, err)
		require.Equal(t, change.DefaultTenant, def.Tenant, `"" is the default tenant`)

		// A row stored before tenants (tenant NULL) is the default tenant's:
		// its copy at the default endpoint is counted.
		exec(t, st, `UPDATE callbacks SET tenant = NULL WHERE id = $1`, def.ID)
		again, first, err := st.StoreCallback(ctx, newCallback("req-default-tenant", def.ICCID))
		require.NoError(t, err)
		require.False(t, first)
		require.Equal(t, 2, again.Copies)
		require.Equal(t, change.DefaultTenant, again.Tenant)
		_, _, err = st.StoreCallback(ctx, tenantCallback("acme", "req-default-tenant", def.ICCID))
		require.ErrorIs(t, err, db.ErrOtherTenant, "and not acme's")
	})

	t.Run("a callback of another tenant's request is refused, nothing stored", func(t *testing.T) {
		iccid := dbtest.NewICCID()
		b := createBulkWith(t, st, db.NewBulkChange{Tenant: "acme"}, dev(iccid, change.Suspend, 1))
		accept(t, st, b.ID, 1, "req-of-acme")
		id := changeIDs(t, st, b.ID)[0]

		for _, tenant := range []string{"globex", ""} {
			_, _, err := st.StoreCallback(ctx, tenantCallback(tenant, "req-of-acme", iccid))
			require.ErrorIs(t, err, db.ErrOtherTenant, "received as tenant %q's", tenant)
			require.ErrorContains(t, err, "request req-of-acme is tenant acme's")
			// Another ICCID of the same request: the request decides.
			_, _, err = st.StoreCallback(ctx, tenantCallback(tenant, "req-of-acme", dbtest.NewICCID()))
			require.ErrorIs(t, err, db.ErrOtherTenant)
		}
		require.Zero(t, stored("req-of-acme"), "nothing stored")
		cbs, err := st.StoredCallbacks(ctx, id)
		require.NoError(t, err)
		require.Empty(t, cbs)

		// The owner's own callback is taken.
		cb, _, err := st.StoreCallback(ctx, tenantCallback("acme", "req-of-acme", iccid))
		require.NoError(t, err)
		require.Equal(t, id, *cb.DeviceChangeID)
	})

	t.Run("a default-tenant request is refused at a named tenant's endpoint", func(t *testing.T) {
		b, id := newChange(t, st, change.Suspend)
		require.Equal(t, change.DefaultTenant, b.Tenant)
		accept(t, st, b.ID, 1, "req-of-default")
		_, _, err := st.StoreCallback(ctx, tenantCallback("acme", "req-of-default", getChange(t, st, id).ICCID))
		require.ErrorIs(t, err, db.ErrOtherTenant)
		require.Zero(t, stored("req-of-default"))
	})

	t.Run("the fallback by ICCID considers the receiving tenant's changes only", func(t *testing.T) {
		iccid := dbtest.NewICCID()
		b := createBulkWith(t, st, db.NewBulkChange{Tenant: "acme"}, dev(iccid, change.Suspend, 1))
		claim(t, st, b.ID, 1) // in flight, its request id not known yet
		id := changeIDs(t, st, b.ID)[0]

		cb, first, err := st.StoreCallback(ctx, tenantCallback("globex", "req-unknown-globex", iccid))
		require.NoError(t, err)
		require.True(t, first)
		require.Nil(t, cb.DeviceChangeID, "another tenant's change in flight is not this callback's")
		require.Equal(t, "globex", cb.Tenant)

		// The same callback at the owner's endpoint is the one stored
		// already, as globex's: refused, not taken over.
		_, _, err = st.StoreCallback(ctx, tenantCallback("acme", "req-unknown-globex", iccid))
		require.ErrorIs(t, err, db.ErrOtherTenant)
		require.Equal(t, 1, queryInt(t, st, `SELECT copies FROM callbacks WHERE id = $1`, cb.ID), "not counted")

		cb, _, err = st.StoreCallback(ctx, tenantCallback("acme", "req-unknown-acme", iccid))
		require.NoError(t, err)
		require.NotNil(t, cb.DeviceChangeID)
		require.Equal(t, id, *cb.DeviceChangeID, "the tenant's own change in flight takes it")
	})

	t.Run("a copy stored as another tenant's is refused and not counted", func(t *testing.T) {
		iccid := dbtest.NewICCID()
		first, _, err := st.StoreCallback(ctx, tenantCallback("acme", "req-copy-tenant", iccid))
		require.NoError(t, err)
		_, _, err = st.StoreCallback(ctx, tenantCallback("globex", "req-copy-tenant", iccid))
		require.ErrorIs(t, err, db.ErrOtherTenant)
		require.Equal(t, 1, queryInt(t, st, `SELECT copies FROM callbacks WHERE id = $1`, first.ID))
		again, isFirst, err := st.StoreCallback(ctx, tenantCallback("acme", "req-copy-tenant", iccid))
		require.NoError(t, err)
		require.False(t, isFirst)
		require.Equal(t, 2, again.Copies)
	})
}
