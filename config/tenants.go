package config

// Tenants: the customers one deployment serves. Each has its own
// ThingSpace credentials and accounts, callback listener credentials,
// Rev.io connection and mappings, default site, approval rule and limits.
// The top-level settings (thingspace.*, callbacks.username, revio.*,
// bulk.default_site, approval.*, limits.*) are the tenant "default", so a
// single-tenant configuration of before tenants works unchanged.

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	"github.com/iot-ops/tsbulk/change"
)

// DefaultTenant is the id of the tenant the top-level settings describe,
// and of every bulk change submitted before tenants existed.
const DefaultTenant = change.DefaultTenant

// namePattern is a name that is part of settings' environment variable
// names (TSBULK_TENANTS_<ID>_THINGSPACE_PASSWORD,
// TSBULK_NOTIFICATIONS_WEBHOOKS_<NAME>_SECRET): lower case because YAML
// keys are read case-insensitively, no hyphen; a tenant id is also part of
// URL paths.
var namePattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

// Tenant is one customer's settings. A tenant defined under tenants.<id>
// inherits the top-level settings that are not credentials (ThingSpace's
// base URL and timeouts, Rev.io's base URL and rate, approval, limits)
// and never the credentials nor the default site: a tenant without its own
// ThingSpace credentials is refused, not run as the default tenant.
type Tenant struct {
	ID string `mapstructure:"-"`
	// Name is shown to operators ("" = the id).
	Name       string           `mapstructure:"name"`
	ThingSpace TenantThingSpace `mapstructure:"thingspace"`
	Callbacks  TenantCallbacks  `mapstructure:"callbacks"`
	Revio      TenantRevio      `mapstructure:"revio"`
	// DefaultSite is given at the end to the tenant's inventory and
	// pending devices; "" with default_site_assignment on is refused.
	DefaultSite           string   `mapstructure:"default_site"`
	DefaultSiteAssignment bool     `mapstructure:"default_site_assignment"`
	Approval              Approval `mapstructure:"approval"`
	Limits                Limits   `mapstructure:"limits"`
}

// TenantThingSpace is a tenant's ThingSpace connection.
type TenantThingSpace struct {
	BaseURL      string `mapstructure:"base_url"`
	ClientID     string `mapstructure:"client_id"`
	ClientSecret Secret `mapstructure:"-"`
	Username     string `mapstructure:"username"`
	Password     Secret `mapstructure:"-"`
	// Accounts are the tenant's ThingSpace accounts, the first its
	// default. An account belongs to one tenant: Verizon's request budget
	// is the account's, so the rate ledger, the poller and the callback
	// registration are the account's too. The default tenant with no list
	// takes any account no other tenant lists, as before tenants.
	Accounts                []string      `mapstructure:"accounts"`
	HTTPTimeout             time.Duration `mapstructure:"http_timeout"`
	MaxRetries              int           `mapstructure:"max_retries"`
	DeleteAfterDeactivation bool          `mapstructure:"delete_after_deactivation"`
}

// TenantCallbacks are the listener credentials ThingSpace echoes in the
// tenant's callbacks. A named tenant's callbacks come to
// callbacks.path + "/" + id (the default tenant's to callbacks.path).
type TenantCallbacks struct {
	Username string `mapstructure:"username"`
	Password Secret `mapstructure:"-"`
}

// TenantRevio is a tenant's Rev.io connection and how its lines are billed
// without rev_* columns on every row.
type TenantRevio struct {
	Enabled         bool   `mapstructure:"enabled"`
	BaseURL         string `mapstructure:"base_url"`
	Login           string `mapstructure:"login"`
	ClientCode      string `mapstructure:"client_code"`
	Password        Secret `mapstructure:"-"`
	SubscriptionKey Secret `mapstructure:"-"`
	CallsPerMinute  int    `mapstructure:"calls_per_minute"`
	// Customers maps a ThingSpace account to the Rev.io customer its lines
	// are billed to (the predecessor's customer association).
	Customers []CustomerMapping `mapstructure:"customers"`
	// Plans maps a ThingSpace service plan to the Rev.io service type,
	// provider, products and rates of its lines (the predecessor's rate
	// plan assignment).
	Plans []PlanMapping `mapstructure:"plans"`
	// DisconnectOnDeactivate and RetryFor as revio.*.
	DisconnectOnDeactivate bool          `mapstructure:"disconnect_on_deactivate"`
	RetryFor               time.Duration `mapstructure:"retry_for"`
}

// CustomerMapping bills a ThingSpace account's lines to a Rev.io customer.
// A list, not a map: YAML keys would be read in lower case.
type CustomerMapping struct {
	Account    string `mapstructure:"account"`
	CustomerID int64  `mapstructure:"customer_id"`
}

// PlanMapping is the Rev.io service of a ThingSpace service plan's lines.
type PlanMapping struct {
	ServicePlan   string   `mapstructure:"service_plan"`
	ServiceTypeID int64    `mapstructure:"service_type_id"`
	ProviderID    int64    `mapstructure:"provider_id"`
	ProductIDs    []int64  `mapstructure:"product_ids"`
	Rates         []string `mapstructure:"rates"`
}

// Mapped reports whether the tenant bills from mappings: then every
// activation must be billable (by mapping or by its rev_* columns), checked
// when the file is validated. The default tenant without mappings bills, as
// before tenants, the rows that carry rev_* columns only.
func (r TenantRevio) Mapped() bool { return len(r.Customers) > 0 || len(r.Plans) > 0 }

// Customer is the Rev.io customer of an account's lines (0: none mapped).
func (r TenantRevio) Customer(account string) int64 {
	for _, c := range r.Customers {
		if c.Account == account {
			return c.CustomerID
		}
	}
	return 0
}

// Plan is the Rev.io service of a service plan's lines.
func (r TenantRevio) Plan(servicePlan string) (PlanMapping, bool) {
	for _, p := range r.Plans {
		if p.ServicePlan == servicePlan {
			return p, true
		}
	}
	return PlanMapping{}, false
}

// DisplayName is the tenant's name for operators.
func (t Tenant) DisplayName() string {
	if t.Name != "" {
		return t.Name
	}
	return t.ID
}

// DefaultAccount is the account a bulk change of the tenant uses when none
// is named.
func (t Tenant) DefaultAccount() string {
	if len(t.ThingSpace.Accounts) > 0 {
		return t.ThingSpace.Accounts[0]
	}
	return ""
}

// CallbackPath is where the tenant's callbacks are received, under base
// (callbacks.path).
func (t Tenant) CallbackPath(base string) string {
	if t.ID == DefaultTenant {
		return base
	}
	return strings.TrimSuffix(base, "/") + "/" + t.ID
}

// SiteForBulkChanges is the default site the tenant's new bulk changes
// give their inventory and pending devices: "" when assignment is off.
func (t Tenant) SiteForBulkChanges() string {
	if !t.DefaultSiteAssignment {
		return ""
	}
	return t.DefaultSite
}

// tenantSecrets are the secret settings of a tenant, under tenants.<id>.
var tenantSecrets = []string{
	"thingspace.client_secret",
	"thingspace.password",
	"callbacks.password",
	"revio.password",
	"revio.subscription_key",
}

func (t *Tenant) secret(key string) *Secret {
	switch key {
	case "thingspace.client_secret":
		return &t.ThingSpace.ClientSecret
	case "thingspace.password":
		return &t.ThingSpace.Password
	case "callbacks.password":
		return &t.Callbacks.Password
	case "revio.password":
		return &t.Revio.Password
	case "revio.subscription_key":
		return &t.Revio.SubscriptionKey
	}
	panic("config: unknown tenant secret " + key)
}

// defaultTenant is the tenant of the top-level settings.
func (c *Config) defaultTenant() Tenant {
	t := c.inherited(DefaultTenant)
	t.DefaultSite = c.Bulk.DefaultSite
	ts := c.ThingSpace
	t.ThingSpace.ClientID, t.ThingSpace.ClientSecret = ts.ClientID, ts.ClientSecret
	t.ThingSpace.Username, t.ThingSpace.Password = ts.Username, ts.Password
	// thingspace.account first: it is the default tenant's default account.
	t.ThingSpace.Accounts = slices.DeleteFunc(slices.Clone(ts.Accounts), func(a string) bool { return a == ts.Account })
	if ts.Account != "" {
		t.ThingSpace.Accounts = append([]string{ts.Account}, t.ThingSpace.Accounts...)
	}
	t.Callbacks = TenantCallbacks{Username: c.Callbacks.Username, Password: c.Callbacks.Password}
	r := c.Revio
	t.Revio.Enabled, t.Revio.Login, t.Revio.ClientCode = r.Enabled, r.Login, r.ClientCode
	t.Revio.Password, t.Revio.SubscriptionKey = r.Password, r.SubscriptionKey
	t.Revio.Customers, t.Revio.Plans = r.Customers, r.Plans
	return t
}

// inherited is a tenant with the top-level settings that are not
// credentials, nor the default site: another customer's site is never
// stamped on a tenant's devices, so a named tenant names its own (or turns
// assignment off).
func (c *Config) inherited(id string) Tenant {
	return Tenant{
		ID: id,
		ThingSpace: TenantThingSpace{
			BaseURL: c.ThingSpace.BaseURL, HTTPTimeout: c.ThingSpace.HTTPTimeout,
			MaxRetries: c.ThingSpace.MaxRetries, DeleteAfterDeactivation: c.ThingSpace.DeleteAfterDeactivation,
		},
		Revio: TenantRevio{
			BaseURL: c.Revio.BaseURL, CallsPerMinute: c.Revio.CallsPerMinute,
			DisconnectOnDeactivate: c.Revio.DisconnectOnDeactivate, RetryFor: c.Revio.RetryFor,
		},
		DefaultSiteAssignment: c.Bulk.DefaultSiteAssignment,
		Approval:              Approval{Operations: slices.Clone(c.Approval.Operations), MinDevices: c.Approval.MinDevices, ExpiresAfter: c.Approval.ExpiresAfter},
		Limits:                c.Limits,
	}
}

// loadTenants reads tenants.<id> from v over what each inherits, and
// their secrets from the environment or *_file settings (never from the
// file itself). path is the configuration file ("" = none).
func (c *Config) loadTenants(v *viper.Viper, path string) error {
	raw := v.GetStringMap("tenants")
	ids := make([]string, 0, len(raw))
	for id := range raw {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	c.Tenants = nil
	for _, id := range ids {
		key := "tenants." + id
		if !namePattern.MatchString(id) {
			return fmt.Errorf("%s: a tenant id is a lower-case letter then up to 31 lower-case letters, digits or _", key)
		}
		if id == DefaultTenant {
			return fmt.Errorf("%s: the default tenant is the top-level settings (thingspace.*, callbacks.*, revio.*); "+
				"name this tenant otherwise", key)
		}
		t := c.inherited(id)
		section, ok := raw[id].(map[string]any)
		if !ok {
			return fmt.Errorf("%s: is not a section of settings", key)
		}
		for _, s := range tenantSecrets {
			if full := key + "." + s; path != "" && hasKey(section, s) {
				return fmt.Errorf("%s must not be in the config file %s: set %s or %s_file instead",
					full, path, EnvName(full), full)
			}
		}
		// Decoded from the file's own section, not through viper.Sub: a
		// sub-viper reads the top-level environment variables
		// (TSBULK_THINGSPACE_CLIENT_ID) for the tenant's keys.
		if err := decodeSection(withoutFileKeys(section), &t); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		t.ID = id
		if len(t.Approval.Operations) == 1 && strings.EqualFold(strings.TrimSpace(t.Approval.Operations[0]), "none") {
			t.Approval.Operations = nil
		}
		for _, s := range tenantSecrets {
			full := key + "." + s
			val, err := readSecret(v, full)
			if err != nil {
				return err
			}
			*t.secret(s) = Secret(val)
		}
		c.Tenants = append(c.Tenants, t)
	}
	return nil
}

// decodeSection decodes a section of the file (a tenant, a webhook: read as
// is, not through viper, whose sub-viper would read top-level environment
// variables for its keys) over what into already holds: a key it does not
// know is an error (a misspelt setting is not silently ignored).
func decodeSection(section map[string]any, into any) error {
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result: into, WeaklyTypedInput: true, ErrorUnused: true,
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(), mapstructure.StringToSliceHookFunc(",")),
	})
	if err != nil {
		return err
	}
	return dec.Decode(section)
}

// hasKey reports whether a dotted key is set in a section read from YAML.
func hasKey(section map[string]any, dotted string) bool {
	head, rest, nested := strings.Cut(dotted, ".")
	val, ok := section[head]
	if !ok || !nested {
		return ok
	}
	sub, isMap := val.(map[string]any)
	return isMap && hasKey(sub, rest)
}

// withoutFileKeys drops the *_file settings of secrets, read by
// readSecret, from what is decoded into a Tenant.
func withoutFileKeys(section map[string]any) map[string]any {
	out := make(map[string]any, len(section))
	for k, val := range section {
		if strings.HasSuffix(k, "_file") {
			continue
		}
		if sub, ok := val.(map[string]any); ok {
			val = withoutFileKeys(sub)
		}
		out[k] = val
	}
	return out
}

// AllTenants is every tenant, the default one first when it is defined:
// when no tenant is named under tenants, or when the top-level ThingSpace
// settings name a client or an account.
func (c *Config) AllTenants() []Tenant {
	var all []Tenant
	if c.HasDefaultTenant() {
		all = append(all, c.defaultTenant())
	}
	return append(all, c.Tenants...)
}

// HasDefaultTenant reports whether the top-level settings define a tenant.
func (c *Config) HasDefaultTenant() bool {
	return len(c.Tenants) == 0 || c.ThingSpace.ClientID != "" || c.ThingSpace.Account != "" ||
		len(c.ThingSpace.Accounts) > 0
}

// Tenant is the tenant of id ("" = the default tenant).
func (c *Config) Tenant(id string) (Tenant, error) {
	if id == "" {
		id = DefaultTenant
	}
	all := c.AllTenants()
	for _, t := range all {
		if t.ID == id {
			return t, nil
		}
	}
	names := make([]string, len(all))
	for i, t := range all {
		names[i] = t.ID
	}
	if id == DefaultTenant {
		return Tenant{}, fmt.Errorf("no default tenant is configured (thingspace.* is empty): name one of %s",
			strings.Join(names, ", "))
	}
	return Tenant{}, fmt.Errorf("tenant %q is not configured (tenants: %s)", id, strings.Join(names, ", "))
}

// AccountTenant is the tenant an account belongs to: the one listing it,
// else the default tenant when it takes any account.
func (c *Config) AccountTenant(account string) (Tenant, error) {
	all := c.AllTenants()
	for _, t := range all {
		if slices.Contains(t.ThingSpace.Accounts, account) {
			return t, nil
		}
	}
	for _, t := range all {
		if t.ID == DefaultTenant && len(c.ThingSpace.Accounts) == 0 {
			return t, nil
		}
	}
	return Tenant{}, fmt.Errorf("account %q belongs to no tenant", account)
}

// CheckAccount says whether account may be used by tenant t's bulk changes.
func (c *Config) CheckAccount(t Tenant, account string) error {
	owner, err := c.AccountTenant(account)
	if err != nil || owner.ID != t.ID {
		return fmt.Errorf("account %q is not one of tenant %s's accounts (%s)", account, t.ID,
			strings.Join(t.ThingSpace.Accounts, ", "))
	}
	return nil
}

// checkTenants checks what every process needs of the tenants: ids, each
// account in one tenant, the mappings. credentials also checks what
// talking to ThingSpace and Rev.io needs (the worker), listener what
// receiving callbacks needs (the receiver).
func (c *Config) checkTenants(p *problems, credentials, listener bool) {
	owner := map[string]string{}
	listeners := map[string]string{}
	for _, t := range c.AllTenants() {
		key := func(s string) string {
			if t.ID == DefaultTenant {
				return s
			}
			return "tenants." + t.ID + "." + s
		}
		if u := t.Callbacks.Username; listener && u != "" {
			// Each tenant its own listener user: the credentials, checked
			// before a callback is parsed, then tell the tenants apart.
			if prev, ok := listeners[u]; ok {
				p.need(false, key("callbacks.username"), "is already tenant %s's listener user: give each tenant its own", prev)
			}
			listeners[u] = t.ID
		}
		for i, a := range t.ThingSpace.Accounts {
			p.need(strings.TrimSpace(a) != "", key("thingspace.accounts"), "entry %d is empty", i+1)
			if prev, ok := owner[a]; ok && prev != t.ID {
				p.need(false, key("thingspace.accounts"),
					"account %q is already tenant %s's: an account belongs to one tenant (its request budget, poller and callback registration are the account's)",
					a, prev)
			}
			owner[a] = t.ID
		}
		if t.ID != DefaultTenant {
			p.need(len(t.ThingSpace.Accounts) > 0, key("thingspace.accounts"), "is required: the tenant's ThingSpace accounts, its default first")
			if credentials {
				c.checkThingSpaceLogin(p, key, t.ThingSpace)
			}
			if t.Revio.Enabled && credentials {
				c.checkRevioConnection(p, key, t.Revio)
			}
			if listener {
				p.need(t.Callbacks.Username != "", key("callbacks.username"),
					"is required: ThingSpace echoes it in every callback of the tenant, and callbacks without it are refused")
				p.need(t.Callbacks.Password != "", key("callbacks.password"),
					"is required (environment or %s_file)", key("callbacks.password"))
			}
			p.need(!t.DefaultSiteAssignment || strings.TrimSpace(t.DefaultSite) != "", key("default_site"),
				"is required while default_site_assignment is on: name the site given to inventory and pending devices")
		}
		for _, op := range t.Approval.Operations {
			p.need(change.Operation(op).Valid(),
				key("approval.operations"), "%q is not an operation (%s; or none)", op, change.OperationNames())
		}
		p.need(t.Revio.Enabled || !t.Revio.Mapped(), key("revio.customers"),
			"and revio.plans bill lines: they need revio.enabled")
		seen := map[string]bool{}
		for i, m := range t.Revio.Customers {
			p.need(m.Account != "", key("revio.customers"), "entry %d: account is required", i+1)
			p.need(m.CustomerID > 0, key("revio.customers"), "entry %d: customer_id must be a positive whole number", i+1)
			p.need(!seen[m.Account], key("revio.customers"), "entry %d: account %q is mapped twice", i+1, m.Account)
			seen[m.Account] = true
		}
		plans := map[string]bool{}
		for i, m := range t.Revio.Plans {
			p.need(m.ServicePlan != "", key("revio.plans"), "entry %d: service_plan is required", i+1)
			p.need(!plans[m.ServicePlan], key("revio.plans"), "entry %d: service plan %q is mapped twice", i+1, m.ServicePlan)
			plans[m.ServicePlan] = true
			p.need(m.ServiceTypeID > 0, key("revio.plans"), "entry %d: service_type_id must be a positive whole number", i+1)
			p.need(m.ProviderID > 0, key("revio.plans"),
				"entry %d: provider_id must be a positive whole number (Rev.io creates no service line without its provider)", i+1)
			p.need(len(m.ProductIDs) == len(m.Rates), key("revio.plans"),
				"entry %d: %d product_ids but %d rates; give one rate per product", i+1, len(m.ProductIDs), len(m.Rates))
		}
	}
}

// checkThingSpaceLogin checks what logging in to a tenant's ThingSpace
// needs; key names each setting (the default tenant's are top-level).
func (c *Config) checkThingSpaceLogin(p *problems, key func(string) string, ts TenantThingSpace) {
	c.needSecureURL(p, key("thingspace.base_url"), ts.BaseURL)
	p.need(ts.ClientID != "", key("thingspace.client_id"), "is required")
	p.need(ts.ClientSecret != "", key("thingspace.client_secret"),
		"is required (environment or %s_file)", key("thingspace.client_secret"))
	p.need(ts.Username != "", key("thingspace.username"), "is required")
	p.need(ts.Password != "", key("thingspace.password"),
		"is required (environment or %s_file)", key("thingspace.password"))
}

// checkRevioConnection checks what calling a tenant's Rev.io needs.
func (c *Config) checkRevioConnection(p *problems, key func(string) string, r TenantRevio) {
	c.needSecureURL(p, key("revio.base_url"), r.BaseURL)
	p.need(r.Login != "" && !strings.Contains(r.Login, "@"), key("revio.login"),
		"is required and must not be an e-mail address")
	p.need(r.ClientCode != "", key("revio.client_code"), "is required")
	p.need(r.Password != "", key("revio.password"), "is required (environment or %s_file)", key("revio.password"))
	p.need(r.SubscriptionKey != "", key("revio.subscription_key"),
		"is required (environment or %s_file)", key("revio.subscription_key"))
	p.need(r.CallsPerMinute > 0 && r.CallsPerMinute <= 500, key("revio.calls_per_minute"),
		"must be 1..500 (Rev.io's limit)")
}

// topLevel names the default tenant's settings: the top-level ones.
func topLevel(key string) string { return key }
