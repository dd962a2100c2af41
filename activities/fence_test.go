package activities_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/thingspace"
)

// pauseBeforeWrite is a ThingSpace Limiter that holds the first wait of a
// state change (the last thing before its HTTP write) until released: the
// attempt making it is "paused" as a GC or VM pause would pause it.
type pauseBeforeWrite struct {
	once    sync.Once
	reached chan struct{}
	release chan struct{}
}

func (p *pauseBeforeWrite) Wait(ctx context.Context, op string) error {
	if op != thingspace.OpSuspend {
		return nil
	}
	first := false
	p.once.Do(func() { first = true })
	if first {
		close(p.reached)
		select {
		case <-p.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (p *pauseBeforeWrite) Throttled(context.Context, string, time.Duration) {}

// An attempt paused after it claimed its request and before its write
// reaches ThingSpace, while the next attempt reconciles the request
// ("untouched"), claims it and sends it, finds on resuming that its
// fencing token (the attempt number it claimed) is stale: it does not
// send, and it does not overwrite the newer attempt's answer.
func TestSendBatchStaleAttemptNeitherSendsNorOverwrites(t *testing.T) {
	t.Parallel()
	h := newHarness(t, pendingAnHour)
	const settle = 300 * time.Millisecond
	h.acts.ReconcileSettle = settle
	devs := devices(2, "8914800031", "active")
	bulk, ids := h.seededBulk(account, "suspend", devs...)

	pause := &pauseBeforeWrite{reached: make(chan struct{}), release: make(chan struct{})}
	paused := *h.acts
	paused.ThingSpace = h.newThingSpaceClient(func(c *thingspace.Config) { c.Limiter = pause })
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(&paused)
	var staleErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, staleErr = env.ExecuteActivity(paused.SendBatch, activities.SendBatchInput{BulkChangeID: bulk, BatchNo: 1})
	}()
	select {
	case <-pause.reached:
	case <-time.After(20 * time.Second):
		t.Fatal("the first attempt never reached its write")
	}

	// The next attempt: the request is SENDING with no trace at ThingSpace;
	// once the settle time has passed it is sent again, and accepted.
	time.Sleep(settle + 100*time.Millisecond)
	res := h.mustSendBatch(bulk, 1)
	h.requireSuspended(res, 1, ids, devs)
	newer := h.request(bulk, 1)
	require.Equal(t, db.RequestAccepted, newer.State)
	require.Equal(t, 2, newer.Attempts)

	close(pause.release)
	<-done
	ae := appError(t, staleErr)
	require.False(t, ae.NonRetryable())
	require.Equal(t, 1, h.stats().Requests[epSuspend], "the stale attempt sent nothing")
	for _, d := range devs {
		require.Equal(t, 1, h.accepted(d.ICCID, "suspend"))
		require.Equal(t, change.Sent, h.change(ids[d.ICCID]).Status)
		require.Equal(t, res.RequestID, h.change(ids[d.ICCID]).RequestID)
	}
	require.Equal(t, newer, h.request(bulk, 1), "the newer attempt's record stands")
}

// skewDatabaseClock makes the test database's clock (now() and
// clock_timestamp() as the product's SQL calls them) run behind the
// worker's by d, as a database server whose clock is off would.
func (h *harness) skewDatabaseClock(d time.Duration) {
	h.t.Helper()
	iv := d.String()
	h.exec(`CREATE SCHEMA clockskew`)
	h.exec(`CREATE FUNCTION clockskew.now() RETURNS timestamptz LANGUAGE sql STABLE
		AS $$ SELECT pg_catalog.now() - interval '` + iv + `' $$`)
	h.exec(`CREATE FUNCTION clockskew.clock_timestamp() RETURNS timestamptz LANGUAGE sql VOLATILE
		AS $$ SELECT pg_catalog.clock_timestamp() - interval '` + iv + `' $$`)
	h.exec(`DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET search_path = clockskew, pg_catalog, public',
		current_database()); END $$`)
	h.store.Pool.Reset() // new connections take the setting
	var behind bool
	require.NoError(h.t, h.store.Pool.QueryRow(ctx(h.t), `SELECT now() < pg_catalog.now() - interval '1 hour'`).Scan(&behind))
	require.True(h.t, behind, "the database clock is skewed")
}

// The settle time of a reconciliation is measured on the database's clock
// alone: with the worker's clock hours ahead of the database's, a request
// whose answer was just lost is not taken for one sent hours ago, and
// nothing is sent again before the settle time has passed.
func TestReconcileSettleUsesTheDatabaseClock(t *testing.T) {
	t.Parallel()
	h := newHarness(t, pendingAnHour)
	const settle = time.Minute
	h.acts.ReconcileSettle = settle
	devs := devices(2, "8914800032", "active")
	bulk, ids := h.seededBulk(account, "suspend", devs...)
	h.skewDatabaseClock(3 * time.Hour)
	require.NoError(t, h.run(nil, h.acts.CheckThingSpaceAuth, ""))

	h.sim.SetFaults(thingspacesim.Faults{ErrorRate: 1})
	_, err := h.sendBatch(bulk, 1)
	require.False(t, appError(t, err).NonRetryable())
	require.Equal(t, db.RequestSending, h.request(bulk, 1).State, "the outcome is unknown")

	h.sim.SetFaults(thingspacesim.Faults{})
	_, err = h.sendBatch(bulk, 1)
	ae := appError(t, err)
	require.False(t, ae.NonRetryable())
	require.Greater(t, ae.NextRetryDelay(), settle-10*time.Second, "the settle time has only just begun")
	require.LessOrEqual(t, ae.NextRetryDelay(), settle)
	require.Equal(t, 1, h.stats().Requests[epSuspend], "nothing sent again before the settle time")
	require.Equal(t, db.RequestSending, h.request(bulk, 1).State)
	for _, d := range devs {
		require.Equal(t, change.Sending, h.change(ids[d.ICCID]).Status)
	}
}
