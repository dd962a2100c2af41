package db_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/db/dbtest"
)

func TestOpen(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)

	t.Run("a URL that is not PostgreSQL's is refused before connecting", func(t *testing.T) {
		_, err := db.Open(ctx, "postgres://user@host:notaport/db", 0)
		require.ErrorContains(t, err, "database.url is not a valid PostgreSQL URL")
	})

	t.Run("nothing listening: UnreachableError, with the address", func(t *testing.T) {
		_, err := db.Open(ctx, "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=5", 0)
		var unreachable *db.UnreachableError
		require.ErrorAs(t, err, &unreachable)
		require.Equal(t, "127.0.0.1:1", unreachable.Addr)
		require.ErrorContains(t, err, "PostgreSQL is not reachable at 127.0.0.1:1")
	})

	t.Run("the server answers with a refusal: not unreachable", func(t *testing.T) {
		u, err := url.Parse(dbtest.AdminURL())
		require.NoError(t, err)
		u.Path = "/tsbulk_no_such_database"
		_, err = db.Open(ctx, u.String(), 0)
		require.ErrorContains(t, err, "connect to PostgreSQL at")
		var unreachable *db.UnreachableError
		require.False(t, errors.As(err, &unreachable))
	})

	// Two deploy jobs may migrate a new database at once: the migrations
	// run once, under tern's lock; then every process opens it.
	t.Run("migrations started at once apply once, then processes open it", func(t *testing.T) {
		dbURL := dbtest.NewURL(t)
		dbtest.Race(4, func(int) error {
			err := db.Migrate(ctx, dbURL)
			if err != nil {
				t.Errorf("migrate: %v", err)
			}
			return err
		})
		stores := dbtest.Race(4, func(int) *db.Store {
			st, err := db.Open(ctx, dbURL, 2)
			if err != nil {
				t.Errorf("open: %v", err)
				return nil
			}
			return st
		})
		for _, st := range stores {
			if st != nil {
				defer st.Close()
			}
		}
		require.False(t, t.Failed())
		st := stores[0]
		require.Equal(t, db.SchemaVersion(), queryInt(t, st, `SELECT version FROM schema_version`))
		require.NoError(t, db.Migrate(ctx, dbURL), "migrating an up-to-date database does nothing")
		require.Equal(t, db.SchemaVersion(), queryInt(t, st, `SELECT version FROM schema_version`))
		require.Equal(t, int32(2), st.Pool.Config().MaxConns)
	})
}

func TestAuditAndStats(t *testing.T) {
	t.Parallel()
	st, ctx := newStore(t)

	t.Run("audit entries: empty fields are NULL, counted per service", func(t *testing.T) {
		b, id := newChange(t, st, change.Suspend)
		at := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
		require.NoError(t, st.WriteAudit(ctx, db.AuditEntry{BulkChangeID: b.ID, DeviceChangeID: id, Service: "thingspace",
			Operation: "suspend", Method: "POST", Path: "/devices/actions/suspend", RequestBody: `{"devices":[]}`,
			ResponseBody: `{"requestId":"r"}`, HTTPStatus: 200, Outcome: "ok", RequestID: "r", Attempt: 1,
			Duration: 1500 * time.Millisecond, At: at}))
		require.NoError(t, st.WriteAudit(ctx, db.AuditEntry{BulkChangeID: b.ID, Service: "revio", Operation: "search",
			Outcome: "error", ErrorCode: "HTTP_500", ErrorMessage: "down"}))
		require.NoError(t, st.WriteAudit(ctx, db.AuditEntry{Service: "thingspace", Operation: "token", Outcome: "ok"}))

		counts, err := st.AuditCount(ctx, b.ID)
		require.NoError(t, err)
		require.Equal(t, map[string]int{"thingspace": 1, "revio": 1}, counts)

		var logged time.Time
		var durationMS, nulls int
		require.NoError(t, st.Pool.QueryRow(ctx, `SELECT logged_at, duration_ms FROM m2m_log
			WHERE bulk_change_id = $1 AND service = 'thingspace'`, b.ID).Scan(&logged, &durationMS))
		require.True(t, at.Equal(logged))
		require.Equal(t, 1500, durationMS)
		require.NoError(t, st.Pool.QueryRow(ctx, `SELECT count(*) FROM m2m_log WHERE bulk_change_id = $1 AND service = 'revio'
			AND device_change_id IS NULL AND method IS NULL AND path IS NULL AND request_body IS NULL
			AND response_body IS NULL AND http_status IS NULL AND request_id IS NULL AND attempt IS NULL`, b.ID).Scan(&nulls))
		require.Equal(t, 1, nulls)
	})

	t.Run("unfinished device changes of the whole database", func(t *testing.T) {
		before, err := st.CountUnfinished(ctx)
		require.NoError(t, err)
		b, ids := newBatch(t, st, change.Suspend, 3)
		accept(t, st, b.ID, 1, "req-unfinished")
		_, _, err = st.Complete(ctx, db.Completion{DeviceChangeID: ids[0], Status: change.Processed,
			Outcome: string(change.Suspended), FinalState: "suspended"})
		require.NoError(t, err)
		after, err := st.CountUnfinished(ctx)
		require.NoError(t, err)
		require.Equal(t, before+2, after)
	})

	t.Run("earlier requests: n over the last hour; none for n <= 0", func(t *testing.T) {
		require.NoError(t, st.RecordEarlierRequests(ctx, "acct-bench", 0))
		require.NoError(t, st.RecordEarlierRequests(ctx, "acct-bench", -3))
		require.Zero(t, queryInt(t, st, `SELECT count(*) FROM rate_limit_events WHERE account_name = 'acct-bench'`))
		require.NoError(t, st.RecordEarlierRequests(ctx, "acct-bench", 9))
		require.Equal(t, 9, queryInt(t, st, `SELECT count(*) FROM rate_limit_events WHERE account_name = 'acct-bench'
			AND at > clock_timestamp() - interval '1 hour' AND at < clock_timestamp()`))
	})

	t.Run("backend processes of a database", func(t *testing.T) {
		var name string
		require.NoError(t, st.Pool.QueryRow(ctx, `SELECT current_database()`).Scan(&name))
		pids, err := db.BackendPIDs(ctx, st.Pool, []string{name})
		require.NoError(t, err)
		require.NotEmpty(t, pids)
		none, err := db.BackendPIDs(ctx, st.Pool, []string{"tsbulk_no_such_database"})
		require.NoError(t, err)
		require.Empty(t, none)
	})
}

// Database names are identifiers, spliced into the statement: only plain
// names get that far.
func TestScratchDatabases(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	for _, name := range []string{"", "Upper", "1digit", "has-dash", "x; DROP DATABASE postgres", "a b",
		"averyveryveryveryveryveryveryveryveryveryveryveryveryverylongname"} {
		require.ErrorContains(t, db.CreateDatabase(ctx, dbtest.AdminURL(), name), "only lower-case letters", name)
		require.ErrorContains(t, db.DropDatabase(ctx, dbtest.AdminURL(), name), "only lower-case letters", name)
	}

	name := fmt.Sprintf("tsbulk_scratch_%d", time.Now().UnixNano())
	require.NoError(t, db.CreateDatabase(ctx, dbtest.AdminURL(), name))
	t.Cleanup(func() { _ = db.DropDatabase(context.Background(), dbtest.AdminURL(), name) })
	u, err := url.Parse(dbtest.AdminURL())
	require.NoError(t, err)
	u.Path = "/" + name
	require.NoError(t, db.Migrate(ctx, u.String()))
	st, err := db.Open(ctx, u.String(), 1)
	require.NoError(t, err)
	st.Close()
	require.NoError(t, db.DropDatabase(ctx, dbtest.AdminURL(), name))
	require.NoError(t, db.DropDatabase(ctx, dbtest.AdminURL(), name), "dropping one that is gone is no error")
	_, err = db.Open(ctx, u.String(), 1)
	require.Error(t, err, "the database was dropped")
}
