package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/iot-ops/tsbulk/config"
)

// tenantView is what `starter tenants` shows of a tenant: everything an
// operator needs to submit for it and nothing secret. Secrets are only
// said to be missing, by the variable that would set them.
type tenantView struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	Accounts []string `json:"accounts"`
	// DefaultAccount is the account a submission without --account uses.
	DefaultAccount string `json:"defaultAccount,omitempty"`
	ThingSpace     struct {
		BaseURL  string `json:"baseUrl"`
		ClientID string `json:"clientId,omitempty"`
		Username string `json:"username,omitempty"`
	} `json:"thingspace"`
	CallbackPath     string `json:"callbackPath"`
	CallbackUsername string `json:"callbackUsername,omitempty"`
	Revio            struct {
		Enabled                bool          `json:"enabled"`
		BaseURL                string        `json:"baseUrl,omitempty"`
		Customers              int           `json:"customerMappings"`
		Plans                  int           `json:"planMappings"`
		DisconnectOnDeactivate bool          `json:"disconnectOnDeactivate"`
		RetryFor               time.Duration `json:"retryFor"`
	} `json:"revio"`
	DefaultSite string `json:"defaultSite"`
	Approval    struct {
		Operations   []string      `json:"operations"`
		MinDevices   int           `json:"minDevices"`
		ExpiresAfter time.Duration `json:"expiresAfter"`
	} `json:"approval"`
	Limits struct {
		RequestsPerHour      int           `json:"requestsPerHour"`
		RequestsWindow       time.Duration `json:"requestsWindow"`
		ActivatesPerMinute   int           `json:"activatesPerMinute"`
		ActionsPerLinePerDay int           `json:"actionsPerLinePerDay"`
	} `json:"limits"`
	// MissingSecrets names the variables of the tenant's secrets that are
	// not set (only those its settings need).
	MissingSecrets []string `json:"missingSecrets,omitempty"`
}

func viewTenant(cfg *config.Config, t config.Tenant) tenantView {
	var v tenantView
	v.ID, v.Name, v.Accounts = t.ID, t.DisplayName(), t.ThingSpace.Accounts
	v.DefaultAccount = t.DefaultAccount()
	v.ThingSpace.BaseURL, v.ThingSpace.ClientID, v.ThingSpace.Username =
		t.ThingSpace.BaseURL, t.ThingSpace.ClientID, t.ThingSpace.Username
	v.CallbackPath, v.CallbackUsername = t.CallbackPath(cfg.Callbacks.Path), t.Callbacks.Username
	r := t.Revio
	v.Revio.Enabled, v.Revio.Customers, v.Revio.Plans = r.Enabled, len(r.Customers), len(r.Plans)
	v.Revio.DisconnectOnDeactivate, v.Revio.RetryFor = r.DisconnectOnDeactivate, r.RetryFor
	if r.Enabled {
		v.Revio.BaseURL = r.BaseURL
	}
	v.DefaultSite = t.SiteForBulkChanges()
	v.Approval.Operations, v.Approval.MinDevices, v.Approval.ExpiresAfter =
		t.Approval.Operations, t.Approval.MinDevices, t.Approval.ExpiresAfter
	l := t.Limits
	v.Limits.RequestsPerHour, v.Limits.RequestsWindow = l.RequestsPerHour, l.RequestsWindow
	v.Limits.ActivatesPerMinute, v.Limits.ActionsPerLinePerDay = l.ActivatesPerMinute, l.ActionsPerLinePerDay

	key := func(s string) string {
		if t.ID == config.DefaultTenant {
			return config.EnvName(s)
		}
		return config.EnvName("tenants." + t.ID + "." + s)
	}
	missing := func(secret config.Secret, name string) {
		if secret == "" {
			v.MissingSecrets = append(v.MissingSecrets, key(name))
		}
	}
	missing(t.ThingSpace.ClientSecret, "thingspace.client_secret")
	missing(t.ThingSpace.Password, "thingspace.password")
	if cfg.Callbacks.Enabled {
		missing(t.Callbacks.Password, "callbacks.password")
	}
	if r.Enabled {
		missing(r.Password, "revio.password")
		missing(r.SubscriptionKey, "revio.subscription_key")
	}
	return v
}

// tenants lists the configured tenants without their secrets.
func (c *cli) tenants(_ context.Context, t *target) error {
	all := c.cfg.AllTenants()
	views := make([]tenantView, len(all))
	for i, tn := range all {
		views[i] = viewTenant(c.cfg, tn)
	}
	if t.asJSON {
		return json.NewEncoder(c.out).Encode(views)
	}
	for i, v := range views {
		if i > 0 {
			fmt.Fprintln(c.out)
		}
		c.printTenant(v)
	}
	return nil
}

func (c *cli) printTenant(v tenantView) {
	line := func(label, format string, args ...any) {
		fmt.Fprintf(c.out, "  %-15s %s\n", label, fmt.Sprintf(format, args...))
	}
	title := v.ID
	if v.Name != v.ID {
		title += " (" + v.Name + ")"
	}
	fmt.Fprintln(c.out, title)
	accounts := "any account no other tenant lists"
	if len(v.Accounts) > 0 {
		accounts = strings.Join(v.Accounts, ", ")
	}
	if v.DefaultAccount != "" {
		accounts += "; default " + v.DefaultAccount
	}
	line("accounts", "%s", accounts)
	line("thingspace", "%s, client %s, user %s", v.ThingSpace.BaseURL, orNone(v.ThingSpace.ClientID),
		orNone(v.ThingSpace.Username))
	line("callbacks", "%s, listener user %s", v.CallbackPath, orNone(v.CallbackUsername))
	if v.Revio.Enabled {
		line("rev.io", "on, %s, %d customer and %d plan mappings, retries for %s, disconnect on deactivate %t",
			v.Revio.BaseURL, v.Revio.Customers, v.Revio.Plans, v.Revio.RetryFor, v.Revio.DisconnectOnDeactivate)
	} else {
		line("rev.io", "off")
	}
	line("default site", "%s", orNone(v.DefaultSite))
	if len(v.Approval.Operations) == 0 {
		line("approval", "none")
	} else {
		line("approval", "%s of at least %d devices, expires after %s", strings.Join(v.Approval.Operations, ", "),
			v.Approval.MinDevices, v.Approval.ExpiresAfter)
	}
	l := v.Limits
	line("limits", "%s requests per %s, %s activations a minute, %s state changes per line a day",
		limit(l.RequestsPerHour), l.RequestsWindow, limit(l.ActivatesPerMinute), limit(l.ActionsPerLinePerDay))
	if len(v.MissingSecrets) > 0 {
		line("secrets unset", "%s", strings.Join(v.MissingSecrets, ", "))
	}
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func limit(n int) string {
	if n == 0 {
		return "unlimited"
	}
	return fmt.Sprint(n)
}
