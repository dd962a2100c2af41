package process

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/db/dbtest"
	"github.com/iot-ops/tsbulk/harness/nettest"
	"github.com/iot-ops/tsbulk/metrics"
)

// readyz answers who is down, never where: the drivers' errors name hosts,
// ports, users and databases, and /readyz is read by whoever reaches the
// admin port.
func TestReadyzNamesTheDependencyWithoutConnectionDetails(t *testing.T) {
	get := func(ready func(context.Context) error) (int, string) {
		srv := httptest.NewServer(adminServer("", metrics.New(), ready).Handler)
		defer srv.Close()
		return nettest.Get(t, srv.URL+"/readyz")
	}
	// Nothing listens on these ports.
	const pgURL = "postgres://secret-user@127.0.0.1:9/secret_db?connect_timeout=2"
	const temporalAddr = "127.0.0.1:7"
	tc, err := client.NewLazyClient(client.Options{HostPort: temporalAddr})
	require.NoError(t, err)
	defer tc.Close()

	pool, err := pgxpool.New(context.Background(), pgURL)
	require.NoError(t, err)
	defer pool.Close()
	code, body := get(readiness(&db.Store{Pool: pool}, tc))
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "not ready: postgres is not reachable\n", body)

	code, body = get(readiness(dbtest.New(t), tc))
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "not ready: temporal is not reachable\n", body)
	for _, detail := range []string{"127.0.0.1", "secret", ":7", ":9"} {
		require.NotContains(t, body, detail)
	}
}
