// Package config loads the product's settings: one YAML file, overridden by
// environment variables named TSBULK_<SECTION>_<KEY> (for example
// TSBULK_THINGSPACE_CLIENT_ID). Secrets are never read from the YAML file:
// they come from the environment, or from a file named by a *_file setting.
package config

import (
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/viper"

	"github.com/iot-ops/tsbulk/workflows/api"
)

// EnvPrefix prefixes every environment variable the product reads.
const EnvPrefix = "TSBULK"

// Secret is a setting that must never be printed: it formats as
// [REDACTED]. Call Reveal to use it.
type Secret string

func (s Secret) String() string { return "[REDACTED]" }

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return "[REDACTED]" }

// LogValue keeps slog from printing the value.
func (s Secret) LogValue() slog.Value { return slog.StringValue("[REDACTED]") }

// MarshalText keeps encoders from printing the value.
func (s Secret) MarshalText() ([]byte, error) { return []byte("[REDACTED]"), nil }

// Reveal returns the secret's value, to hand to the client that needs it.
func (s Secret) Reveal() string { return string(s) }

// Config is every setting of the product.
type Config struct {
	// Dev allows plain http to ThingSpace, Rev.io and for the callback URL
	// registered with ThingSpace, for the simulators on one machine (the
	// demo, the tests, the chaos suite, the benchmark). Off, those must be
	// https: credentials, tokens and PPU cross them.
	Dev        bool       `mapstructure:"dev"`
	Temporal   Temporal   `mapstructure:"temporal"`
	Database   Database   `mapstructure:"database"`
	ThingSpace ThingSpace `mapstructure:"thingspace"`
	Callbacks  Callbacks  `mapstructure:"callbacks"`
	Revio      Revio      `mapstructure:"revio"`
	Bulk       Bulk       `mapstructure:"bulk"`
	Limits     Limits     `mapstructure:"limits"`
	Worker     Worker     `mapstructure:"worker"`
	Submission Submission `mapstructure:"submission"`
	Approval   Approval   `mapstructure:"approval"`
	Log        Log        `mapstructure:"log"`
	// CodecServer is `worker codec-server`'s (codec_server.*).
	CodecServer CodecServer `mapstructure:"codec_server"`
	// Tenants are the tenants named under tenants.<id> (config/tenants.go);
	// AllTenants adds the default tenant of the top-level settings.
	Tenants []Tenant `mapstructure:"-"`
	// Notifications are where events a person acts on are sent
	// (notifications.*, config/notify.go).
	Notifications Notifications `mapstructure:"notifications"`
}

// Approval is the four-eyes rule: a bulk change with at least MinDevices
// changes of one of the Operations waits for a second operator's approval
// (an empty list, or "none" where a list cannot be empty, such as an
// environment variable, turns it off), and is cancelled after ExpiresAfter
// without one.
type Approval struct {
	Operations   []string      `mapstructure:"operations"`
	MinDevices   int           `mapstructure:"min_devices"`
	ExpiresAfter time.Duration `mapstructure:"expires_after"`
}

// Submission holds the settings of bulk changes submitted through Temporal
// (workflow SubmitBulkChange, from the CLI or the Web UI's start form).
type Submission struct {
	// InboxDirs are the only directories whose files such a submission may
	// name: the input of a workflow names a file, never carries its PPU.
	InboxDirs []string `mapstructure:"inbox_dirs"`
	// MaxFileBytes is the largest bulk change file read, by the worker
	// (from an inbox) and by the starter: a bigger one is refused as it is
	// read, before it fills the memory of the process reading it.
	MaxFileBytes int64 `mapstructure:"max_file_bytes"`
}

// Temporal says where the Temporal server is and how to authenticate to
// it. Each setting left empty takes its value from Temporal's own
// environment configuration, as every Temporal tool does (TEMPORAL_ADDRESS,
// TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*, the TOML profile of
// TEMPORAL_CONFIG_FILE and TEMPORAL_PROFILE); a setting given here wins over
// it (setup.TemporalOptions, deploy/README.md).
type Temporal struct {
	// Address and Namespace: when neither is set here nor in Temporal's
	// environment configuration, 127.0.0.1:7233 and default.
	Address   string `mapstructure:"address"`
	Namespace string `mapstructure:"namespace"`
	// Codec encrypts the payloads of histories (temporal.codec.*).
	Codec TemporalCodec `mapstructure:"codec"`
	// UIURL is the Temporal Web UI's address, for the links the starter
	// prints ("" prints none: the UI's address is not known).
	UIURL string      `mapstructure:"ui_url"`
	TLS   TemporalTLS `mapstructure:"tls"`
	// APIKey is sent as "authorization: Bearer <key>" on every call
	// (Temporal Cloud's API keys); it turns TLS on unless tls.enabled is
	// false. From TSBULK_TEMPORAL_API_KEY or temporal.api_key_file.
	APIKey Secret `mapstructure:"-"`
}

// TemporalTLS is TLS to the Temporal frontend: files read when the process
// connects.
type TemporalTLS struct {
	// Enabled: nil (not set) leaves it to the other settings: any file or
	// server name here, an API key, or Temporal's environment configuration
	// turns TLS on. true turns it on (the system's roots verify the server
	// without CAFile); false turns it off, whatever the environment says.
	Enabled *bool `mapstructure:"enabled"`
	// CAFile is the PEM file of the CAs the server's certificate must chain
	// to, instead of the system's roots (a self-hosted server's own CA).
	CAFile string `mapstructure:"ca_file"`
	// CertFile and KeyFile (both or neither) are the client certificate
	// and its key presented to a server that requires mutual TLS.
	CertFile string `mapstructure:"cert_file"`
	KeyFile  string `mapstructure:"key_file"`
	// ServerName is the name the server's certificate is checked against
	// (and sent as SNI) when it is not the host of the address.
	ServerName string `mapstructure:"server_name"`
}

// Set reports whether any TLS setting is given here.
func (t TemporalTLS) Set() bool {
	return t.Enabled != nil || t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != ""
}

// Database says where PostgreSQL is. The URL may hold a password, so it is
// treated as a secret when shown.
type Database struct {
	URL      Secret `mapstructure:"-"`
	MaxConns int32  `mapstructure:"max_conns"`
}

// ThingSpace holds the ThingSpace M2M API settings.
type ThingSpace struct {
	BaseURL      string `mapstructure:"base_url"`
	ClientID     string `mapstructure:"client_id"`
	ClientSecret Secret `mapstructure:"-"`
	Username     string `mapstructure:"username"`
	Password     Secret `mapstructure:"-"`
	Account      string `mapstructure:"account"`
	// Accounts are the default tenant's other accounts (Account first):
	// set, the default tenant takes only these; empty, any account no
	// named tenant lists.
	Accounts    []string      `mapstructure:"accounts"`
	HTTPTimeout time.Duration `mapstructure:"http_timeout"`
	MaxRetries  int           `mapstructure:"max_retries"`
	// DeleteAfterDeactivation sends deactivations with
	// deleteAfterDeactivation: ThingSpace removes each device from the
	// account's inventory once deactivated, as the predecessor did. A
	// file's delete_after_deactivation column overrides it per device. The
	// worker's value is the one that counts, read when it sends the
	// request.
	DeleteAfterDeactivation bool `mapstructure:"delete_after_deactivation"`
}

// Callbacks holds the callback receiver's settings.
type Callbacks struct {
	// Enabled false means device changes are confirmed by polling only.
	Enabled bool `mapstructure:"enabled"`
	// Listen is where ThingSpace's callbacks are received.
	Listen string `mapstructure:"listen"`
	Path   string `mapstructure:"path"`
	// AdminListen serves /healthz, /readyz and /metrics (not exposed to
	// ThingSpace).
	AdminListen string `mapstructure:"admin_listen"`
	// PublicURL is the URL registered with ThingSpace.
	PublicURL    string `mapstructure:"public_url"`
	Username     string `mapstructure:"username"`
	Password     Secret `mapstructure:"-"`
	MaxBodyBytes int64  `mapstructure:"max_body_bytes"`
	// TLSCertFile and TLSKeyFile (both or neither): the receiver serves
	// HTTPS itself (TLS 1.2 at least) instead of behind a proxy that ends
	// TLS. The files are read at start.
	TLSCertFile string `mapstructure:"tls_cert_file"`
	TLSKeyFile  string `mapstructure:"tls_key_file"`
	// AllowedSources are the networks (CIDRs, or single addresses)
	// callbacks may come from; empty: any. Others are refused 403.
	AllowedSources []string `mapstructure:"allowed_sources"`
	// TrustedProxies are the networks of the proxies in front of the
	// receiver whose X-Forwarded-For is believed (see callbacks.Receiver).
	TrustedProxies []string `mapstructure:"trusted_proxies"`
	// MaxConcurrent bounds the callbacks handled at once; more are
	// answered 503 with Retry-After: 1.
	MaxConcurrent int `mapstructure:"max_concurrent"`
}

// ParseNetworks reads a list of CIDRs or single addresses (a /32 or
// /128), naming the setting and the entry of the first it cannot read.
func ParseNetworks(key string, list []string) ([]netip.Prefix, error) {
	var nets []netip.Prefix
	for i, s := range list {
		s = strings.TrimSpace(s)
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("%s (%s) entry %d: %q is not a CIDR (such as 192.0.2.0/24) or an address",
					key, EnvName(key), i+1, s)
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		nets = append(nets, p.Masked())
	}
	return nets, nil
}

// Revio holds the Rev.io billing API settings.
type Revio struct {
	Enabled                bool   `mapstructure:"enabled"`
	BaseURL                string `mapstructure:"base_url"`
	Login                  string `mapstructure:"login"`
	ClientCode             string `mapstructure:"client_code"`
	Password               Secret `mapstructure:"-"`
	SubscriptionKey        Secret `mapstructure:"-"`
	CallsPerMinute         int    `mapstructure:"calls_per_minute"`
	DisconnectOnDeactivate bool   `mapstructure:"disconnect_on_deactivate"`
	// RetryFor is how long a billing step keeps retrying Rev.io's
	// transient errors (5xx, 429, timeouts) before its billing is recorded
	// ERROR (then `starter billing-retry`).
	RetryFor time.Duration `mapstructure:"retry_for"`
	// Customers and Plans: the default tenant's mappings (TenantRevio).
	Customers []CustomerMapping `mapstructure:"customers"`
	Plans     []PlanMapping     `mapstructure:"plans"`
}

// Bulk holds the defaults a bulk change is submitted with.
type Bulk struct {
	BatchSize    int `mapstructure:"batch_size"`
	Window       int `mapstructure:"window"`
	StartsPerRun int `mapstructure:"starts_per_run"`
	// ShardSize: a bulk change of more devices than this runs as a tree of
	// shard workflows of at most this many devices each, ShardsAtOnce of
	// them at a time (one parent execution caps throughput: every child
	// start and result goes through it). 0: never sharded.
	ShardSize       int           `mapstructure:"shard_size"`
	ShardsAtOnce    int           `mapstructure:"shards_at_once"`
	CallbackTimeout time.Duration `mapstructure:"callback_timeout"`
	ConfirmDeadline time.Duration `mapstructure:"confirm_deadline"`
	PollInterval    time.Duration `mapstructure:"poll_interval"`
	PollMaxInterval time.Duration `mapstructure:"poll_max_interval"`
	DefaultSite     string        `mapstructure:"default_site"`
	// DefaultSiteAssignment gives DefaultSite at the end to the devices
	// left in inventory or pending state (the predecessor's
	// DefaultSiteAssignment, on by default).
	DefaultSiteAssignment bool `mapstructure:"default_site_assignment"`
	// StallCheck: a bulk change that hears from none of its devices for
	// this long asks Temporal whether their workflows still run.
	StallCheck time.Duration `mapstructure:"stall_check"`
}

// Limits are ThingSpace's limits for the account.
type Limits struct {
	// RequestsPerHour is the account's budget of requests of every kind
	// (authentication, state changes, lists, polls) in any rolling
	// RequestsWindow, enforced across all workers; 0 = no limit. Verizon
	// publishes no such figure: the default, 1,000 an hour, is the
	// predecessor system's budget, kept as a conservative start. The
	// published limits are 100 activate requests a minute
	// (ActivatesPerMinute), 10,000 devices per request and 200 per add
	// (bulk.batch_size), and 5 state changes per line per day
	// (ActionsPerLinePerDay).
	RequestsPerHour int `mapstructure:"requests_per_hour"`
	// RequestsWindow is the window RequestsPerHour applies to: an hour;
	// tests shorten it.
	RequestsWindow       time.Duration `mapstructure:"requests_window"`
	ActivatesPerMinute   int           `mapstructure:"activates_per_minute"`
	ActionsPerLinePerDay int           `mapstructure:"actions_per_line_per_day"`
}

// Worker holds the worker process's settings.
type Worker struct {
	// Listen serves /healthz, /readyz and /metrics.
	Listen string `mapstructure:"listen"`
	// EmbedCallbackReceiver runs the callback receiver inside the worker
	// process (the demo does; production runs it on its own).
	EmbedCallbackReceiver   bool `mapstructure:"embed_callback_receiver"`
	MaxConcurrentActivities int  `mapstructure:"max_concurrent_activities"`
	// WorkflowTaskPollers and ActivityTaskPollers: more pollers pick up
	// tasks sooner; the SDK's default of 2 halves the throughput of bulk
	// changes on a busy server (measured in docs/benchmarks.md).
	WorkflowTaskPollers int `mapstructure:"workflow_task_pollers"`
	ActivityTaskPollers int `mapstructure:"activity_task_pollers"`
	PollBatchThreshold  int `mapstructure:"poll_batch_threshold"`
	// PollMaxRequests caps the ThingSpace requests of one polling cycle of
	// an account (device-list pages and lookups, retries of the cycle
	// included); devices not reached wait for the next cycle.
	PollMaxRequests int `mapstructure:"poll_max_requests"`
	// PollerSignalsPerRun: an account poller run continues as new once it
	// has received this many poll requests (signals). It must stay below
	// the Temporal server's history.maximumSignalsPerExecution (10,000 by
	// default): beyond that the server refuses the signals, and every
	// device handed to polling would wait for the run to end.
	PollerSignalsPerRun int `mapstructure:"poller_signals_per_run"`
	// ReconcileSettle: after a request whose outcome is unknown (answer
	// lost, or a 5xx), a device showing no trace of it at ThingSpace is
	// sent again only this long after that attempt (callbacks of refused
	// devices need time).
	ReconcileSettle time.Duration `mapstructure:"reconcile_settle"`
	// DeadlockDetectionTimeout: a workflow task whose code runs this long
	// without yielding is failed as a potential deadlock (the SDK's 1 s).
	// A CPU-starved host (the tests, under the race detector) needs more.
	DeadlockDetectionTimeout time.Duration `mapstructure:"deadlock_detection_timeout"`
	// StopTimeout: on SIGTERM the worker stops taking tasks and lets the
	// activities it runs finish for this long (a ThingSpace call, a Rev.io
	// create) before cancelling them. Keep it below the container's grace
	// period (compose stop_grace_period, Kubernetes
	// terminationGracePeriodSeconds), or the kill comes first.
	StopTimeout time.Duration `mapstructure:"stop_timeout"`
	// StickyCacheSize is how many workflow executions the worker process
	// keeps in memory between their workflow tasks (the SDK's sticky cache,
	// one per process; 0 keeps the SDK's default of 10,000). An execution
	// not in the cache is replayed from its history on its next task. The
	// default, 1,000, is twice a bulk change's window: every child in
	// flight and its parent stay cached, and memory is bounded whatever
	// the size of the bulk change (docs/benchmarks.md, "Worker memory").
	StickyCacheSize int `mapstructure:"sticky_cache_size"`
}

// Log holds logging settings.
type Log struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
}

// secretSettings maps each secret to its key; the value comes from
// TSBULK_<KEY> or from the file named by <key>_file.
var secretSettings = []string{
	"database.url",
	"temporal.api_key",
	"thingspace.client_secret",
	"thingspace.password",
	"callbacks.password",
	"codec_server.token",
	"revio.password",
	"revio.subscription_key",
}

func defaults(v *viper.Viper) {
	v.SetDefault("dev", false)
	// "" takes Temporal's environment configuration, then 127.0.0.1:7233
	// and default (setup.TemporalOptions).
	v.SetDefault("temporal.address", "")
	v.SetDefault("temporal.namespace", "")
	v.SetDefault("temporal.ui_url", "")
	// No default for temporal.tls.enabled: unset is not false (see
	// TemporalTLS); bound so that TSBULK_TEMPORAL_TLS_ENABLED is read.
	_ = v.BindEnv("temporal.tls.enabled")
	v.SetDefault("temporal.tls.ca_file", "")
	v.SetDefault("temporal.tls.cert_file", "")
	v.SetDefault("temporal.tls.key_file", "")
	v.SetDefault("temporal.tls.server_name", "")
	v.SetDefault("database.max_conns", 20)
	v.SetDefault("thingspace.base_url", "https://thingspace.verizon.com")
	v.SetDefault("thingspace.client_id", "")
	v.SetDefault("thingspace.username", "")
	v.SetDefault("thingspace.account", "")
	v.SetDefault("thingspace.http_timeout", 30*time.Second)
	v.SetDefault("thingspace.max_retries", 2)
	v.SetDefault("thingspace.delete_after_deactivation", true)
	v.SetDefault("callbacks.enabled", true)
	v.SetDefault("callbacks.listen", "127.0.0.1:9001")
	v.SetDefault("callbacks.path", "/thingspace/callbacks")
	v.SetDefault("callbacks.admin_listen", "127.0.0.1:9092")
	v.SetDefault("callbacks.public_url", "")
	v.SetDefault("callbacks.username", "")
	v.SetDefault("callbacks.max_body_bytes", 1<<20)
	v.SetDefault("callbacks.tls_cert_file", "")
	v.SetDefault("callbacks.tls_key_file", "")
	v.SetDefault("callbacks.allowed_sources", []string{})
	v.SetDefault("callbacks.trusted_proxies", []string{})
	v.SetDefault("callbacks.max_concurrent", 64)
	v.SetDefault("revio.enabled", false)
	v.SetDefault("revio.base_url", "https://api.revioapi.com")
	v.SetDefault("revio.login", "")
	v.SetDefault("revio.client_code", "")
	v.SetDefault("revio.calls_per_minute", 500)
	v.SetDefault("revio.retry_for", time.Hour)
	v.SetDefault("revio.disconnect_on_deactivate", false)
	v.SetDefault("bulk.batch_size", 10000)
	v.SetDefault("bulk.window", 500)
	v.SetDefault("bulk.starts_per_run", 500)
	v.SetDefault("bulk.shard_size", 2000)
	v.SetDefault("bulk.shards_at_once", 5)
	v.SetDefault("bulk.callback_timeout", 30*time.Minute)
	v.SetDefault("bulk.confirm_deadline", 24*time.Hour)
	v.SetDefault("bulk.poll_interval", 5*time.Minute)
	v.SetDefault("bulk.poll_max_interval", 30*time.Minute)
	v.SetDefault("bulk.default_site", "")
	v.SetDefault("bulk.default_site_assignment", true)
	v.SetDefault("bulk.stall_check", 10*time.Minute)
	v.SetDefault("limits.requests_per_hour", 1000)
	v.SetDefault("limits.requests_window", time.Hour)
	v.SetDefault("limits.activates_per_minute", 100)
	v.SetDefault("limits.actions_per_line_per_day", 5)
	v.SetDefault("worker.listen", "127.0.0.1:9090")
	v.SetDefault("worker.embed_callback_receiver", false)
	v.SetDefault("worker.max_concurrent_activities", 100)
	v.SetDefault("worker.workflow_task_pollers", 8)
	v.SetDefault("worker.activity_task_pollers", 8)
	v.SetDefault("worker.poll_batch_threshold", 20)
	v.SetDefault("worker.poll_max_requests", 20)
	v.SetDefault("worker.poller_signals_per_run", 5000)
	v.SetDefault("worker.reconcile_settle", 2*time.Minute)
	v.SetDefault("worker.deadlock_detection_timeout", time.Second)
	v.SetDefault("worker.stop_timeout", 20*time.Second)
	v.SetDefault("worker.sticky_cache_size", 1000)
	v.SetDefault("submission.inbox_dirs", []string{})
	v.SetDefault("submission.max_file_bytes", 64<<20)
	v.SetDefault("approval.operations", []string{"deactivate"})
	v.SetDefault("approval.min_devices", 1)
	v.SetDefault("approval.expires_after", 72*time.Hour)
	v.SetDefault("log.level", "info")
	v.SetDefault("log.format", "text")
	v.SetDefault("temporal.codec.keys_dir", "")
	v.SetDefault("temporal.codec.current_key_id", "")
	v.SetDefault("codec_server.listen", "127.0.0.1:9093")
	v.SetDefault("codec_server.allowed_origin", "")
	v.SetDefault("codec_server.tls_cert_file", "")
	v.SetDefault("codec_server.tls_key_file", "")
	notificationDefaults(v)
}

// Load reads the YAML file at path ("" = none: defaults and environment
// only) and the environment.
func Load(path string) (*Config, error) {
	v := viper.New()
	defaults(v)
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	if path != "" {
		v.SetConfigFile(path)
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("read config file %s: %w", path, err)
		}
		if inFile, err := fileValue(path, "database.url"); err != nil {
			return nil, err
		} else if dsnHasPassword(inFile) {
			// The value is not quoted back: it holds the password.
			return nil, fmt.Errorf(
				"database.url in the config file %s carries a password: set %s (or database.url_file) instead, "+
					"or keep only a URL without password (trust, peer or certificate authentication) in the file",
				path, EnvName("database.url"))
		}
		for _, key := range secretSettings {
			if v.InConfig(key) && key != "database.url" {
				return nil, fmt.Errorf(
					"%s must not be in the config file %s: set %s or %s_file instead",
					key,
					path,
					EnvName(key),
					key,
				)
			}
		}
	}
	var cfg Config
	if err := v.Unmarshal(&cfg); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	// An empty TSBULK_APPROVAL_OPERATIONS reads as unset (the default
	// applies): "none" is how the environment turns approval off.
	if len(cfg.Approval.Operations) == 1 && strings.EqualFold(strings.TrimSpace(cfg.Approval.Operations[0]), "none") {
		cfg.Approval.Operations = nil
	}
	if err := cfg.loadTenants(v, path); err != nil {
		return nil, err
	}
	if err := cfg.loadNotifications(v, path); err != nil {
		return nil, err
	}
	secrets := map[string]*Secret{
		"database.url":             &cfg.Database.URL,
		"temporal.api_key":         &cfg.Temporal.APIKey,
		"thingspace.client_secret": &cfg.ThingSpace.ClientSecret,
		"thingspace.password":      &cfg.ThingSpace.Password,
		"callbacks.password":       &cfg.Callbacks.Password,
		"codec_server.token":       &cfg.CodecServer.Token,
		"revio.password":           &cfg.Revio.Password,
		"revio.subscription_key":   &cfg.Revio.SubscriptionKey,
	}
	for _, key := range secretSettings {
		val, err := readSecret(v, key)
		if err != nil {
			return nil, err
		}
		*secrets[key] = Secret(val)
	}
	return &cfg, nil
}

// fileValue is a setting as the file alone has it ("" when absent): v's
// value would be the environment's when both set it.
func fileValue(path, key string) (string, error) {
	f := viper.New()
	f.SetConfigFile(path)
	if err := f.ReadInConfig(); err != nil {
		return "", fmt.Errorf("read config file %s: %w", path, err)
	}
	return f.GetString(key), nil
}

// dsnHasPassword reports whether a PostgreSQL connection string, as a URL
// (postgres://user:pw@host/db, or ?password=) or as key=value pairs
// (password=...), carries a password.
func dsnHasPassword(dsn string) bool {
	dsn = strings.TrimSpace(dsn)
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			// Unreadable: it may hold a password; refusing is the safe side.
			return true
		}
		if _, set := u.User.Password(); set {
			return true
		}
		return u.Query().Has("password")
	}
	for _, field := range strings.Fields(dsn) {
		if k, _, ok := strings.Cut(field, "="); ok && strings.EqualFold(strings.TrimSpace(k), "password") {
			return true
		}
	}
	return false
}

// FileFlag defines the --config flag of a command on fs: the YAML file to
// load, by default the one TSBULK_CONFIG names.
func FileFlag(fs *flag.FlagSet) *string {
	return fs.String(
		"config",
		os.Getenv(EnvPrefix+"_CONFIG"),
		"YAML configuration file (environment variables TSBULK_* override it)",
	)
}

// EnvName is the environment variable of a setting.
func EnvName(key string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

func readSecret(v *viper.Viper, key string) (string, error) {
	if val := os.Getenv(EnvName(key)); val != "" {
		return val, nil
	}
	fileKey := key + "_file"
	path := os.Getenv(EnvName(fileKey))
	if path == "" {
		path = v.GetString(fileKey)
	}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("%s: read secret file: %w", fileKey, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if key == "database.url" {
		// The database URL is also allowed in the file when it carries no
		// password (trust or peer authentication).
		return v.GetString(key), nil
	}
	return "", nil
}

// BulkChangeOptions are the settings a bulk change submitted now runs with
// (fixed at submission, so a running bulk change keeps them).
func (c *Config) BulkChangeOptions() api.Options {
	b := c.Bulk
	return api.Options{
		Timing: api.Timing{
			CallbackTimeout: b.CallbackTimeout,
			ConfirmDeadline: b.ConfirmDeadline,
			PollInterval:    b.PollInterval,
			PollMaxInterval: b.PollMaxInterval,
			StallCheck:      b.StallCheck,
			BillingPatience: c.Revio.RetryFor,
		},
		CallbacksEnabled:              c.Callbacks.Enabled,
		Window:                        b.Window,
		StartsPerRun:                  b.StartsPerRun,
		ShardSize:                     b.ShardSize,
		ShardsAtOnce:                  b.ShardsAtOnce,
		DefaultSite:                   c.SiteForBulkChanges(),
		BillingEnabled:                c.Revio.Enabled,
		DisconnectBillingOnDeactivate: c.Revio.DisconnectOnDeactivate,
	}
}

// SiteForBulkChanges is the default site a new bulk change gives its
// inventory and pending devices: "" when assignment is off.
func (c *Config) SiteForBulkChanges() string {
	if !c.Bulk.DefaultSiteAssignment {
		return ""
	}
	return c.Bulk.DefaultSite
}

// Logger builds the process logger from the log settings.
func (c *Config) Logger() *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Log.Level)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
