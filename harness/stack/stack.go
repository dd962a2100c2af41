// Package stack runs the whole product on one machine, one way for every
// harness. Start runs it in this process (the simulators over real HTTP,
// the callback receiver, workers on demand, a fresh database and the
// Temporal CLI's dev server), for the end-to-end tests and the benchmark,
// which read and steer the simulators directly. StartProcesses runs the
// built commands as separate processes that can be killed and started
// again, for the demo and the chaos suite (which adds its own PostgreSQL
// cluster, Temporal server, faults, kills and restarts).
package stack

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/iot-ops/tsbulk/callbacks"
	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/db"
	revsim "github.com/iot-ops/tsbulk/harness/reviosim"
	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/metrics"
	"github.com/iot-ops/tsbulk/payloadcrypt"
	"github.com/iot-ops/tsbulk/process"
	"github.com/iot-ops/tsbulk/setup"
	"github.com/iot-ops/tsbulk/thingspace"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// Credentials the stack's simulators accept. They are test values.
const (
	CallbackUser     = "ts-callback"
	CallbackPassword = "cb-secret-for-tests"
	RevioLogin       = "INTEGRATIONS"
	RevioClientCode  = "TESTCO"
	RevioPassword    = "revio-secret-for-tests"
	RevioKey         = "revio-key-for-tests"
)

// Options configure a stack.
type Options struct {
	DatabaseURL string
	// DevServerArgs are extra arguments of `temporal server start-dev`,
	// such as lowered limits (--dynamic-config-value ...).
	DevServerArgs []string
	ThingSpace    tssim.Config
	Revio         revsim.Config
	// Config adjusts the product configuration the stack builds.
	Config func(*config.Config)
	Logger *slog.Logger
	// EncryptPayloads turns payload encryption on (temporal.codec.*) with
	// a new key in a folder of the stack's: its client, its workers, its
	// receiver and the processes run with Env encrypt every payload, as a
	// deployment with keys does. Config.Temporal.Codec names the folder.
	EncryptPayloads bool
	// Tenants are named tenants beside the default one (the top-level
	// settings), each with a ThingSpace simulator of its own.
	Tenants []TenantOptions
	// TemporalAddress, when set, is a running Temporal server to use
	// (namespace default) instead of a dev server of the stack's own:
	// Dev stays nil and DevServerArgs are not used. The stack connects to
	// it as the product does, with the temporal.* settings Config sets
	// (TLS, API key).
	TemporalAddress string
}

// TenantOptions describe a named tenant of the stack (tenants.<ID>): its
// own ThingSpace simulator, which accepts only the tenant's credentials
// and knows only its accounts. Credentials left empty are derived from
// the ID (TenantCredentials), accounts too (one account). The tenant bills
// nothing (revio.enabled off) and inherits the rest of the stack's
// settings. Its simulator has no callback listener registered (the
// callback receiver serves the default tenant's path only): its devices
// are confirmed by polling, at once when its bulk changes are submitted
// with callbacks off.
type TenantOptions struct {
	ID         string
	ThingSpace tssim.Config
}

// TenantCredentials fills the ThingSpace credentials and account of tenant
// id's simulator that c leaves empty; n numbers the tenant (its account).
func TenantCredentials(id string, n int, c tssim.Config) tssim.Config {
	pick := func(v *string, def string) {
		if *v == "" {
			*v = def
		}
	}
	pick(&c.ClientID, id+"-client-id")
	pick(&c.ClientSecret, id+"-client-secret-for-tests")
	pick(&c.Username, id+"-user")
	pick(&c.Password, id+"-password-for-tests")
	if len(c.Accounts) == 0 {
		c.Accounts = []string{fmt.Sprintf("00009%05d-00001", n)}
	}
	return c
}

// Stack is a running product.
type Stack struct {
	Dev    *testsuite.DevServer
	Client client.Client
	Store  *db.Store
	TS     *tssim.Simulator
	// TenantTS are the named tenants' ThingSpace simulators, by id.
	TenantTS map[string]*tssim.Simulator
	Revio    *revsim.Simulator
	Config   *config.Config
	Metrics  *metrics.Metrics
	Logger   *slog.Logger
	codec    config.TemporalCodec
	servers  []*http.Server
	closers  []func()
	tsURL    string
	revioURL string
	cbURL    string
	// tenantTS: the named tenants' simulator configurations and URLs.
	tenantTS []tenantSim
}

type tenantSim struct {
	id  string
	cfg tssim.Config
	url string
}

// Start starts everything but the workers.
func Start(ctx context.Context, opts Options) (_ *Stack, err error) {
	s := &Stack{Logger: opts.Logger, Metrics: metrics.New()}
	if s.Logger == nil {
		s.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	// A server of the caller's is connected to once the configuration is
	// built, as the product's processes connect: setup.Temporal with the
	// temporal.* settings (TLS, API key) opts.Config gives.
	if opts.TemporalAddress == "" {
		cli, err := TemporalCLI()
		if err != nil {
			return nil, err
		}
		args := append(
			[]string{"--dynamic-config-value", "system.forceSearchAttributesCacheRefreshOnRead=true"},
			api.DevServerSearchAttributeArgs()...,
		)
		args = append(args, opts.DevServerArgs...)
		s.Dev, err = testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
			ExistingPath: cli,
			ClientOptions: &client.Options{
				Namespace: "default",
				Logger:    quietTemporalLogger(),
			},
			LogLevel:  "error",
			ExtraArgs: args,
			Stdout:    io.Discard,
			Stderr:    io.Discard,
		})
		if err != nil {
			return nil, fmt.Errorf("start the Temporal dev server: %w", err)
		}
		s.closers = append(s.closers, func() { _ = s.Dev.Stop() })
		s.Client = s.Dev.Client()
	}

	// The deploy's explicit step, as `worker migrate` runs it.
	if err := db.Migrate(ctx, opts.DatabaseURL); err != nil {
		return nil, err
	}
	if s.Store, err = db.Open(ctx, opts.DatabaseURL, 20); err != nil {
		return nil, err
	}
	s.closers = append(s.closers, s.Store.Close)
	if opts.EncryptPayloads {
		if err := s.encryptPayloads(); err != nil {
			return nil, err
		}
	}

	s.TS = tssim.New(opts.ThingSpace)
	s.closers = append(s.closers, s.TS.Close)
	if s.tsURL, err = s.serve(s.TS.Handler()); err != nil {
		return nil, err
	}
	rc := opts.Revio
	rc.Login, rc.ClientCode, rc.Password, rc.SubscriptionKey = RevioLogin, RevioClientCode, RevioPassword, RevioKey
	s.Revio = revsim.New(rc)
	s.closers = append(s.closers, s.Revio.Close)
	if s.revioURL, err = s.serve(s.Revio.Handler()); err != nil {
		return nil, err
	}
	s.TenantTS = map[string]*tssim.Simulator{}
	for i, to := range opts.Tenants {
		c := TenantCredentials(to.ID, i+1, to.ThingSpace)
		sim := tssim.New(c)
		s.closers = append(s.closers, sim.Close)
		url, err := s.serve(sim.Handler())
		if err != nil {
			return nil, err
		}
		s.TenantTS[to.ID] = sim
		s.tenantTS = append(s.tenantTS, tenantSim{id: to.ID, cfg: c, url: url})
	}
	s.Config = s.buildConfig(opts)
	if opts.Config != nil {
		opts.Config(s.Config)
	}
	if s.Client == nil {
		if s.Client, err = setup.Temporal(ctx, s.Config, nil, s.Logger); err != nil {
			return nil, err
		}
		s.closers = append(s.closers, s.Client.Close)
	}
	// The callback receiver runs apart from the workers, as in
	// production, so killing a worker does not stop callbacks.
	mux := http.NewServeMux()
	rcv, err := process.NewReceiver(s.Config, s.Store, s.Client, s.Metrics, s.Logger)
	if err != nil {
		return nil, err
	}
	// Every tenant at its own path, as the receiver process serves them.
	if err := rcv.Mount(mux); err != nil {
		return nil, err
	}
	base, err := s.serve(mux)
	if err != nil {
		return nil, err
	}
	s.cbURL = base + s.Config.Callbacks.Path
	s.Config.Callbacks.PublicURL = s.cbURL
	if err := s.registerCallbacks(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Stack) buildConfig(opts Options) *config.Config {
	ts := opts.ThingSpace
	pick := func(v, def string) string {
		if v != "" {
			return v
		}
		return def
	}
	account := tssim.DefaultAccount
	if len(ts.Accounts) > 0 {
		account = ts.Accounts[0]
	}
	temporalAddress := opts.TemporalAddress
	if s.Dev != nil {
		temporalAddress = s.Dev.FrontendHostPort()
	}
	cfg := &config.Config{
		// The simulators answer plain http, allowed only in dev mode.
		Dev:      true,
		Temporal: config.Temporal{Address: temporalAddress, Namespace: "default", Codec: s.codec},
		Database: config.Database{URL: config.Secret(opts.DatabaseURL), MaxConns: 20},
		ThingSpace: config.ThingSpace{
			BaseURL: s.tsURL, ClientID: pick(ts.ClientID, tssim.DefaultClientID),
			ClientSecret: config.Secret(pick(ts.ClientSecret, tssim.DefaultClientSecret)),
			Username: pick(
				ts.Username,
				tssim.DefaultUsername,
			), Password: config.Secret(pick(ts.Password, tssim.DefaultPassword)),
			Account: account, HTTPTimeout: 10 * time.Second, MaxRetries: 2,
			DeleteAfterDeactivation: true, // the setting's default
		},
		Callbacks: config.Callbacks{Enabled: true, Listen: "127.0.0.1:0", Path: "/thingspace/callbacks",
			Username: CallbackUser, Password: CallbackPassword, MaxBodyBytes: 1 << 20},
		Revio: config.Revio{Enabled: true, BaseURL: s.revioURL, Login: RevioLogin, ClientCode: RevioClientCode,
			Password: RevioPassword, SubscriptionKey: RevioKey, CallsPerMinute: 500},
		Bulk: config.Bulk{BatchSize: 100, Window: 500, StartsPerRun: 500, ShardSize: 2000, ShardsAtOnce: 5,
			CallbackTimeout: 10 * time.Second,
			ConfirmDeadline: 5 * time.Minute, PollInterval: time.Second, PollMaxInterval: 4 * time.Second,
			DefaultSite: "INTEGRATION-SITE", DefaultSiteAssignment: true, StallCheck: 10 * time.Second},
		Limits: config.Limits{
			RequestsPerHour:      0,
			RequestsWindow:       time.Hour,
			ActivatesPerMinute:   0,
			ActionsPerLinePerDay: 5,
		},
		Worker: config.Worker{
			Listen:                  "127.0.0.1:0",
			MaxConcurrentActivities: 100,
			PollBatchThreshold:      20,
			ReconcileSettle:         3 * time.Second,
			WorkflowTaskPollers:     8,
			ActivityTaskPollers:     8,
			// Tests run under the race detector, often beside other heavy
			// tests: the SDK's 1 s deadlock detector would fail workflow
			// tasks of a starved CPU (and the SDK then races with itself).
			DeadlockDetectionTimeout: 30 * time.Second,
		},
		Log: config.Log{Level: "warn", Format: "text"},
	}
	for _, ts := range s.tenantTS {
		c := ts.cfg
		cfg.Tenants = append(cfg.Tenants, config.Tenant{
			ID: ts.id,
			ThingSpace: config.TenantThingSpace{BaseURL: ts.url, ClientID: c.ClientID,
				ClientSecret: config.Secret(c.ClientSecret), Username: c.Username, Password: config.Secret(c.Password),
				Accounts: c.Accounts, HTTPTimeout: cfg.ThingSpace.HTTPTimeout, MaxRetries: cfg.ThingSpace.MaxRetries,
				DeleteAfterDeactivation: cfg.ThingSpace.DeleteAfterDeactivation},
			Callbacks:             config.TenantCallbacks{Username: CallbackUser + "-" + ts.id, Password: CallbackPassword + "-" + config.Secret(ts.id)},
			DefaultSite:           cfg.Bulk.DefaultSite,
			DefaultSiteAssignment: cfg.Bulk.DefaultSiteAssignment,
			Approval:              cfg.Approval,
			Limits:                cfg.Limits,
		})
	}
	return cfg
}

// encryptPayloads writes a new key in a folder removed at Close, for the
// configuration, and puts the encrypting converters on the stack's
// client when it has one already (a client made later from the
// configuration gets them from setup).
func (s *Stack) encryptPayloads() error {
	dir, err := os.MkdirTemp("", "tsbulk-payload-keys-")
	if err != nil {
		return fmt.Errorf("payload keys folder: %w", err)
	}
	s.closers = append(s.closers, func() { _ = os.RemoveAll(dir) })
	if _, err := payloadcrypt.WriteNewKey(dir, "stack-1"); err != nil {
		return err
	}
	s.codec = config.TemporalCodec{KeysDir: dir, CurrentKeyID: "stack-1"}
	if s.Client == nil {
		return nil
	}
	codec, err := payloadcrypt.LoadDir(dir, "stack-1")
	if err != nil {
		return err
	}
	c, err := client.NewClientFromExisting(s.Client, client.Options{Namespace: "default",
		Logger: quietTemporalLogger(), DataConverter: codec.DataConverter(), FailureConverter: codec.FailureConverter()})
	if err != nil {
		return fmt.Errorf("encrypting Temporal client: %w", err)
	}
	s.Client = c
	s.closers = append(s.closers, c.Close)
	return nil
}

// registerCallbacks registers the stack's receiver as the account's
// CarrierService listener, as `callback-receiver register` does.
func (s *Stack) registerCallbacks(ctx context.Context) error {
	ts, err := s.ThingSpaceClient(nil)
	if err != nil {
		return err
	}
	if err := ts.RegisterCallback(ctx, s.Config.ThingSpace.Account, thingspace.CallbackRegistration{
		Name: thingspace.CarrierServiceCallback, URL: s.cbURL, Username: CallbackUser, Password: CallbackPassword,
	}); err != nil {
		return err
	}
	// Each named tenant's accounts at its own simulator, with its URL and
	// listener credentials, as `callback-receiver register` does.
	// The simulator's own credentials: a test may give the product wrong
	// ones, and the registration is the stack's set-up, not the product's.
	for _, sim := range s.tenantTS {
		t, err := s.Config.Tenant(sim.id)
		if err != nil {
			return err
		}
		url, err := callbacks.CallbackURL(s.cbURL, t.ID)
		if err != nil {
			return err
		}
		tc, err := thingspace.New(thingspace.Config{BaseURL: sim.url, ClientID: sim.cfg.ClientID,
			ClientSecret: sim.cfg.ClientSecret, Username: sim.cfg.Username,
			Password: sim.cfg.Password, AccountName: t.DefaultAccount()})
		if err != nil {
			return err
		}
		for _, account := range t.ThingSpace.Accounts {
			if err := tc.RegisterCallback(ctx, account, thingspace.CallbackRegistration{
				Name: thingspace.CarrierServiceCallback, URL: url,
				Username: t.Callbacks.Username, Password: t.Callbacks.Password.Reveal(),
			}); err != nil {
				return fmt.Errorf("tenant %s: %w", t.ID, err)
			}
		}
	}
	return nil
}

// ThingSpaceClient returns a client of the stack's simulator.
func (s *Stack) ThingSpaceClient(obs thingspace.Observer) (*thingspace.Client, error) {
	c := s.Config.ThingSpace
	return thingspace.New(
		thingspace.Config{BaseURL: c.BaseURL, ClientID: c.ClientID, ClientSecret: c.ClientSecret.Reveal(),
			Username: c.Username, Password: c.Password.Reveal(), AccountName: c.Account, Observer: obs},
	)
}

func (s *Stack) serve(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	s.servers = append(s.servers, srv)
	return "http://" + ln.Addr().String(), nil
}

// Worker is a worker running in this process.
type Worker struct {
	w       worker.Worker
	tenants *process.WorkerTenants
}

// Stop stops the worker.
func (w *Worker) Stop() { w.w.Stop() }

// ReloadTenants gives the worker the tenants of cfg, as a worker process
// takes those of its configuration file on SIGHUP (cfg is taken as
// validated).
func (w *Worker) ReloadTenants(cfg *config.Config) error {
	return w.tenants.Reload(func() (*config.Config, error) { return cfg, nil })
}

// StartWorker starts a worker in this process; tune adjusts its options
// (a test's interceptors).
func (s *Stack) StartWorker(tune ...func(*worker.Options)) (*Worker, error) {
	acts, err := process.NewActivities(s.Config, s.Store, s.Client, s.Metrics, s.Logger)
	if err != nil {
		return nil, err
	}
	w := process.NewWorker(s.Client, acts, s.Config, tune...)
	if err := w.Start(); err != nil {
		return nil, err
	}
	tenants, _ := acts.Tenants.(*process.WorkerTenants)
	wk := &Worker{w: w, tenants: tenants}
	s.closers = append(s.closers, wk.Stop)
	return wk, nil
}

// Close stops everything, last started first.
func (s *Stack) Close() {
	for _, srv := range s.servers {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(ctx)
		cancel()
	}
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}
