package thingspace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Request size limits documented by ThingSpace.
const (
	// MaxDevicesPerAdd is the most devices one /devices/actions/add accepts.
	MaxDevicesPerAdd = 200
	// MaxDevicesPerRequest is the most devices one activate (and, by the
	// client's choice, any other state change) may carry.
	MaxDevicesPerRequest = 10000
)

// Defaults applied by New.
const (
	DefaultBaseURL       = "https://thingspace.verizon.com"
	DefaultHTTPTimeout   = 30 * time.Second
	DefaultMaxRetries    = 2
	DefaultRefreshBefore = 5 * time.Minute
	// MaxRetriesLimit caps Config.MaxRetries: transport retries must stay
	// short because Temporal retry policies multiply them.
	MaxRetriesLimit = 5
	// DefaultOAuthTTL is assumed when the token answer has no usable
	// expires_in (the documented lifetime is one hour).
	DefaultOAuthTTL = time.Hour
	// MaxObservedBody is the most bytes of a body handed to the Observer.
	MaxObservedBody = 64 << 10
)

// Limiter op names, also used as Exchange.Op and Error.Op.
const (
	OpOAuth         = "oauth"
	OpLogin         = "login"
	OpLogout        = "logout"
	OpActivate      = "activate"
	OpSuspend       = "suspend"
	OpRestore       = "restore"
	OpDeactivate    = "deactivate"
	OpAdd           = "add"
	OpContactInfo   = "contactInfo"
	OpList          = "list"
	OpRequestStatus = "requestStatus"
	OpCallbacks     = "callbacks"
)

// Config configures a Client. ClientID, ClientSecret, Username and Password
// are required; everything else has a default.
type Config struct {
	BaseURL      string // default DefaultBaseURL
	ClientID     string // OAuth app key
	ClientSecret string // secret
	Username     string // M2M UWS username
	Password     string // secret
	AccountName  string // default account for requests that need one
	// HTTPTimeout bounds one HTTP attempt (not the time spent in Limiter.Wait).
	HTTPTimeout time.Duration
	// MaxRetries is the number of transport-level retries: 0 means the
	// default (2), a negative value disables them; at most MaxRetriesLimit.
	// Waits are 200ms..2s; longer waits belong to Temporal retry policies.
	MaxRetries int
	// RefreshBefore: refresh the OAuth token this long before it expires
	// (default 5m; never more than half the token's lifetime).
	RefreshBefore time.Duration
	Observer      Observer     // optional audit hook, called once per HTTP attempt
	Limiter       Limiter      // optional pacing hook
	HTTPClient    *http.Client // optional base client (tests); its Transport is used
	Logger        *slog.Logger // optional; never receives secrets or bodies
	// Latches, when set, shares refused credentials with every other
	// client of the same credentials (other workers, later restarts) and
	// is checked before any token request or login. Without it the client
	// latches a refusal for itself only.
	Latches Latches
}

// Exchange is one HTTP attempt, for the audit log. Bodies are redacted (no
// tokens, passwords, client secret or Primary Place of Use) and truncated to
// MaxObservedBody bytes. Headers are not included at all.
type Exchange struct {
	Op           string
	Method       string
	Path         string
	RequestBody  []byte
	ResponseBody []byte
	StatusCode   int    // 0 when no answer was received
	Code         string // ThingSpace error/fault code of a non-2xx answer
	Attempt      int    // 1-based, counting every send of this client call
	Started      time.Time
	Duration     time.Duration
	Err          string // transport error, when no answer was received
}

// Observer receives every HTTP attempt. It runs synchronously on the calling
// goroutine, so it should be quick.
type Observer func(ctx context.Context, x Exchange)

// Limiter paces requests to ThingSpace (per account, possibly across
// processes). Wait is called before every HTTP attempt (transport retries and
// auth calls included) with the op name; it returns nil when the request may
// go, or an error (ctx done, or a *Error with Kind KindRateLimited and
// RetryAfter when the wait would be too long). Throttled is called when
// ThingSpace answers 429 (or the gateway's throttling fault), with its
// Retry-After (0 when absent).
type Limiter interface {
	Wait(ctx context.Context, op string) error
	Throttled(ctx context.Context, op string, retryAfter time.Duration)
}

// withDefaults validates cfg and fills defaults. Errors name the offending
// field and never carry a value, since several fields are secrets.
func (cfg Config) withDefaults() (Config, error) {
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"ClientID", cfg.ClientID},
		{"ClientSecret", cfg.ClientSecret},
		{"Username", cfg.Username},
		{"Password", cfg.Password},
	} {
		if strings.TrimSpace(f.v) == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return cfg, fmt.Errorf("thingspace: config: missing %s", strings.Join(missing, ", "))
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return cfg, errors.New("thingspace: config: BaseURL must be an absolute http(s) URL")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return cfg, errors.New("thingspace: config: BaseURL must not carry user info, query or fragment")
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	switch {
	case cfg.HTTPTimeout == 0:
		cfg.HTTPTimeout = DefaultHTTPTimeout
	case cfg.HTTPTimeout < 0:
		return cfg, errors.New("thingspace: config: HTTPTimeout must not be negative")
	}
	switch {
	case cfg.MaxRetries == 0:
		cfg.MaxRetries = DefaultMaxRetries
	case cfg.MaxRetries < 0:
		cfg.MaxRetries = 0
	case cfg.MaxRetries > MaxRetriesLimit:
		return cfg, fmt.Errorf("thingspace: config: MaxRetries must be at most %d", MaxRetriesLimit)
	}
	switch {
	case cfg.RefreshBefore == 0:
		cfg.RefreshBefore = DefaultRefreshBefore
	case cfg.RefreshBefore < 0:
		return cfg, errors.New("thingspace: config: RefreshBefore must not be negative")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}
