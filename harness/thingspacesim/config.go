package thingspacesim

import (
	"cmp"
	"log/slog"
	"time"
)

// Credentials and account used when Config leaves them empty, so that a
// zero Config gives a usable simulator for demos and tests. They are not
// secrets: anyone can read them here.
const (
	DefaultClientID     = "sim-client-id"
	DefaultClientSecret = "sim-client-secret"
	DefaultUsername     = "sim-user"
	DefaultPassword     = "sim-password"
	DefaultAccount      = "0000123456-00001"
)

// Config configures a Simulator. Zero values take the documented defaults.
type Config struct {
	ClientID, ClientSecret string        // OAuth client credentials accepted
	Username, Password     string        // M2M (UWS) login accepted
	Accounts               []string      // account names; first is the default; default {DefaultAccount}
	OAuthTokenTTL          time.Duration // default 1h; same token returned until it expires
	SessionIdleTimeout     time.Duration // default 20m sliding
	MaxFailedLogins        int           // default 5 consecutive → locked (login refused even with good creds)
	// CompletionDelay: accepted action → device state applied + callback
	// sent; default 2s; negative → immediate.
	CompletionDelay       time.Duration
	CompletionJitter      time.Duration // random extra 0..jitter per device
	CallbackRetryInterval time.Duration // default 5m (docs); tests use ms; negative → immediate
	CallbackMaxAttempts   int           // default 4
	CallbackHTTPTimeout   time.Duration // default 10s
	// CallbackConcurrency is how many callback POSTs may be in flight at
	// once (default 8). With 1, callbacks reach the listener in dispatch
	// order, which tests of ReorderCallbacks rely on.
	CallbackConcurrency int
	Limits              Limits
	Faults              Faults
	// DisallowSuspendToDeactivate settles a reference conflict: S-states
	// lists only ACTIVE after SUSPEND, the older L-cds matrix allows
	// suspend→deactivate. Default (false) follows L-cds.
	DisallowSuspendToDeactivate bool
	Seed                        int64        // randomness seed (fault decisions, jitter); 0 → time-based
	Logger                      *slog.Logger // optional; never receives secrets

	// RefuseWholeRequest makes a multi-device action refuse the whole
	// request synchronously (HTTP 400 with the device-level code, nothing
	// applied, no callback) when any of its devices would be refused,
	// instead of accepting it and sending that device a fault callback. The
	// reference leaves open when ThingSpace detects such refusals; this is
	// the harsher reading, for testing how a client isolates bad devices.
	RefuseWholeRequest bool

	// ListCursorPaging makes a device-list answer to a request that carries
	// largestDeviceIdSeen carry a top-level largestDeviceIdSeen: the last
	// internal id of the page, to send back for the next one. The published
	// answer model (AccountDeviceListResult: devices, hasMoreData) has no
	// such member, so by default the answer never has it and clients page
	// by "earliest"; this is the other reading of S-list's "recommended"
	// cursor paging, for testing a client that follows such a cursor.
	ListCursorPaging bool

	// CompletionDelayFor: ICCID → the completion delay of that device's
	// changes instead of CompletionDelay and its jitter: a device that
	// stays pending while the others complete.
	CompletionDelayFor map[string]time.Duration
}

// Limits are the documented (and one undocumented) ThingSpace limits.
type Limits struct {
	// Default 100 (doc); negative = off.
	ActivateRequestsPerMinute int `json:"activate_requests_per_minute"`
	// Per account, all M2M+auth endpoints; 0 = off (not documented).
	RequestsPerHour int `json:"requests_per_hour"`
	// Default 10000 (activate/suspend/restore/deactivate/contactInfo).
	MaxDevicesPerRequest int `json:"max_devices_per_request"`
	// Default 200.
	MaxDevicesPerAdd int `json:"max_devices_per_add"`
	// Default 5; negative = off; rolling 24h per device.
	ActionsPerLinePerDay int `json:"actions_per_line_per_day"`
}

// Faults inject failures. All rates are fractions in [0,1].
type Faults struct {
	// ErrorRate: fraction of API requests (not /admin) answered
	// 500/502/503 before any processing.
	ErrorRate     float64
	Latency       time.Duration // added before every API answer
	LatencyJitter time.Duration // random extra 0..jitter
	// TimeoutRate: fraction of state-change requests that are applied but
	// answered only after StallFor.
	TimeoutRate           float64
	StallFor              time.Duration
	DropCallbackRate      float64 // fraction of device callbacks never delivered (no attempt at all)
	DuplicateCallbackRate float64 // fraction of device callbacks delivered twice
	LateCallbackRate      float64 // fraction delayed by LateCallbackDelay extra
	LateCallbackDelay     time.Duration
	ReorderCallbacks      bool // deliver one request's device callbacks in random order
	// GatewayAfterApplyRate: fraction of accepted state changes (activate,
	// suspend, restore, deactivate, contactInfo, add) that are applied and
	// whose answer the gateway in front of ThingSpace (WSO2) replaces with
	// a 502 or 504 HTML page, no ThingSpace error body: the backend did the
	// work, the client only hears that something failed on the way.
	// Counted in Stats.GatewayAfterApply.
	GatewayAfterApplyRate float64
}

const (
	defaultOAuthTTL          = time.Hour
	defaultSessionIdle       = 20 * time.Minute
	defaultMaxFailedLogins   = 5
	defaultCompletionDelay   = 2 * time.Second
	defaultRetryInterval     = 5 * time.Minute
	defaultMaxAttempts       = 4
	defaultCallbackTimeout   = 10 * time.Second
	defaultCallbackWorkers   = 8
	defaultActivatePerMinute = 100
	defaultMaxDevicesPerReq  = 10000
	defaultMaxDevicesPerAdd  = 200
	defaultActionsPerDay     = 5
)

// withDefaults returns cfg with every zero value replaced by its default.
func (cfg Config) withDefaults() Config {
	cfg.ClientID = cmp.Or(cfg.ClientID, DefaultClientID)
	cfg.ClientSecret = cmp.Or(cfg.ClientSecret, DefaultClientSecret)
	cfg.Username = cmp.Or(cfg.Username, DefaultUsername)
	cfg.Password = cmp.Or(cfg.Password, DefaultPassword)
	var accounts []string
	seen := map[string]bool{}
	for _, a := range cfg.Accounts {
		if a != "" && !seen[a] {
			seen[a] = true
			accounts = append(accounts, a)
		}
	}
	if len(accounts) == 0 {
		accounts = []string{DefaultAccount}
	}
	cfg.Accounts = accounts
	cfg.OAuthTokenTTL = positiveOr(cfg.OAuthTokenTTL, defaultOAuthTTL)
	cfg.SessionIdleTimeout = positiveOr(cfg.SessionIdleTimeout, defaultSessionIdle)
	cfg.MaxFailedLogins = positiveOr(cfg.MaxFailedLogins, defaultMaxFailedLogins)
	cfg.CompletionDelay = orDefault(cfg.CompletionDelay, defaultCompletionDelay, 0)
	cfg.CallbackRetryInterval = orDefault(cfg.CallbackRetryInterval, defaultRetryInterval, 0)
	cfg.CompletionJitter = max(cfg.CompletionJitter, 0)
	cfg.CallbackMaxAttempts = positiveOr(cfg.CallbackMaxAttempts, defaultMaxAttempts)
	cfg.CallbackHTTPTimeout = positiveOr(cfg.CallbackHTTPTimeout, defaultCallbackTimeout)
	cfg.CallbackConcurrency = positiveOr(cfg.CallbackConcurrency, defaultCallbackWorkers)
	cfg.Limits = cfg.Limits.withDefaults()
	cfg.Faults = cfg.Faults.sanitized()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg
}

// positiveOr gives def for a setting that must be positive to make sense.
func positiveOr[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// orDefault maps 0 (not set) to def and any negative value to
// off, so that callers can ask for "no delay" or "no limit" explicitly.
func orDefault[T int | time.Duration](v, def, off T) T {
	switch {
	case v == 0:
		return def
	case v < 0:
		return off
	}
	return v
}

// withDefaults fills zero limits. The result is what GET /admin/limits
// shows: a disabled limit is shown as -1 (or 0 for RequestsPerHour), so
// that PUTting it back keeps it disabled.
func (l Limits) withDefaults() Limits {
	l.ActivateRequestsPerMinute = orDefault(l.ActivateRequestsPerMinute, defaultActivatePerMinute, -1)
	l.RequestsPerHour = max(l.RequestsPerHour, 0)
	l.MaxDevicesPerRequest = positiveOr(l.MaxDevicesPerRequest, defaultMaxDevicesPerReq)
	l.MaxDevicesPerAdd = positiveOr(l.MaxDevicesPerAdd, defaultMaxDevicesPerAdd)
	l.ActionsPerLinePerDay = orDefault(l.ActionsPerLinePerDay, defaultActionsPerDay, -1)
	return l
}

// sanitized clamps rates to [0,1] and negative durations to 0, so that a
// bad admin PUT cannot make the fault logic misbehave.
func (f Faults) sanitized() Faults {
	f.ErrorRate = clampRate(f.ErrorRate)
	f.TimeoutRate = clampRate(f.TimeoutRate)
	f.GatewayAfterApplyRate = clampRate(f.GatewayAfterApplyRate)
	f.DropCallbackRate = clampRate(f.DropCallbackRate)
	f.DuplicateCallbackRate = clampRate(f.DuplicateCallbackRate)
	f.LateCallbackRate = clampRate(f.LateCallbackRate)
	for _, d := range []*time.Duration{&f.Latency, &f.LatencyJitter, &f.StallFor, &f.LateCallbackDelay} {
		if *d < 0 {
			*d = 0
		}
	}
	return f
}

func clampRate(r float64) float64 {
	if r != r || r < 0 { // NaN or negative
		return 0
	}
	if r > 1 {
		return 1
	}
	return r
}
