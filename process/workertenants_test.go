package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"syscall"
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

// tenantSim is a ThingSpace simulator of one tenant: it accepts only that
// tenant's credentials.
type tenantSim struct {
	*tssim.Simulator
	url                                   string
	clientID, secret, user, pass, account string
}

func newTenantSim(t *testing.T, name, account string) *tenantSim {
	t.Helper()
	s := &tenantSim{clientID: name + "-client-id", secret: name + "-secret", user: name + "-user",
		pass: name + "-password", account: account}
	s.Simulator = tssim.New(tssim.Config{ClientID: s.clientID, ClientSecret: s.secret, Username: s.user,
		Password: s.pass, Accounts: []string{account}, Seed: 1})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(func() { srv.Close(); s.Close() })
	s.url = srv.URL
	return s
}

// tenantConfig writes the worker's configuration file: the default tenant
// on def (its account only: the default tenant takes any account no
// other lists without), and a named tenant on each of named (id →
// simulator), their secrets in files beside it (a rotation rewrites the
// file).
func tenantConfig(t *testing.T, dir string, def *tenantSim, named map[string]*tenantSim, extra string) string {
	t.Helper()
	secret := func(name, value string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(value), 0o600))
		return p
	}
	yaml := fmt.Sprintf(`dev: true
database:
  url: postgres://127.0.0.1:5432/unused
thingspace:
  base_url: %s
  client_id: %s
  client_secret_file: %s
  username: %s
  password_file: %s
  account: %s
  accounts: [%q]
bulk:
  default_site: SITE
tenants:
`, def.url, def.clientID, secret("default-secret", def.secret), def.user, secret("default-password", def.pass),
		def.account, def.account)
	for _, id := range slices.Sorted(maps.Keys(named)) {
		s := named[id]
		yaml += fmt.Sprintf(`  %s:
    thingspace:
      base_url: %s
      client_id: %s
      client_secret_file: %s
      username: %s
      password_file: %s
      accounts: [%q]
    default_site: SITE-%[1]s
`, id, s.url, s.clientID, secret(id+"-secret", s.secret), s.user, secret(id+"-password", s.pass), s.account)
	}
	yaml += extra
	path := filepath.Join(dir, "tsbulk.yaml")
	require.NoError(t, os.WriteFile(path, []byte(yaml), 0o600))
	return path
}

func logins(s *tenantSim) int { return s.Stats(time.Hour).Logins }

// The worker serves each tenant with clients of its own, built on first
// use and kept; a reload of the configuration file gives a tenant whose
// settings changed new clients (new credentials and simulator here), adds
// and removes tenants, keeps the clients of a tenant left unchanged, and a
// file that does not validate changes nothing.
func TestReloadTakesTheTenantsOfTheConfigFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	simA := newTenantSim(t, "alpha", tssim.DefaultAccount)
	simB := newTenantSim(t, "beta", "0000222222-00001")
	simC := newTenantSim(t, "gamma", "0000333333-00001")
	path := tenantConfig(t, dir, simA, map[string]*tenantSim{"beta": simB}, "")
	cfg, err := workerConfig(path)()
	require.NoError(t, err)
	acts, tenants, err := newWorkerActivities(cfg, dbtest.New(t), nil, nil, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx := context.Background()
	require.Equal(t, []string{config.DefaultTenant, "beta"}, tenants.IDs())

	def, err := tenants.Tenant(ctx, "")
	require.NoError(t, err)
	require.Same(t, acts.ThingSpace, def.ThingSpace, "the Activities' own clients are the default tenant's")
	beta, err := tenants.Tenant(ctx, "beta")
	require.NoError(t, err)
	again, err := tenants.AccountTenant(ctx, simB.account)
	require.NoError(t, err)
	require.Same(t, beta, again, "built once, kept")
	require.NoError(t, beta.ThingSpace.CheckAuth(ctx))
	require.NoError(t, def.ThingSpace.CheckAuth(ctx))
	require.Equal(t, 1, logins(simB))
	require.Equal(t, 1, logins(simA))

	// Beta moves to another ThingSpace with other credentials, gamma comes.
	path = tenantConfig(t, dir, simA, map[string]*tenantSim{"beta": {url: simC.url, clientID: simC.clientID,
		secret: simC.secret, user: simC.user, pass: simC.pass, account: simB.account}, "gamma": simC}, "")
	// gamma's account is simC's: beta keeps its own account on simC.
	require.NoError(t, tenants.Reload(workerConfig(path)))
	require.Equal(t, []string{config.DefaultTenant, "beta", "gamma"}, tenants.IDs())
	moved, err := tenants.Tenant(ctx, "beta")
	require.NoError(t, err)
	require.NotSame(t, beta, moved, "changed settings: new clients")
	require.NoError(t, moved.ThingSpace.CheckAuth(ctx))
	require.Equal(t, 1, logins(simC), "with the new credentials, at the new address")
	require.Equal(t, 1, logins(simB))
	same, err := tenants.Tenant(ctx, "")
	require.NoError(t, err)
	require.Same(t, def, same, "the default tenant did not change: its clients (and session) are kept")
	gamma, err := tenants.AccountTenant(ctx, simC.account)
	require.NoError(t, err)
	require.Equal(t, "gamma", gamma.ID)

	// A file that does not validate (a tenant without accounts) is refused
	// and changes nothing.
	bad := tenantConfig(t, dir, simA, map[string]*tenantSim{"beta": simB}, "  delta:\n    thingspace:\n      client_id: x\n")
	err = tenants.Reload(workerConfig(bad))
	require.ErrorContains(t, err, "tenants.delta.thingspace.accounts")
	require.Equal(t, []string{config.DefaultTenant, "beta", "gamma"}, tenants.IDs())
	kept, err := tenants.Tenant(ctx, "beta")
	require.NoError(t, err)
	require.Same(t, moved, kept)

	// Beta removed: its bulk changes wait (retryably) for it to come back.
	path = tenantConfig(t, dir, simA, map[string]*tenantSim{"gamma": simC}, "")
	require.NoError(t, tenants.Reload(workerConfig(path)))
	_, err = tenants.Tenant(ctx, "beta")
	var nc *activities.TenantNotConfiguredError
	require.True(t, errors.As(err, &nc), "%v", err)
	require.Equal(t, "tenant beta is not configured on this worker", err.Error())
	_, err = tenants.AccountTenant(ctx, simB.account)
	require.True(t, errors.As(err, &nc), "%v", err)
	require.Contains(t, err.Error(), "belongs to no tenant configured")
}

// SIGHUP reloads the tenants through the worker's own signal handler, and
// the process lives on.
func TestHangupReloadsTheTenants(t *testing.T) {
	// Not parallel: the signal goes to the whole test process.
	dir := t.TempDir()
	simA := newTenantSim(t, "alpha", tssim.DefaultAccount)
	simB := newTenantSim(t, "beta", "0000222222-00001")
	path := tenantConfig(t, dir, simA, nil, "")
	cfg, err := workerConfig(path)()
	require.NoError(t, err)
	_, tenants, err := newWorkerActivities(cfg, dbtest.New(t), nil, nil, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.Equal(t, []string{config.DefaultTenant}, tenants.IDs())

	reloaded := make(chan error, 1)
	stop := reloadOnHangup(context.Background(), func() { reloaded <- tenants.Reload(workerConfig(path)) })
	defer stop()
	tenantConfig(t, dir, simA, map[string]*tenantSim{"beta": simB}, "")
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	select {
	case err := <-reloaded:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("SIGHUP did not reload the tenants")
	}
	require.Equal(t, []string{config.DefaultTenant, "beta"}, tenants.IDs())
	beta, err := tenants.Tenant(context.Background(), "beta")
	require.NoError(t, err)
	require.NoError(t, beta.ThingSpace.CheckAuth(context.Background()))
	require.Equal(t, 1, logins(simB))
}

// One tenant's refused credentials do not take the worker out of service:
// it stays ready, with a note naming the tenant; only when every tenant's
// are refused is it not ready. Neither says where nor as whom.
func TestOneTenantsRefusedCredentialsLeaveTheWorkerReady(t *testing.T) {
	t.Parallel()
	simA := newTenantSim(t, "alpha", tssim.DefaultAccount)
	simB := newTenantSim(t, "beta", "0000222222-00001")
	store := dbtest.New(t)
	cfg := func(defaultPassword string) *config.Config {
		return &config.Config{
			ThingSpace: config.ThingSpace{BaseURL: simA.url, ClientID: simA.clientID, ClientSecret: config.Secret(simA.secret),
				Username: simA.user, Password: config.Secret(defaultPassword), Account: simA.account,
				HTTPTimeout: 5 * time.Second},
			Tenants: []config.Tenant{{ID: "beta", ThingSpace: config.TenantThingSpace{BaseURL: simB.url,
				ClientID: simB.clientID, ClientSecret: config.Secret(simB.secret), Username: simB.user,
				Password: "not-beta-password", Accounts: []string{simB.account}, HTTPTimeout: 5 * time.Second}}},
		}
	}
	_, tenants, err := newWorkerActivities(cfg(simA.pass), store, nil, nil, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx := context.Background()
	tc := &mocks.Client{}
	tc.On("CheckHealth", mock.Anything, mock.Anything).Return(&client.CheckHealthResponse{}, nil)
	readyz := func(tenants *WorkerTenants) (int, string) {
		h := httptest.NewServer(adminServer("", metrics.New(), readiness(store, tc, tenantCredentials(tenants))).Handler)
		defer h.Close()
		return nettest.Get(t, h.URL+"/readyz")
	}
	code, body := readyz(tenants)
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, "ready\n", body)

	beta, err := tenants.Tenant(ctx, "beta")
	require.NoError(t, err)
	require.True(t, thingspace.IsInvalidCredentials(beta.ThingSpace.CheckAuth(ctx)))
	const when = `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`
	const code401 = ` \(UnifiedWebService.REQUEST_FAILED.InvalidCredentials\)`
	const reset = "; reset with `starter credentials-reset --tenant ID` once corrected"
	code, body = readyz(tenants)
	require.Equal(t, http.StatusOK, code, body)
	require.Regexp(t, "^"+regexp.QuoteMeta("ready; thingspace credentials refused for tenant beta at ")+when+code401+
		regexp.QuoteMeta(reset+"; the other tenants' bulk changes run")+"\n$", body)
	bodies := []string{body}

	// Every tenant refused: not ready.
	require.NoError(t, tenants.Reload(func() (*config.Config, error) { return cfg("not-alpha-password"), nil }))
	def, err := tenants.Tenant(ctx, "")
	require.NoError(t, err)
	require.True(t, thingspace.IsInvalidCredentials(def.ThingSpace.CheckAuth(ctx)))
	code, body = readyz(tenants)
	bodies = append(bodies, body)
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	require.Regexp(t, "^"+regexp.QuoteMeta("not ready: thingspace credentials refused for tenant default at ")+when+code401+
		", tenant beta at "+when+code401+regexp.QuoteMeta(reset)+"\n$", body)

	// A worker of beta alone reads as before tenants.
	only := cfg("")
	only.ThingSpace = config.ThingSpace{}
	_, betaOnly, err := newWorkerActivities(only, store, nil, nil, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	code, body = readyz(betaOnly)
	bodies = append(bodies, body)
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	require.Regexp(t, "^"+regexp.QuoteMeta("not ready: thingspace credentials refused at ")+when+code401+
		regexp.QuoteMeta("; reset with `starter credentials-reset`")+"\n$", body)

	for _, s := range []*tenantSim{simA, simB} {
		require.Equal(t, 1, s.Stats(time.Hour).FailedLogins, "each refused password tried once")
		u, err := url.Parse(s.url)
		require.NoError(t, err)
		for _, detail := range []string{u.Host, s.user, s.clientID, s.account} {
			for _, body := range bodies {
				require.NotContains(t, body, detail)
			}
		}
	}
}
