package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The default tenant's bulk changes run with exactly the options of before
// tenants, whatever the top-level billing and site settings; a named tenant's
// carry its own billing and default site and the deployment's timings.
func TestBulkChangeOptionsForATenant(t *testing.T) {
	withTenantSecrets(t)
	for _, env := range []map[string]string{
		{},
		{"TSBULK_REVIO_ENABLED": "true", "TSBULK_REVIO_DISCONNECT_ON_DEACTIVATE": "true", "TSBULK_REVIO_RETRY_FOR": "17m"},
		{"TSBULK_BULK_DEFAULT_SITE_ASSIGNMENT": "false", "TSBULK_BULK_CALLBACK_TIMEOUT": "45m"},
	} {
		for k, v := range env {
			t.Setenv(k, v)
		}
		cfg := loadYAML(t, tenantsYAML)
		def, err := cfg.Tenant("")
		require.NoError(t, err)
		require.Equal(t, cfg.BulkChangeOptions(), cfg.BulkChangeOptionsFor(def), "%v", env)
	}

	t.Setenv("TSBULK_REVIO_ENABLED", "false")
	t.Setenv("TSBULK_REVIO_DISCONNECT_ON_DEACTIVATE", "false")
	t.Setenv("TSBULK_BULK_DEFAULT_SITE_ASSIGNMENT", "true")
	cfg := loadYAML(t, tenantsYAML)
	acme, err := cfg.Tenant("acme")
	require.NoError(t, err)
	o := cfg.BulkChangeOptionsFor(acme)
	require.True(t, o.BillingEnabled, "acme bills, the default tenant does not")
	require.False(t, cfg.BulkChangeOptions().BillingEnabled)
	require.Equal(t, "ACME-DEPOT", o.DefaultSite)
	require.Equal(t, "WAREHOUSE-1", cfg.BulkChangeOptions().DefaultSite)
	require.Equal(t, 17*time.Minute, o.Timing.BillingPatience, "inherited revio.retry_for")
	require.Equal(t, 45*time.Minute, o.Timing.CallbackTimeout, "the deployment's timings")
	require.Equal(t, cfg.Bulk.Window, o.Window)
}
