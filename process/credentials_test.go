package process

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/mocks"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/db/dbtest"
	"github.com/iot-ops/tsbulk/harness/nettest"
	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/metrics"
	"github.com/iot-ops/tsbulk/thingspace"
)

// A wrong password is tried once in all, not once per worker or per
// restart: the refusal is latched in PostgreSQL for every client built the
// way the worker builds it, /readyz says so, and only the operator's reset
// lets the (corrected) credentials be tried again. Five failed logins lock
// the Verizon account.
func TestRefusedCredentialsLatchedForEveryWorkerAndRestart(t *testing.T) {
	sim := tssim.New(tssim.Config{Seed: 1})
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() { srv.Close(); sim.Close() })
	store := dbtest.New(t)
	cfg := func(password string) *config.Config {
		return &config.Config{ThingSpace: config.ThingSpace{
			BaseURL: srv.URL, ClientID: tssim.DefaultClientID, ClientSecret: tssim.DefaultClientSecret,
			Username: tssim.DefaultUsername, Password: config.Secret(password), Account: tssim.DefaultAccount,
			HTTPTimeout: 5 * time.Second,
		}}
	}
	worker := func(password string) *activities.Activities {
		acts, err := NewActivities(cfg(password), store, nil, nil, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		return acts
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Three workers start together with the wrong password, then all three
	// restart, still with it.
	workers := []*activities.Activities{worker("wrong-password"), worker("wrong-password"), worker("wrong-password")}
	var wg sync.WaitGroup
	errs := make([]error, len(workers))
	for i, w := range workers {
		wg.Go(func() { errs[i] = w.ThingSpace.CheckAuth(ctx) })
	}
	wg.Wait()
	for range 3 {
		errs = append(errs, worker("wrong-password").ThingSpace.CheckAuth(ctx))
	}
	for i, err := range errs {
		require.True(t, thingspace.IsInvalidCredentials(err), "client %d: %v", i, err)
		require.Equal(t, tssim.CodeInvalidCredentials, err.(*thingspace.Error).Code, "client %d", i)
	}
	s := sim.Stats(0)
	require.Equal(t, 1, s.FailedLogins, "one failed login in all, not one per client")
	require.Equal(t, 0, s.Logins)

	// The worker's /readyz says when and why, not where nor as whom.
	tc := &mocks.Client{}
	tc.On("CheckHealth", mock.Anything, mock.Anything).Return(&client.CheckHealthResponse{}, nil)
	readyz := func(w *activities.Activities) (int, string) {
		h := httptest.NewServer(adminServer("", metrics.New(), readiness(store, tc, credentialsAccepted(w.ThingSpace))).Handler)
		defer h.Close()
		return nettest.Get(t, h.URL+"/readyz")
	}
	code, body := readyz(workers[0])
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Regexp(t, "^"+regexp.QuoteMeta("not ready: thingspace credentials refused at ")+
		`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`+
		regexp.QuoteMeta(" (UnifiedWebService.REQUEST_FAILED.InvalidCredentials); reset with `starter credentials-reset`")+
		"\n$", body)
	u, err := url.Parse(srv.URL)
	require.NoError(t, err)
	for _, detail := range []string{u.Host, u.Hostname(), tssim.DefaultUsername, tssim.DefaultClientID} {
		require.NotContains(t, body, detail)
	}

	// The operator corrects the password and resets the latch: the next
	// login works, and the reset is in the audit log with who asked.
	cleared, err := store.ResetCredentialLatches(ctx, "alice", "password rotated in the vault")
	require.NoError(t, err)
	require.Len(t, cleared, 1)
	require.Equal(t, thingspace.OpLogin, cleared[0].Refusal.Op)
	var by, reason string
	require.NoError(t, store.Pool.QueryRow(ctx, `SELECT request_body::jsonb->>'by', error_message FROM m2m_log
		WHERE service = 'operator' AND operation = 'credentials-reset'`).Scan(&by, &reason))
	require.Equal(t, "alice", by)
	require.Equal(t, "alice: password rotated in the vault", reason)

	fixed := worker(tssim.DefaultPassword)
	require.NoError(t, fixed.ThingSpace.CheckAuth(ctx))
	s = sim.Stats(0)
	require.Equal(t, 1, s.FailedLogins)
	require.Equal(t, 1, s.Logins)
	code, body = readyz(fixed)
	require.Equal(t, http.StatusOK, code, body)
}

// Only a refusal code latches: a login answered by a gateway page (or any
// 4xx without a credential code) fails the call but latches nothing, so
// the workers are not stopped until an operator steps in for an answer
// that says nothing of the credentials.
func TestLoginRefusedWithoutCredentialCodeLatchesNothing(t *testing.T) {
	gateway := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/ts/v1/oauth2/token" {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"access_token":"t","token_type":"Bearer","expires_in":3600}`))
			return
		}
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte("<html>resource not available</html>"))
	}))
	defer gateway.Close()
	store := dbtest.New(t)
	acts, err := NewActivities(&config.Config{ThingSpace: config.ThingSpace{
		BaseURL: gateway.URL, ClientID: "id", ClientSecret: "secret", Username: "user", Password: "password",
		HTTPTimeout: 5 * time.Second,
	}}, store, nil, nil, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx := context.Background()
	require.True(t, thingspace.IsInvalidCredentials(acts.ThingSpace.CheckAuth(ctx)))
	r, err := store.CredentialLatches().Latched(ctx, thingspace.CredentialKey{
		BaseURL: gateway.URL, ClientID: "id", Username: "user"})
	require.NoError(t, err)
	require.Nil(t, r)
	require.NoError(t, credentialsAccepted(acts.ThingSpace)(ctx))
}
