package config

import "github.com/iot-ops/tsbulk/workflows/api"

// BulkChangeOptionsFor are the settings a bulk change of tenant t submitted
// now runs with: the deployment's timings, window and callbacks (how the
// product runs, the same for every tenant), and the tenant's billing and
// default site (what the customer asked for). For the default tenant they
// are BulkChangeOptions.
func (c *Config) BulkChangeOptionsFor(t Tenant) api.Options {
	o := c.BulkChangeOptions()
	o.Timing.BillingPatience = t.Revio.RetryFor
	o.DefaultSite = t.SiteForBulkChanges()
	o.BillingEnabled = t.Revio.Enabled
	// A tenant without Rev.io owes no disconnection, whatever it inherits.
	o.DisconnectBillingOnDeactivate = t.Revio.Enabled && t.Revio.DisconnectOnDeactivate
	return o
}
