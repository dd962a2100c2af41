package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The receiver needs every tenant's listener credentials: a named tenant
// without them is refused at start, naming its setting.
func TestReceiverNeedsEveryTenantsListenerCredentials(t *testing.T) {
	withTenantSecrets(t)
	cfg := loadYAML(t, tenantsYAML)
	require.NoError(t, cfg.ValidateReceiver())

	t.Setenv("TSBULK_TENANTS_ACME_CALLBACKS_PASSWORD", "")
	cfg = loadYAML(t, tenantsYAML)
	require.ErrorContains(t, cfg.ValidateReceiver(),
		"tenants.acme.callbacks.password (TSBULK_TENANTS_ACME_CALLBACKS_PASSWORD): is required")
	require.ErrorContains(t, cfg.ValidateRegistration(),
		"tenants.acme.callbacks.password (TSBULK_TENANTS_ACME_CALLBACKS_PASSWORD): is required")

	t.Setenv("TSBULK_TENANTS_ACME_CALLBACKS_PASSWORD", "acme-cb")
	cfg = loadYAML(t, tenantsYAML+"\n  globex:\n    thingspace: {client_id: g, username: g, accounts: [\"0000444444-00001\"]}\n"+
		"    default_site: GLOBEX\n")
	err := cfg.ValidateReceiver()
	require.ErrorContains(t, err, "tenants.globex.callbacks.username (TSBULK_TENANTS_GLOBEX_CALLBACKS_USERNAME): is required")
	require.ErrorContains(t, err, "tenants.globex.callbacks.password (TSBULK_TENANTS_GLOBEX_CALLBACKS_PASSWORD): is required")
	require.ErrorContains(t, cfg.ValidateRegistration(), "tenants.globex.callbacks.username")
}

// Registering needs callbacks.public_url and each tenant's listener
// credentials; with named tenants only, the top-level callbacks.username
// is no tenant's and not required.
func TestRegistrationOfNamedTenantsOnly(t *testing.T) {
	withTenantSecrets(t)
	t.Setenv("TSBULK_THINGSPACE_CLIENT_SECRET", "")
	t.Setenv("TSBULK_THINGSPACE_PASSWORD", "")
	t.Setenv("TSBULK_CALLBACKS_PASSWORD", "")
	named := `
dev: true
database:
  url: postgres://postgres@127.0.0.1:5432/tsbulk?sslmode=disable
callbacks:
  public_url: https://cb.example.com/thingspace/callbacks
tenants:
  acme:
    thingspace:
      base_url: http://127.0.0.1:8090
      client_id: acme-app
      username: acme-user
      accounts: ["0000222222-00001"]
    callbacks: {username: acme-listener}
    default_site: ACME-DEPOT
`
	cfg := loadYAML(t, named)
	require.NoError(t, cfg.ValidateRegistration())
	require.NoError(t, cfg.ValidateReceiver())

	cfg.Callbacks.PublicURL = ""
	require.ErrorContains(t, cfg.ValidateRegistration(), "callbacks.public_url (TSBULK_CALLBACKS_PUBLIC_URL): is required")
}
