// Package localstack runs the whole product on one machine for the integration
// tests and the benchmark: the Temporal CLI's dev server, a fresh
// PostgreSQL database, the ThingSpace and Rev.io simulators over real HTTP,
// the callback receiver, and workers (in this process or as separate
// processes that can be killed).
package localstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/iot-ops/tsbulk/app"
	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/metrics"
	revsim "github.com/iot-ops/tsbulk/revio/simulator"
	"github.com/iot-ops/tsbulk/thingspace"
	tssim "github.com/iot-ops/tsbulk/thingspace/simulator"
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

// TemporalCLI finds the Temporal CLI: $TSBULK_TEMPORAL_CLI, then PATH, then
// $GOPATH/bin (where `make tools` installs it).
func TemporalCLI() (string, error) {
	if p := os.Getenv("TSBULK_TEMPORAL_CLI"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("temporal"); err == nil {
		return p, nil
	}
	gopath, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "temporal")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New(
		"the Temporal CLI is not installed: run `make tools` (go install github.com/temporalio/cli/cmd/temporal@v1.5.1)",
	)
}

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
	// TemporalAddress, when set, is a running Temporal server to use
	// (namespace default) instead of a dev server of the stack's own:
	// Dev stays nil and DevServerArgs are not used.
	TemporalAddress string
}

// Stack is a running product.
type Stack struct {
	Dev      *testsuite.DevServer
	Client   client.Client
	Store    *db.Store
	TS       *tssim.Simulator
	Revio    *revsim.Simulator
	Config   *config.Config
	Metrics  *metrics.Metrics
	Logger   *slog.Logger
	servers  []*http.Server
	closers  []func()
	tsURL    string
	revioURL string
	cbURL    string
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
	if opts.TemporalAddress != "" {
		s.Client, err = client.DialContext(ctx, client.Options{HostPort: opts.TemporalAddress, Namespace: "default",
			Logger: quietTemporalLogger()})
		if err != nil {
			return nil, fmt.Errorf("connect to the Temporal server at %s: %w", opts.TemporalAddress, err)
		}
		s.closers = append(s.closers, s.Client.Close)
	} else {
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

	if s.Store, err = db.Open(ctx, opts.DatabaseURL, 20); err != nil {
		return nil, err
	}
	s.closers = append(s.closers, s.Store.Close)

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
	s.Config = s.buildConfig(opts)
	if opts.Config != nil {
		opts.Config(s.Config)
	}
	// The callback receiver runs apart from the workers, as in
	// production, so killing a worker does not stop callbacks.
	mux := http.NewServeMux()
	mux.Handle(s.Config.Callbacks.Path, app.NewReceiver(s.Config, s.Store, s.Client, s.Metrics, s.Logger).Handler())
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
	return &config.Config{
		Temporal: config.Temporal{Address: temporalAddress, Namespace: "default"},
		Database: config.Database{URL: config.Secret(opts.DatabaseURL), MaxConns: 20},
		ThingSpace: config.ThingSpace{
			BaseURL: s.tsURL, ClientID: pick(ts.ClientID, tssim.DefaultClientID),
			ClientSecret: config.Secret(pick(ts.ClientSecret, tssim.DefaultClientSecret)),
			Username: pick(
				ts.Username,
				tssim.DefaultUsername,
			), Password: config.Secret(pick(ts.Password, tssim.DefaultPassword)),
			Account: account, HTTPTimeout: 10 * time.Second, MaxRetries: 2,
		},
		Callbacks: config.Callbacks{Enabled: true, Listen: "127.0.0.1:0", Path: "/thingspace/callbacks",
			Username: CallbackUser, Password: CallbackPassword, MaxBodyBytes: 1 << 20},
		Revio: config.Revio{Enabled: true, BaseURL: s.revioURL, Login: RevioLogin, ClientCode: RevioClientCode,
			Password: RevioPassword, SubscriptionKey: RevioKey, CallsPerMinute: 500},
		Bulk: config.Bulk{BatchSize: 100, Window: 500, StartsPerRun: 500, CallbackTimeout: 10 * time.Second,
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
}

// registerCallbacks registers the stack's receiver as the account's
// CarrierService listener, as `callback-receiver register` does.
func (s *Stack) registerCallbacks(ctx context.Context) error {
	ts, err := s.ThingSpaceClient(nil)
	if err != nil {
		return err
	}
	return ts.RegisterCallback(ctx, s.Config.ThingSpace.Account, thingspace.CallbackRegistration{
		Name: thingspace.CarrierServiceCallback, URL: s.cbURL, Username: CallbackUser, Password: CallbackPassword,
	})
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
	w worker.Worker
}

// Stop stops the worker.
func (w *Worker) Stop() { w.w.Stop() }

// StartWorker starts a worker in this process; tune adjusts its options
// (a test's interceptors).
func (s *Stack) StartWorker(tune ...func(*worker.Options)) (*Worker, error) {
	acts, err := app.NewActivities(s.Config, s.Store, s.Client, s.Metrics, s.Logger)
	if err != nil {
		return nil, err
	}
	w := app.NewWorker(s.Client, acts, s.Config, tune...)
	if err := w.Start(); err != nil {
		return nil, err
	}
	wk := &Worker{w: w}
	s.closers = append(s.closers, wk.Stop)
	return wk, nil
}

// Env is the stack's configuration as environment variables, for a worker
// or starter run as a separate process.
func (s *Stack) Env() []string {
	c := s.Config
	kv := map[string]string{
		"temporal.address":                  c.Temporal.Address,
		"temporal.namespace":                c.Temporal.Namespace,
		"database.url":                      c.Database.URL.Reveal(),
		"database.max_conns":                "10",
		"thingspace.base_url":               c.ThingSpace.BaseURL,
		"thingspace.client_id":              c.ThingSpace.ClientID,
		"thingspace.client_secret":          c.ThingSpace.ClientSecret.Reveal(),
		"thingspace.username":               c.ThingSpace.Username,
		"thingspace.password":               c.ThingSpace.Password.Reveal(),
		"thingspace.account":                c.ThingSpace.Account,
		"thingspace.http_timeout":           c.ThingSpace.HTTPTimeout.String(),
		"callbacks.enabled":                 fmt.Sprint(c.Callbacks.Enabled),
		"callbacks.username":                c.Callbacks.Username,
		"callbacks.password":                c.Callbacks.Password.Reveal(),
		"revio.enabled":                     fmt.Sprint(c.Revio.Enabled),
		"revio.base_url":                    c.Revio.BaseURL,
		"revio.login":                       c.Revio.Login,
		"revio.client_code":                 c.Revio.ClientCode,
		"revio.password":                    c.Revio.Password.Reveal(),
		"revio.subscription_key":            c.Revio.SubscriptionKey.Reveal(),
		"revio.disconnect_on_deactivate":    fmt.Sprint(c.Revio.DisconnectOnDeactivate),
		"bulk.batch_size":                   fmt.Sprint(c.Bulk.BatchSize),
		"bulk.window":                       fmt.Sprint(c.Bulk.Window),
		"bulk.starts_per_run":               fmt.Sprint(c.Bulk.StartsPerRun),
		"bulk.callback_timeout":             c.Bulk.CallbackTimeout.String(),
		"bulk.confirm_deadline":             c.Bulk.ConfirmDeadline.String(),
		"bulk.poll_interval":                c.Bulk.PollInterval.String(),
		"bulk.poll_max_interval":            c.Bulk.PollMaxInterval.String(),
		"bulk.default_site":                 c.Bulk.DefaultSite,
		"bulk.default_site_assignment":      fmt.Sprint(c.Bulk.DefaultSiteAssignment),
		"bulk.stall_check":                  c.Bulk.StallCheck.String(),
		"approval.operations":               approvalOperations(c.Approval.Operations),
		"limits.requests_per_hour":          fmt.Sprint(c.Limits.RequestsPerHour),
		"limits.activates_per_minute":       fmt.Sprint(c.Limits.ActivatesPerMinute),
		"limits.requests_window":            c.Limits.RequestsWindow.String(),
		"limits.actions_per_line_per_day":   fmt.Sprint(c.Limits.ActionsPerLinePerDay),
		"worker.listen":                     "127.0.0.1:0",
		"worker.max_concurrent_activities":  fmt.Sprint(c.Worker.MaxConcurrentActivities),
		"worker.poll_batch_threshold":       fmt.Sprint(c.Worker.PollBatchThreshold),
		"log.level":                         "warn",
		"worker.reconcile_settle":           c.Worker.ReconcileSettle.String(),
		"worker.deadlock_detection_timeout": c.Worker.DeadlockDetectionTimeout.String(),
		"worker.workflow_task_pollers":      fmt.Sprint(c.Worker.WorkflowTaskPollers),
		"worker.activity_task_pollers":      fmt.Sprint(c.Worker.ActivityTaskPollers),
	}
	if c.Revio.RetryFor > 0 {
		// Only when set: a zero would fail the worker process's validation.
		kv["revio.retry_for"] = c.Revio.RetryFor.String()
	}
	if c.Worker.StickyCacheSize > 0 {
		// Only when set: otherwise the worker process keeps its own default.
		kv["worker.sticky_cache_size"] = fmt.Sprint(c.Worker.StickyCacheSize)
	}
	env := os.Environ()
	for k, v := range kv {
		env = append(env, config.EnvName(k)+"="+v)
	}
	return env
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

// approvalOperations is approval.operations as an environment variable,
// where an empty value would read as unset.
func approvalOperations(ops []string) string {
	if len(ops) == 0 {
		return "none"
	}
	return strings.Join(ops, ",")
}
