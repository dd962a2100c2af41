package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const tenantsYAML = `
dev: true
database:
  url: postgres://postgres@127.0.0.1:5432/tsbulk?sslmode=disable
thingspace:
  base_url: http://127.0.0.1:8090
  client_id: app-key
  username: uws-user
  account: "0000123456-00001"
  http_timeout: 7s
callbacks:
  username: listener
revio:
  calls_per_minute: 120
bulk:
  default_site: WAREHOUSE-1
limits:
  requests_per_hour: 900
tenants:
  acme:
    name: Acme Fleet
    thingspace:
      client_id: acme-app
      username: acme-user
      accounts: ["0000222222-00001", "0000222222-00002"]
    callbacks:
      username: acme-listener
    default_site: ACME-DEPOT
    limits:
      activates_per_minute: 10
    revio:
      enabled: true
      base_url: http://127.0.0.1:8091
      login: acme-api
      client_code: ACME
      customers:
        - account: "0000222222-00001"
          customer_id: 501
      plans:
        - service_plan: M2M5GB
          service_type_id: 12
          provider_id: 3
          product_ids: [7001, 7002]
          rates: ["4.99", "0.50"]
`

func withTenantSecrets(t *testing.T) {
	withSecrets(t)
	t.Setenv("TSBULK_CALLBACKS_PASSWORD", "cb")
	t.Setenv("TSBULK_TENANTS_ACME_THINGSPACE_CLIENT_SECRET", "acme-secret")
	t.Setenv("TSBULK_TENANTS_ACME_THINGSPACE_PASSWORD", "acme-password")
	t.Setenv("TSBULK_TENANTS_ACME_CALLBACKS_PASSWORD", "acme-cb")
	t.Setenv("TSBULK_TENANTS_ACME_REVIO_PASSWORD", "acme-revio")
	t.Setenv("TSBULK_TENANTS_ACME_REVIO_SUBSCRIPTION_KEY", "acme-key")
}

// A named tenant has its own credentials (from its own environment
// variables), accounts and mappings, inherits the top-level settings that
// are not credentials, and overrides only the ones it gives.
func TestTenantsLoadWithInheritanceAndTheirOwnSecrets(t *testing.T) {
	withTenantSecrets(t)
	cfg := loadYAML(t, tenantsYAML)
	require.NoError(t, cfg.ValidateWorker())
	require.NoError(t, cfg.ValidateStarter())

	all := cfg.AllTenants()
	require.Len(t, all, 2)
	def, acme := all[0], all[1]
	require.Equal(t, DefaultTenant, def.ID)
	require.Equal(t, "app-key", def.ThingSpace.ClientID)
	require.Equal(t, "p", def.ThingSpace.Password.Reveal())
	require.Equal(t, []string{"0000123456-00001"}, def.ThingSpace.Accounts)
	require.Equal(t, "/thingspace/callbacks", def.CallbackPath(cfg.Callbacks.Path))

	require.Equal(t, "acme", acme.ID)
	require.Equal(t, "Acme Fleet", acme.DisplayName())
	require.Equal(t, "acme-app", acme.ThingSpace.ClientID)
	require.Equal(t, "acme-secret", acme.ThingSpace.ClientSecret.Reveal())
	require.Equal(t, "acme-password", acme.ThingSpace.Password.Reveal())
	require.Equal(t, "acme-cb", acme.Callbacks.Password.Reveal())
	require.Equal(t, "acme-key", acme.Revio.SubscriptionKey.Reveal())
	require.Equal(t, "0000222222-00001", acme.DefaultAccount())
	require.Equal(t, "/thingspace/callbacks/acme", acme.CallbackPath(cfg.Callbacks.Path))
	// Inherited: not credentials.
	require.Equal(t, "http://127.0.0.1:8090", acme.ThingSpace.BaseURL)
	require.Equal(t, 7*time.Second, acme.ThingSpace.HTTPTimeout)
	require.Equal(t, 120, acme.Revio.CallsPerMinute)
	require.Equal(t, 900, acme.Limits.RequestsPerHour, "inherited")
	require.Equal(t, 10, acme.Limits.ActivatesPerMinute, "its own")
	require.Equal(t, 5, acme.Limits.ActionsPerLinePerDay, "inherited default")
	require.Equal(t, []string{"deactivate"}, acme.Approval.Operations)
	require.Equal(t, "ACME-DEPOT", acme.SiteForBulkChanges())
	// Mappings keep the case of plan names (YAML keys would not).
	require.Equal(t, int64(501), acme.Revio.Customer("0000222222-00001"))
	require.Zero(t, acme.Revio.Customer("0000222222-00002"))
	plan, ok := acme.Revio.Plan("M2M5GB")
	require.True(t, ok)
	require.Equal(t, []int64{7001, 7002}, plan.ProductIDs)
	_, ok = acme.Revio.Plan("m2m5gb")
	require.False(t, ok)

	// Accounts decide the tenant; the default tenant takes the others.
	owner, err := cfg.AccountTenant("0000222222-00002")
	require.NoError(t, err)
	require.Equal(t, "acme", owner.ID)
	owner, err = cfg.AccountTenant("0000999999-00001")
	require.NoError(t, err)
	require.Equal(t, DefaultTenant, owner.ID)
	require.NoError(t, cfg.CheckAccount(acme, "0000222222-00002"))
	require.ErrorContains(t, cfg.CheckAccount(def, "0000222222-00002"), `account "0000222222-00002" is not one of tenant default's accounts`)
	require.ErrorContains(t, cfg.CheckAccount(acme, "0000123456-00001"), "not one of tenant acme's accounts")

	_, err = cfg.Tenant("nope")
	require.ErrorContains(t, err, `tenant "nope" is not configured (tenants: default, acme)`)
	got, err := cfg.Tenant("")
	require.NoError(t, err)
	require.Equal(t, DefaultTenant, got.ID)
}

// A tenant's secret in the file is refused, as every secret is; from a
// *_file setting it is read.
func TestTenantSecretsNeverFromTheFile(t *testing.T) {
	withTenantSecrets(t)
	_, err := Load(writeYAML(t, tenantsYAML+"      password: in-the-file\n"))
	require.ErrorContains(t, err, "tenants.acme.revio.password must not be in the config file")
	require.ErrorContains(t, err, "TSBULK_TENANTS_ACME_REVIO_PASSWORD")

	t.Setenv("TSBULK_TENANTS_ACME_REVIO_PASSWORD", "")
	secret := filepath.Join(t.TempDir(), "revio-password")
	require.NoError(t, os.WriteFile(secret, []byte("from-a-file\n"), 0o600))
	cfg := loadYAML(t, tenantsYAML+"      password_file: "+secret+"\n")
	acme, err := cfg.Tenant("acme")
	require.NoError(t, err)
	require.Equal(t, "from-a-file", acme.Revio.Password.Reveal())
}

// What makes a tenant unusable is refused at start, naming the setting.
func TestTenantProblemsNameTheirSetting(t *testing.T) {
	withTenantSecrets(t)
	for _, tc := range []struct{ name, yaml, want string }{
		{"shared account", `
  other:
    thingspace: {client_id: o, username: o, accounts: ["0000222222-00002"]}
    default_site_assignment: false`, `tenants.other.thingspace.accounts (TSBULK_TENANTS_OTHER_THINGSPACE_ACCOUNTS): account "0000222222-00002" is already tenant acme's`},
		{"no accounts", `
  other:
    thingspace: {client_id: o, username: o}
    default_site_assignment: false`, "tenants.other.thingspace.accounts (TSBULK_TENANTS_OTHER_THINGSPACE_ACCOUNTS): is required"},
		{"no credentials", `
  other:
    thingspace: {accounts: ["0000333333-00001"]}
    default_site_assignment: false`, "tenants.other.thingspace.client_id (TSBULK_TENANTS_OTHER_THINGSPACE_CLIENT_ID): is required"},
		{"bad id", `
  Other-1:
    thingspace: {client_id: o}`, "a tenant id is a lower-case letter"},
		{"default", `
  default:
    thingspace: {client_id: o}`, "the default tenant is the top-level settings"},
		{"plan without provider", `
  other:
    thingspace: {client_id: o, username: o, accounts: ["0000333333-00001"]}
    default_site_assignment: false
    revio:
      enabled: true
      login: x
      client_code: y
      plans: [{service_plan: P, service_type_id: 1}]`, "tenants.other.revio.plans (TSBULK_TENANTS_OTHER_REVIO_PLANS): entry 1: provider_id must be a positive whole number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load(writeYAML(t, tenantsYAML+tc.yaml+"\n"))
			if err == nil {
				err = cfg.ValidateWorker()
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// A deployment of named tenants only has no default tenant: the top-level
// ThingSpace credentials are then not required, and a bulk change must
// name its tenant.
func TestOnlyNamedTenants(t *testing.T) {
	withTenantSecrets(t)
	t.Setenv("TSBULK_THINGSPACE_CLIENT_SECRET", "")
	t.Setenv("TSBULK_THINGSPACE_PASSWORD", "")
	cfg := loadYAML(t, `
dev: true
database:
  url: postgres://postgres@127.0.0.1:5432/tsbulk?sslmode=disable
tenants:
  acme:
    thingspace:
      base_url: http://127.0.0.1:8090
      client_id: acme-app
      username: acme-user
      accounts: ["0000222222-00001"]
    callbacks: {username: acme-listener}
    default_site: ACME-DEPOT
`)
	require.NoError(t, cfg.ValidateWorker())
	require.False(t, cfg.HasDefaultTenant())
	require.Len(t, cfg.AllTenants(), 1)
	_, err := cfg.Tenant("")
	require.ErrorContains(t, err, "no default tenant is configured")
	_, err = cfg.AccountTenant("0000123456-00001")
	require.ErrorContains(t, err, "belongs to no tenant")
}

// thingspace.account is the default tenant's default account wherever it
// stands in thingspace.accounts.
func TestDefaultTenantsDefaultAccountIsThingSpaceAccount(t *testing.T) {
	withSecrets(t)
	cfg := loadYAML(t, `
thingspace:
  client_id: app-key
  account: "0000123456-00002"
  accounts: ["0000123456-00001", "0000123456-00002"]
`)
	def, err := cfg.Tenant("")
	require.NoError(t, err)
	require.Equal(t, "0000123456-00002", def.DefaultAccount())
	require.Equal(t, []string{"0000123456-00002", "0000123456-00001"}, def.ThingSpace.Accounts)
}

// Two tenants with one listener user could not be told apart by their
// callbacks' credentials: refused where callbacks are received.
func TestTenantsNeedTheirOwnListenerUser(t *testing.T) {
	withTenantSecrets(t)
	cfg := loadYAML(t, tenantsYAML)
	require.NoError(t, cfg.ValidateReceiver())
	cfg.Tenants[0].Callbacks.Username = "listener"
	require.ErrorContains(t, cfg.ValidateReceiver(),
		"tenants.acme.callbacks.username (TSBULK_TENANTS_ACME_CALLBACKS_USERNAME): is already tenant default's listener user")
}

// A named tenant never takes another customer's default site, nor owes
// Rev.io disconnections without Rev.io of its own.
func TestNamedTenantsDoNotInheritTheDefaultSiteOrDisconnections(t *testing.T) {
	withTenantSecrets(t)
	cfg := loadYAML(t, tenantsYAML+`
  beta:
    thingspace: {client_id: b, username: b, accounts: ["0000333333-00001"]}
    callbacks: {username: beta-listener}
`)
	t.Setenv("TSBULK_TENANTS_BETA_THINGSPACE_CLIENT_SECRET", "s")
	t.Setenv("TSBULK_TENANTS_BETA_THINGSPACE_PASSWORD", "p")
	require.ErrorContains(t, cfg.ValidateStarter(),
		"tenants.beta.default_site (TSBULK_TENANTS_BETA_DEFAULT_SITE): is required while default_site_assignment is on")
	beta, err := cfg.Tenant("beta")
	require.NoError(t, err)
	require.Empty(t, beta.DefaultSite, "not WAREHOUSE-1, the default tenant's")

	cfg.Revio.Enabled, cfg.Revio.DisconnectOnDeactivate = true, true
	cfg.Tenants[1].Revio.DisconnectOnDeactivate = true // inherited, Rev.io off
	beta, err = cfg.Tenant("beta")
	require.NoError(t, err)
	require.False(t, cfg.BulkChangeOptionsFor(beta).DisconnectBillingOnDeactivate)
	def, err := cfg.Tenant("")
	require.NoError(t, err)
	require.True(t, cfg.BulkChangeOptionsFor(def).DisconnectBillingOnDeactivate)
}
