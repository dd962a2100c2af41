package process

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/ratelimit"
	"github.com/iot-ops/tsbulk/revio"
	"github.com/iot-ops/tsbulk/submission"
	"github.com/iot-ops/tsbulk/thingspace"
)

// WorkerTenants is the worker's activities.Tenants: each tenant of its
// configuration gets its own ThingSpace client (its credentials, base URL
// and timeouts; the credential latch in PostgreSQL shared by every client),
// request limiter (its limits; the ledger rows are the accounts', and an
// account is one tenant's) and Rev.io client (when its billing is on),
// built on first use and kept. Reload swaps the configuration: a tenant
// whose settings changed gets new clients at its next use, a removed one's
// bulk changes wait (TenantNotConfiguredError, retried) until it is back.
type WorkerTenants struct {
	store   *db.Store
	auditor *activities.Auditor
	logger  *slog.Logger

	mu    sync.Mutex
	cfg   *config.Config
	built map[string]*builtTenant
}

// builtTenant is a tenant's clients and the settings they were built from.
type builtTenant struct {
	settings config.Tenant
	tenant   *activities.Tenant
}

var _ activities.Tenants = (*WorkerTenants)(nil)

// NewWorkerTenants serves the tenants of cfg. Every HTTP exchange of their
// clients goes to the audit log through auditor.
func NewWorkerTenants(
	cfg *config.Config,
	store *db.Store,
	auditor *activities.Auditor,
	logger *slog.Logger,
) *WorkerTenants {
	if logger == nil {
		logger = slog.Default()
	}
	return &WorkerTenants{store: store, auditor: auditor, logger: logger, cfg: cfg, built: map[string]*builtTenant{}}
}

// Tenant is the tenant of id ("" = the default tenant).
func (w *WorkerTenants) Tenant(_ context.Context, id string) (*activities.Tenant, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, err := w.cfg.Tenant(id)
	if err != nil {
		return nil, &activities.TenantNotConfiguredError{ID: cmp.Or(id, config.DefaultTenant)}
	}
	return w.use(t)
}

// AccountTenant is the tenant an account belongs to.
func (w *WorkerTenants) AccountTenant(_ context.Context, account string) (*activities.Tenant, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, err := w.cfg.AccountTenant(account)
	if err != nil {
		return nil, &activities.TenantNotConfiguredError{Account: account}
	}
	return w.use(t)
}

// CheckAccount says whether a bulk change of tenant id may use account in
// the worker's configuration (the submitting process's may differ).
func (w *WorkerTenants) CheckAccount(_ context.Context, id, account string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, err := w.cfg.Tenant(id)
	if err != nil {
		return &activities.TenantNotConfiguredError{ID: id}
	}
	return w.cfg.CheckAccount(t, account)
}

// Config is the configuration the tenants are served from now: the
// worker's, or the last one reloaded.
func (w *WorkerTenants) Config() *config.Config {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cfg
}

// IDs are the tenants served, the default one first when it is defined.
func (w *WorkerTenants) IDs() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return tenantIDs(w.cfg)
}

func tenantIDs(cfg *config.Config) []string {
	all := cfg.AllTenants()
	ids := make([]string, len(all))
	for i, t := range all {
		ids[i] = t.ID
	}
	return ids
}

// use returns the tenant's clients, built now when it has none yet or its
// settings changed since. Called with w.mu held.
func (w *WorkerTenants) use(t config.Tenant) (*activities.Tenant, error) {
	// Compared as a whole, secrets included (config.Secret compares by
	// value): a rotated password gets a new client.
	if b, ok := w.built[t.ID]; ok && reflect.DeepEqual(b.settings, t) {
		return b.tenant, nil
	}
	at, err := w.build(t)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: %w", t.ID, err)
	}
	_, rebuilt := w.built[t.ID]
	w.built[t.ID] = &builtTenant{settings: t, tenant: at}
	w.logger.Info("tenant's clients built", "tenant", t.ID, "settingsChanged", rebuilt)
	return at, nil
}

// build makes a tenant's clients from its settings.
func (w *WorkerTenants) build(t config.Tenant) (*activities.Tenant, error) {
	at := &activities.Tenant{
		ID: t.ID,
		// The four-eyes rule is the worker's: applied when each bulk
		// change starts, whoever submitted it and with whatever
		// configuration.
		Approval: submission.NewApprovalRule(t.Approval.Operations, t.Approval.MinDevices, t.Approval.ExpiresAfter),
		Limits:   db.ClaimLimits{ActionsPerLinePerDay: t.Limits.ActionsPerLinePerDay},
		// The setting counts at send time, in the worker.
		DeleteAfterDeactivation: t.ThingSpace.DeleteAfterDeactivation,
	}
	account := t.DefaultAccount()
	if t.ID == config.DefaultTenant && w.cfg.ThingSpace.Account != "" {
		// As before tenants: thingspace.account, wherever it stands in
		// thingspace.accounts.
		account = w.cfg.ThingSpace.Account
	}
	rules := ratelimit.Rules(t.Limits.RequestsPerHour, t.Limits.RequestsWindow, t.Limits.ActivatesPerMinute)
	if len(rules) > 0 {
		at.Limiter = &ratelimit.Limiter{Pool: w.store.Pool, Rules: rules, DefaultAccount: account}
	}
	ts := t.ThingSpace
	tsCfg := thingspace.Config{
		BaseURL:      ts.BaseURL,
		ClientID:     ts.ClientID,
		ClientSecret: ts.ClientSecret.Reveal(),
		Username:     ts.Username,
		Password:     ts.Password.Reveal(),
		AccountName:  account,
		HTTPTimeout:  ts.HTTPTimeout,
		MaxRetries:   transportRetries(ts.MaxRetries),
		Logger:       w.logger,
		// A refusal latches the credentials for every worker and restart,
		// not just this client: each trying once would lock the Verizon
		// account. The key is the base URL, client id and username: one
		// per tenant, and the same for a tenant's rebuilt client.
		Latches: w.store.CredentialLatches(),
	}
	if w.auditor != nil {
		tsCfg.Observer = w.auditor.ThingSpace
	}
	if at.Limiter != nil {
		tsCfg.Limiter = at.Limiter
	}
	tc, err := thingspace.New(tsCfg)
	if err != nil {
		return nil, fmt.Errorf("thingspace client: %w", err)
	}
	at.ThingSpace = tc
	if r := t.Revio; r.Enabled {
		rc := revio.Config{
			BaseURL:         r.BaseURL,
			Login:           r.Login,
			ClientCode:      r.ClientCode,
			Password:        r.Password.Reveal(),
			SubscriptionKey: r.SubscriptionKey.Reveal(),
			CallsPerMinute:  r.CallsPerMinute,
		}
		if w.auditor != nil {
			rc.Observer = w.auditor.Revio
		}
		rv, err := revio.New(rc)
		if err != nil {
			return nil, fmt.Errorf("rev.io client: %w", err)
		}
		at.Revio = rv
	}
	return at, nil
}

// Reload replaces the tenants with those of the configuration load
// returns, already validated; when load fails the tenants stay as they
// were (the error is logged and returned). Clients are rebuilt lazily: a
// tenant whose settings changed gets new ones at its next use (a latched
// refusal of its credentials stays latched: it is the operator's reset
// that clears it), and a removed tenant's are dropped.
func (w *WorkerTenants) Reload(load func() (*config.Config, error)) error {
	cfg, err := load()
	if err != nil {
		w.logger.Error("configuration reload refused: the tenants stay as they were", "error", err)
		return err
	}
	w.mu.Lock()
	before := tenantIDs(w.cfg)
	w.cfg = cfg
	after := tenantIDs(cfg)
	var changed []string
	current := map[string]config.Tenant{}
	for _, t := range cfg.AllTenants() {
		current[t.ID] = t
	}
	for id, b := range w.built {
		t, ok := current[id]
		switch {
		case !ok:
			delete(w.built, id)
		case !reflect.DeepEqual(b.settings, t):
			changed = append(changed, id)
		}
	}
	w.mu.Unlock()
	slices.Sort(changed)
	added, removed := missing(after, before), missing(before, after)
	w.logger.Info("tenants reloaded", "tenants", after, "added", added, "removed", removed, "changed", changed)
	return nil
}

// missing lists the ids of a that b lacks.
func missing(a, b []string) []string {
	var out []string
	for _, id := range a {
		if !slices.Contains(b, id) {
			out = append(out, id)
		}
	}
	return out
}

// workerConfig is how the worker reads its configuration, at start and on
// every reload: the file (or none) and the environment, validated.
func workerConfig(path string) func() (*config.Config, error) {
	return func() (*config.Config, error) {
		cfg, err := config.Load(path)
		if err != nil {
			return nil, err
		}
		if err := cfg.ValidateWorker(); err != nil {
			return nil, err
		}
		return cfg, nil
	}
}

// reloadOnHangup calls reload on every SIGHUP until stop is called (or ctx
// ends). While it runs, SIGHUP no longer ends the process.
func reloadOnHangup(ctx context.Context, reload func()) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				reload()
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		cancel()
		<-done
	}
}

// refusals reads the latched refusal of each tenant's credentials (the
// tenants in configuration order; refused holds those refused).
func (w *WorkerTenants) refusals(ctx context.Context) (ids []string, refused map[string]*thingspace.Refusal, err error) {
	w.mu.Lock()
	clients := map[string]*thingspace.Client{}
	for _, t := range w.cfg.AllTenants() {
		ids = append(ids, t.ID)
		at, err := w.use(t)
		if err != nil {
			// Cannot happen with a validated configuration; its
			// activities say so, readiness does not guess.
			w.logger.Warn("readiness: a tenant's clients cannot be built", "tenant", t.ID, "error", err)
			continue
		}
		clients[t.ID] = at.ThingSpace
	}
	w.mu.Unlock()
	refused = map[string]*thingspace.Refusal{}
	for _, id := range ids {
		c, ok := clients[id]
		if !ok {
			continue
		}
		r, err := c.CredentialRefusal(ctx)
		if err != nil {
			return nil, nil, err
		}
		if r != nil {
			refused[id] = r
		}
	}
	return ids, refused, nil
}

// tenantCredentials is the worker's readiness check of its tenants'
// ThingSpace credentials. A tenant whose refusal is latched sends nothing
// until an operator resets it, but the others work: the worker stays
// ready, with a note naming the tenants refused, and is not ready only
// when every tenant is refused (a single tenant's refusal reads as before
// tenants). It says which tenant, when and with which code, never the
// account, the URL or the username.
func tenantCredentials(w *WorkerTenants) func(context.Context) error {
	return func(ctx context.Context) error {
		ids, refused, err := w.refusals(ctx)
		if err != nil {
			slog.Default().Warn("not ready: credential latch", "error", err)
			return errors.New("postgres is not reachable")
		}
		if len(refused) == 0 {
			return nil
		}
		if len(ids) == 1 {
			return refusalError(refused[ids[0]])
		}
		var each []string
		for _, id := range ids {
			if r, ok := refused[id]; ok {
				each = append(each, "tenant "+id+" at "+refusalWhen(r))
			}
		}
		msg := "thingspace credentials refused for " + strings.Join(each, ", ") +
			"; reset with `starter credentials-reset --tenant ID` once corrected"
		if len(refused) == len(ids) {
			return errors.New(msg)
		}
		return readyButDegraded{msg: msg + "; the other tenants' bulk changes run"}
	}
}

// refusalError is a refused credential's readiness error.
func refusalError(r *thingspace.Refusal) error {
	return fmt.Errorf("thingspace credentials refused at %s; reset with `starter credentials-reset`", refusalWhen(r))
}

// refusalWhen is when and with which code credentials were refused.
func refusalWhen(r *thingspace.Refusal) string {
	code := r.Code
	if code == "" {
		code = fmt.Sprintf("HTTP %d", r.HTTPStatus)
	}
	return fmt.Sprintf("%s (%s)", r.At.UTC().Format(time.RFC3339), code)
}
