package config

// Validation: each process checks the settings it needs, and every problem
// is reported at once, naming its setting and environment variable.

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/iot-ops/tsbulk/change"
)

// problems collects validation errors, each naming its setting.
type problems []string

func (p *problems) need(ok bool, key, format string, args ...any) {
	if !ok {
		*p = append(*p, fmt.Sprintf("%s (%s): %s", key, EnvName(key), fmt.Sprintf(format, args...)))
	}
}

// needKeyPair checks a certificate and its key, given as two settings:
// both or neither, and then loadable together. pair says what the two are
// for.
func (p *problems) needKeyPair(certKey, certFile, keyKey, keyFile, pair string) {
	cert, key := certFile != "", keyFile != ""
	p.need(cert == key, certKey, "goes with %s: set both (%s) or neither", keyKey, pair)
	if cert && key {
		_, err := tls.LoadX509KeyPair(certFile, keyFile)
		p.need(err == nil, certKey, "cannot be loaded with %s: %v", keyKey, err)
	}
}

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return errors.New("invalid configuration:\n  " + strings.Join(p, "\n  "))
}

func (c *Config) checkCommon(p *problems) {
	c.checkCodec(p)
	p.need(c.Database.URL != "", "database.url", "is required")
	c.checkTemporal(p)
}

// checkTemporal checks the Temporal settings given here; what Temporal's
// environment configuration adds is checked when the process connects
// (setup.TemporalOptions). Address and namespace may be empty: they then
// come from there.
func (c *Config) checkTemporal(p *problems) {
	t := c.Temporal.TLS
	off := t.Enabled != nil && !*t.Enabled
	p.need(!off || (t.CAFile == "" && t.CertFile == "" && t.KeyFile == "" && t.ServerName == ""),
		"temporal.tls.enabled", "is false while other temporal.tls settings are given: turn it on, or remove them")
	p.need(!off || c.Temporal.APIKey == "" || c.Dev, "temporal.tls.enabled",
		"is false with an API key (temporal.api_key): the key would cross the network in clear (allowed only in dev mode)")
	p.needKeyPair("temporal.tls.cert_file", t.CertFile, "temporal.tls.key_file", t.KeyFile,
		"mutual TLS: the client certificate and its key")
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			p.need(false, "temporal.tls.ca_file", "cannot be read: %v", err)
		} else {
			p.need(x509.NewCertPool().AppendCertsFromPEM(pem), "temporal.tls.ca_file",
				"holds no PEM certificate (%s)", t.CAFile)
		}
	}
}

func (c *Config) checkThingSpace(p *problems) {
	c.checkTenants(p, true, false)
	if !c.HasDefaultTenant() {
		// Only named tenants: their own settings were checked.
		return
	}
	c.checkThingSpaceLogin(p, topLevel, c.defaultTenant().ThingSpace)
	p.need(c.ThingSpace.Account != "", "thingspace.account", "is required")
	p.need(c.ThingSpace.HTTPTimeout > 0, "thingspace.http_timeout", "must be positive")
	p.need(
		c.ThingSpace.MaxRetries >= 0 && c.ThingSpace.MaxRetries <= 5,
		"thingspace.max_retries",
		"must be 0..5 (longer waits belong to the workflow retry policies)",
	)
}

func (c *Config) checkCallbacks(p *problems) {
	p.need(c.Callbacks.Listen != "", "callbacks.listen", "is required")
	p.need(strings.HasPrefix(c.Callbacks.Path, "/"), "callbacks.path", "must start with /")
	if c.HasDefaultTenant() {
		p.need(
			c.Callbacks.Username != "",
			"callbacks.username",
			"is required: ThingSpace echoes it in every callback, and callbacks without it are refused",
		)
		p.need(c.Callbacks.Password != "", "callbacks.password", "is required (environment or callbacks.password_file)")
	}
	c.checkTenants(p, false, true)
	p.need(c.Callbacks.MaxBodyBytes >= 1024, "callbacks.max_body_bytes", "must be at least 1024")
	if c.Callbacks.PublicURL != "" {
		c.needSecureURL(p, "callbacks.public_url", c.Callbacks.PublicURL)
	}
	p.need(c.Callbacks.MaxConcurrent >= 1, "callbacks.max_concurrent", "must be at least 1")
	for _, l := range []struct {
		key  string
		list []string
	}{
		{"callbacks.allowed_sources", c.Callbacks.AllowedSources},
		{"callbacks.trusted_proxies", c.Callbacks.TrustedProxies},
	} {
		if _, err := ParseNetworks(l.key, l.list); err != nil {
			*p = append(*p, err.Error())
		}
	}
	p.needKeyPair("callbacks.tls_cert_file", c.Callbacks.TLSCertFile, "callbacks.tls_key_file", c.Callbacks.TLSKeyFile,
		"the receiver serves HTTPS")
}

// needSecureURL requires an https URL with a host, or http too in dev mode
// (the simulators): secrets, tokens and PPU travel to and from these URLs.
// Only the scheme is quoted back, in case the URL carries credentials.
func (c *Config) needSecureURL(p *problems, key, raw string) {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		p.need(false, key, "must be an https URL with a host")
	case u.Scheme == "http" && !c.Dev:
		p.need(false, key, "must be https: http is allowed only in dev mode (dev: true, TSBULK_DEV), for the simulators")
	}
}

func (c *Config) checkRevio(p *problems) {
	p.need(c.Revio.Enabled || !c.Revio.DisconnectOnDeactivate, "revio.disconnect_on_deactivate",
		"needs revio.enabled: with Rev.io off every deactivation's disconnection would fail")
	if !c.Revio.Enabled {
		return
	}
	c.checkRevioConnection(p, topLevel, c.defaultTenant().Revio)
	p.need(c.Revio.RetryFor > 0, "revio.retry_for", "must be positive")
}

func (c *Config) checkBulk(p *problems) {
	b := c.Bulk
	p.need(
		b.BatchSize >= 1 && b.BatchSize <= 10000,
		"bulk.batch_size",
		"must be 1..10000 (ThingSpace's maximum per request)",
	)
	p.need(b.Window >= 1 && b.Window <= 1500, "bulk.window", "must be 1..1500 (Temporal allows 2000 pending children)")
	p.need(b.StartsPerRun >= 1 && b.StartsPerRun <= 2000, "bulk.starts_per_run", "must be 1..2000")
	p.need(b.ShardSize == 0 || b.ShardSize >= 100 && b.ShardSize <= 100000, "bulk.shard_size",
		"must be 0 (never shard) or 100..100000")
	p.need(b.ShardsAtOnce >= 1 && b.ShardsAtOnce <= 100, "bulk.shards_at_once", "must be 1..100")
	p.need(b.CallbackTimeout > 0, "bulk.callback_timeout", "must be positive")
	p.need(b.ConfirmDeadline > b.CallbackTimeout, "bulk.confirm_deadline", "must be longer than bulk.callback_timeout")
	p.need(b.PollInterval > 0, "bulk.poll_interval", "must be positive")
	p.need(b.PollMaxInterval >= b.PollInterval, "bulk.poll_max_interval", "must be at least bulk.poll_interval")
	p.need(b.StallCheck > 0, "bulk.stall_check", "must be positive")
	for _, op := range c.Approval.Operations {
		p.need(change.Operation(op).Valid(),
			"approval.operations", "%q is not an operation (%s; or none)", op, change.OperationNames())
	}
	if len(c.Approval.Operations) > 0 {
		p.need(c.Approval.MinDevices >= 1, "approval.min_devices", "must be at least 1")
		p.need(c.Approval.ExpiresAfter > 0, "approval.expires_after", "must be positive")
	}
	p.need(
		!c.HasDefaultTenant() || !b.DefaultSiteAssignment || strings.TrimSpace(b.DefaultSite) != "",
		"bulk.default_site",
		"is required while bulk.default_site_assignment is on (the default): "+
			"name the site given to inventory and pending devices, or turn assignment off",
	)
	p.need(c.Submission.MaxFileBytes == 0 || c.Submission.MaxFileBytes >= 1024, "submission.max_file_bytes",
		"must be at least 1024 (0 = 64 MiB)")
	l := c.Limits
	p.need(l.RequestsPerHour >= 0, "limits.requests_per_hour", "must not be negative (0 = no limit)")
	p.need(l.RequestsWindow > 0, "limits.requests_window", "must be positive")
	p.need(l.ActivatesPerMinute >= 0, "limits.activates_per_minute", "must not be negative (0 = no limit)")
	p.need(l.ActionsPerLinePerDay >= 0, "limits.actions_per_line_per_day", "must not be negative (0 = no limit)")
}

// ValidateWorker checks what the worker needs.
func (c *Config) ValidateWorker() error {
	var p problems
	c.checkCommon(&p)
	c.checkThingSpace(&p)
	c.checkRevio(&p)
	c.checkBulk(&p)
	p.need(c.Worker.Listen != "", "worker.listen", "is required")
	p.need(c.Worker.MaxConcurrentActivities > 0, "worker.max_concurrent_activities", "must be positive")
	p.need(c.Worker.WorkflowTaskPollers >= 2, "worker.workflow_task_pollers", "must be at least 2")
	p.need(c.Worker.ActivityTaskPollers >= 1, "worker.activity_task_pollers", "must be at least 1")
	p.need(c.Worker.PollMaxRequests >= 1, "worker.poll_max_requests", "must be at least 1")
	p.need(c.Worker.PollerSignalsPerRun >= 1, "worker.poller_signals_per_run", "must be at least 1")
	p.need(c.Worker.ReconcileSettle > 0, "worker.reconcile_settle", "must be positive")
	p.need(c.Worker.StopTimeout >= 0, "worker.stop_timeout", "must not be negative")
	p.need(c.Worker.StickyCacheSize >= 0, "worker.sticky_cache_size", "must not be negative (0 = the SDK's default)")
	if c.Worker.EmbedCallbackReceiver {
		c.checkCallbacks(&p)
	}
	return p.err()
}

// ValidateReceiver checks what the callback receiver needs.
func (c *Config) ValidateReceiver() error {
	var p problems
	c.checkCommon(&p)
	c.checkCallbacks(&p)
	return p.err()
}

// ValidateStarter checks what the starter needs: it fixes a bulk change's
// settings (billing, disconnection, default site) when it submits it.
func (c *Config) ValidateStarter() error {
	var p problems
	c.checkCommon(&p)
	c.checkBulk(&p)
	p.need(c.Revio.Enabled || !c.Revio.DisconnectOnDeactivate, "revio.disconnect_on_deactivate",
		"needs revio.enabled: with Rev.io off every deactivation's disconnection would fail")
	c.checkTenants(&p, false, false)
	return p.err()
}

// ValidateRegistration checks what registering the tenants' callback
// listeners needs: each tenant's ThingSpace and listener credentials, and
// callbacks.public_url (a named tenant's URL extends it with "/" + id).
func (c *Config) ValidateRegistration() error {
	var p problems
	c.checkThingSpace(&p)
	p.need(c.Callbacks.PublicURL != "", "callbacks.public_url", "is required: the https URL ThingSpace will call")
	if c.Callbacks.PublicURL != "" {
		c.needSecureURL(&p, "callbacks.public_url", c.Callbacks.PublicURL)
	}
	if c.HasDefaultTenant() {
		p.need(c.Callbacks.Username != "", "callbacks.username", "is required")
		p.need(c.Callbacks.Password != "", "callbacks.password", "is required (environment or callbacks.password_file)")
	}
	for _, t := range c.Tenants {
		key := "tenants." + t.ID + ".callbacks."
		p.need(t.Callbacks.Username != "", key+"username", "is required")
		p.need(t.Callbacks.Password != "", key+"password", "is required (environment or %spassword_file)", key)
	}
	return p.err()
}
