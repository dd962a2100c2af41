package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/db/dbtest"
	"github.com/iot-ops/tsbulk/harness/nettest"
	"github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/process"
	"github.com/iot-ops/tsbulk/thingspace"
)

const (
	defaultAccount = thingspacesim.DefaultAccount
	acmeAccount1   = "0000222222-00001"
	acmeAccount2   = "0000222222-00002"
)

// simulator serves a ThingSpace simulator of one tenant's credentials and
// accounts, delivering callbacks at once.
func simulator(t *testing.T, cfg thingspacesim.Config) (*thingspacesim.Simulator, string) {
	t.Helper()
	cfg.Seed = 1
	cfg.CompletionDelay = -1
	cfg.CallbackRetryInterval = -1
	sim := thingspacesim.New(cfg)
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(sim.Close)
	return sim, srv.URL
}

// tenantsConfig is a configuration of the default tenant and acme, each
// with its own ThingSpace (a simulator of its credentials), and the
// receiver listening at listen.
func tenantsConfig(t *testing.T, defaultTS, acmeTS, listen, dbURL string) *config.Config {
	t.Helper()
	t.Setenv("TSBULK_DATABASE_URL", dbURL)
	t.Setenv("TSBULK_THINGSPACE_CLIENT_SECRET", thingspacesim.DefaultClientSecret)
	t.Setenv("TSBULK_THINGSPACE_PASSWORD", thingspacesim.DefaultPassword)
	t.Setenv("TSBULK_CALLBACKS_PASSWORD", "default-listener-secret")
	t.Setenv("TSBULK_TENANTS_ACME_THINGSPACE_CLIENT_SECRET", "acme-client-secret")
	t.Setenv("TSBULK_TENANTS_ACME_THINGSPACE_PASSWORD", "acme-password")
	t.Setenv("TSBULK_TENANTS_ACME_CALLBACKS_PASSWORD", "acme-listener-secret")
	path := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`
dev: true
thingspace:
  base_url: `+defaultTS+`
  client_id: `+thingspacesim.DefaultClientID+`
  username: `+thingspacesim.DefaultUsername+`
  account: "`+defaultAccount+`"
callbacks:
  listen: `+listen+`
  admin_listen: `+nettest.FreeAddr(t)+`
  path: /thingspace/callbacks
  public_url: http://`+listen+`/thingspace/callbacks
  username: default-listener
bulk:
  default_site: WAREHOUSE-1
tenants:
  acme:
    thingspace:
      base_url: `+acmeTS+`
      client_id: acme-app
      username: acme-user
      accounts: ["`+acmeAccount1+`", "`+acmeAccount2+`"]
    callbacks:
      username: acme-listener
    default_site: ACME-DEPOT
temporal:
  address: 127.0.0.1:7
`), 0o600))
	cfg, err := config.Load(path)
	require.NoError(t, err)
	require.NoError(t, cfg.ValidateRegistration())
	require.NoError(t, cfg.ValidateReceiver())
	return cfg
}

// register (every tenant) registers, with each tenant's own ThingSpace
// credentials, the tenant's callback URL and listener credentials for each
// of its accounts: ThingSpace then delivers each account's callbacks to
// its tenant's path with its tenant's credentials, and the receiver stores
// them as that tenant's. unregister --tenant removes that tenant's only.
func TestRegisterEveryTenantsListener(t *testing.T) {
	defSim, defURL := simulator(t, thingspacesim.Config{})
	acmeCreds := thingspacesim.Config{ClientID: "acme-app", ClientSecret: "acme-client-secret",
		Username: "acme-user", Password: "acme-password", Accounts: []string{acmeAccount1, acmeAccount2}}
	acmeSim, acmeURL := simulator(t, acmeCreds)
	dbURL := migratedURL(t)
	listen := nettest.FreeAddr(t)
	cfg := tenantsConfig(t, defURL, acmeURL, listen, dbURL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	done := make(chan error, 1)
	go func() { done <- process.RunReceiver(ctx, cfg, cfg.Logger()) }()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()

	tenants, err := selectTenants(cfg, "register", nil)
	require.NoError(t, err)
	require.Len(t, tenants, 2, "without --tenant: every tenant")
	var out bytes.Buffer
	require.NoError(t, manage(ctx, cfg, "register", tenants, &out))
	public := "http://" + listen + "/thingspace/callbacks"
	require.Equal(t, "tenant default: registered CarrierService listener "+public+" for account "+defaultAccount+"\n"+
		"tenant acme: registered CarrierService listener "+public+"/acme for account "+acmeAccount1+"\n"+
		"tenant acme: registered CarrierService listener "+public+"/acme for account "+acmeAccount2+"\n",
		out.String())
	require.NotContains(t, out.String(), "secret")

	out.Reset()
	require.NoError(t, manage(ctx, cfg, "list", tenants, &out))
	require.Equal(t, "default\t"+defaultAccount+"\tCarrierService\t"+public+"\tuser=default-listener\n"+
		"acme\t"+acmeAccount1+"\tCarrierService\t"+public+"/acme\tuser=acme-listener\n"+
		"acme\t"+acmeAccount2+"\tCarrierService\t"+public+"/acme\tuser=acme-listener\n", out.String())

	// ThingSpace calls back each account's listener with what was
	// registered: the receiver takes them as their tenant's.
	devices := map[string]struct {
		sim     *thingspacesim.Simulator
		tsURL   string
		creds   thingspacesim.Config
		account string
		tenant  string
	}{
		"89148000000000000011": {defSim, defURL, thingspacesim.Config{ClientID: thingspacesim.DefaultClientID,
			ClientSecret: thingspacesim.DefaultClientSecret, Username: thingspacesim.DefaultUsername,
			Password: thingspacesim.DefaultPassword}, defaultAccount, "default"},
		"89148000000000000029": {acmeSim, acmeURL, acmeCreds, acmeAccount1, "acme"},
		"89148000000000000037": {acmeSim, acmeURL, acmeCreds, acmeAccount2, "acme"},
	}
	want := map[string]string{}
	for iccid, d := range devices {
		require.NoError(t, d.sim.Seed(thingspacesim.DeviceSeed{ICCID: iccid, Account: d.account, State: "active"}))
		ts, err := thingspace.New(thingspace.Config{BaseURL: d.tsURL, ClientID: d.creds.ClientID,
			ClientSecret: d.creds.ClientSecret, Username: d.creds.Username, Password: d.creds.Password})
		require.NoError(t, err)
		requestID, err := ts.Suspend(ctx, thingspace.ActionRequest{AccountName: d.account,
			Devices: []thingspace.DeviceRef{thingspace.ICCIDRef(iccid, "")}})
		require.NoError(t, err)
		want[requestID+" "+iccid] = d.tenant
	}
	store, err := db.Open(ctx, dbURL, 2)
	require.NoError(t, err)
	defer store.Close()
	got := map[string]string{}
	require.Eventually(t, func() bool {
		got = storedTenants(t, store)
		return len(got) == len(want)
	}, 15*time.Second, 50*time.Millisecond, "the callbacks of the three accounts are stored")
	require.Equal(t, want, got)
	require.Len(t, defSim.DeliveryLog(), 1)
	require.Len(t, acmeSim.DeliveryLog(), 2)
	for _, sim := range []*thingspacesim.Simulator{defSim, acmeSim} {
		for _, e := range sim.DeliveryLog() {
			require.Equal(t, 200, e.HTTPStatus, "delivered at the first attempt: %+v", e)
		}
	}

	// unregister --tenant acme removes acme's listeners, not the default
	// tenant's.
	acme, err := selectTenants(cfg, "unregister", []string{"--tenant", "acme"})
	require.NoError(t, err)
	out.Reset()
	require.NoError(t, manage(ctx, cfg, "unregister", acme, &out))
	require.Equal(t, "tenant acme: removed the CarrierService listener of account "+acmeAccount1+"\n"+
		"tenant acme: removed the CarrierService listener of account "+acmeAccount2+"\n", out.String())
	out.Reset()
	require.NoError(t, manage(ctx, cfg, "list", tenants, &out))
	require.Equal(t, "default\t"+defaultAccount+"\tCarrierService\t"+public+"\tuser=default-listener\n", out.String())
}

// A tenant's failure is reported with its tenant and account, and does not
// stop the other tenants' registration.
func TestRegisterReportsEachTenantsFailure(t *testing.T) {
	_, defURL := simulator(t, thingspacesim.Config{})
	// acme's ThingSpace knows other credentials than acme's.
	_, acmeURL := simulator(t, thingspacesim.Config{ClientID: "someone-else", Accounts: []string{acmeAccount1, acmeAccount2}})
	cfg := tenantsConfig(t, defURL, acmeURL, nettest.FreeAddr(t), migratedURL(t))
	tenants, err := selectTenants(cfg, "register", nil)
	require.NoError(t, err)

	var out bytes.Buffer
	err = manage(context.Background(), cfg, "register", tenants, &out)
	require.ErrorContains(t, err, "tenant acme: account "+acmeAccount1+":")
	require.ErrorContains(t, err, "account "+acmeAccount2+":")
	require.ErrorContains(t, err, "(latched)", "refused credentials are not tried again for the next account")
	require.NotContains(t, err.Error(), "tenant default")
	require.NotContains(t, err.Error(), "acme-client-secret")
	require.Contains(t, out.String(), "tenant default: registered CarrierService listener")
	require.NotContains(t, out.String(), "tenant acme")
}

// --tenant names one tenant; an unknown one is refused naming the tenants.
func TestSelectTenants(t *testing.T) {
	cfg := tenantsConfig(t, "http://127.0.0.1:1", "http://127.0.0.1:2", nettest.FreeAddr(t), dbtest.AdminURL())
	all, err := selectTenants(cfg, "list", nil)
	require.NoError(t, err)
	require.Equal(t, []string{"default", "acme"}, ids(all))
	one, err := selectTenants(cfg, "register", []string{"--tenant", "acme"})
	require.NoError(t, err)
	require.Equal(t, []string{"acme"}, ids(one))
	one, err = selectTenants(cfg, "register", []string{"--tenant=default"})
	require.NoError(t, err)
	require.Equal(t, []string{"default"}, ids(one))
	_, err = selectTenants(cfg, "register", []string{"--tenant", "globex"})
	require.ErrorContains(t, err, `--tenant: tenant "globex" is not configured (tenants: default, acme)`)
	_, err = selectTenants(cfg, "register", []string{"acme"})
	require.ErrorContains(t, err, `register: unexpected argument "acme" (usage: register [--tenant ID])`)
	_, err = selectTenants(cfg, "register", []string{"--tenants", "acme"})
	require.ErrorContains(t, err, "flag provided but not defined: -tenants")
}

func ids(ts []config.Tenant) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.ID
	}
	return out
}

// migratedURL is a fresh database's, its schema the build's.
func migratedURL(t *testing.T) string {
	t.Helper()
	u := dbtest.NewURL(t)
	require.NoError(t, db.Migrate(context.Background(), u))
	return u
}

// storedTenants are the stored callbacks' tenants by request id and ICCID.
func storedTenants(t *testing.T, store *db.Store) map[string]string {
	t.Helper()
	rows, err := store.Pool.Query(context.Background(), `SELECT request_id || ' ' || iccid, tenant FROM callbacks`)
	require.NoError(t, err)
	got := map[string]string{}
	var key, tenant string
	_, err = pgx.ForEachRow(rows, []any{&key, &tenant}, func() error {
		got[key] = tenant
		return nil
	})
	require.NoError(t, err)
	return got
}
