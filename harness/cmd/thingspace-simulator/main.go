// Command thingspace-simulator serves the ThingSpace M2M API simulator
// (package harness/thingspacesim) over HTTP for demos, manual testing and
// benchmarks.
//
// Secrets come from flags or, better (flags show in process lists), from
// TS_SIM_CLIENT_SECRET and TS_SIM_PASSWORD. They are never logged.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/setup"
)

func main() {
	setup.ExitIfVersionRequested("thingspace-simulator")
	ctx, stop := setup.OnSignal()
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "thingspace-simulator:", err)
		os.Exit(2)
	}
}

// settings is everything the flags configure.
type settings struct {
	listen     string
	cfg        thingspacesim.Config
	accounts   []string
	seedFile   string
	seedCount  int
	seedPrefix string
	seedState  string
	logLevel   slog.Level
}

// run starts the simulator and serves until ctx ends. onListen, when set,
// receives the bound address (tests listen on port 0).
func run(
	ctx context.Context,
	args []string,
	getenv func(string) string,
	logOut io.Writer,
	onListen func(net.Addr),
) error {
	st, err := parseFlags(args, getenv, logOut)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: st.logLevel}))
	st.cfg.Logger = logger

	seeds, err := loadSeeds(st)
	if err != nil {
		return err
	}
	st.cfg.Accounts = withSeedAccounts(st.accounts, seeds)
	if defaulted := defaultedCredentials(st.cfg); len(defaulted) > 0 {
		logger.Warn("using the simulator's built-in demo credentials", "for", strings.Join(defaulted, ","))
	}

	sim := thingspacesim.New(st.cfg)
	defer sim.Close()
	if err := sim.Seed(seeds...); err != nil {
		return err
	}

	ln, err := net.Listen("tcp", st.listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: sim.Handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.Info("thingspace simulator listening", "addr", ln.Addr().String(), "devices", len(seeds),
		"accounts", strings.Join(st.cfg.Accounts, ","), "completion_delay", st.cfg.CompletionDelay)
	if onListen != nil {
		onListen(ln.Addr())
	}

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	// Closing the simulator first releases answers held by the stall fault,
	// so that Shutdown does not wait for them.
	sim.Close()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

func parseFlags(args []string, getenv func(string) string, out io.Writer) (settings, error) {
	var st settings
	fs := flag.NewFlagSet("thingspace-simulator", flag.ContinueOnError)
	fs.SetOutput(out)
	c := &st.cfg
	fs.StringVar(&st.listen, "listen", "127.0.0.1:8090", "address to listen on")
	fs.StringVar(&c.ClientID, "client-id", "", "OAuth client id accepted (default: built-in demo id)")
	fs.StringVar(&c.ClientSecret, "client-secret", "", "OAuth client secret accepted (env TS_SIM_CLIENT_SECRET)")
	fs.StringVar(&c.Username, "username", "", "M2M login username accepted (default: built-in demo user)")
	fs.StringVar(&c.Password, "password", "", "M2M login password accepted (env TS_SIM_PASSWORD)")
	fs.Func(
		"account",
		"account name; repeatable or comma-separated; the first is the default (default "+thingspacesim.DefaultAccount+")",
		func(v string) error {
			for _, a := range strings.Split(v, ",") {
				if a = strings.TrimSpace(a); a != "" {
					st.accounts = append(st.accounts, a)
				}
			}
			return nil
		},
	)
	fs.StringVar(&st.seedFile, "seed-file", "", "CSV or JSON file of devices to seed")
	fs.IntVar(&st.seedCount, "seed-count", 0, "number of devices to generate")
	fs.StringVar(&st.seedPrefix, "seed-prefix", "8914800000", "ICCID prefix of generated devices")
	fs.StringVar(
		&st.seedState,
		"seed-state",
		"preactive",
		"state of generated devices (preactive, active, suspend, deactive)",
	)
	fs.DurationVar(
		&c.CompletionDelay,
		"completion-delay",
		2*time.Second,
		"time from an accepted action to its device change and callback",
	)
	fs.DurationVar(&c.CompletionJitter, "completion-jitter", 0, "random extra completion time per device")
	fs.DurationVar(&c.CallbackRetryInterval, "callback-retry-interval", 5*time.Minute, "time between callback attempts")
	fs.IntVar(&c.CallbackMaxAttempts, "callback-max-attempts", 4, "callback attempts in total")
	fs.DurationVar(&c.CallbackHTTPTimeout, "callback-timeout", 10*time.Second, "timeout of one callback POST")
	fs.IntVar(&c.CallbackConcurrency, "callback-concurrency", 8, "callback POSTs in flight at once")
	fs.DurationVar(&c.SessionIdleTimeout, "session-idle", 20*time.Minute, "VZ-M2M session idle timeout")
	fs.DurationVar(&c.OAuthTokenTTL, "oauth-ttl", time.Hour, "OAuth token lifetime")
	fs.IntVar(&c.MaxFailedLogins, "max-failed-logins", 5, "consecutive failed logins that lock the user")
	fs.BoolVar(
		&c.DisallowSuspendToDeactivate,
		"disallow-suspend-to-deactivate",
		false,
		"refuse deactivating suspended devices (S-states reading)",
	)
	fs.BoolVar(
		&c.ListCursorPaging,
		"list-cursor",
		false,
		"answer a device list request that carries largestDeviceIdSeen with one (not in the published model)",
	)
	fs.Int64Var(&c.Seed, "random-seed", 0, "seed of fault and jitter randomness (0: time-based)")
	l := &c.Limits
	fs.IntVar(
		&l.ActivateRequestsPerMinute,
		"activate-per-minute",
		100,
		"activate requests per minute per account (negative: off)",
	)
	fs.IntVar(&l.RequestsPerHour, "requests-per-hour", 0, "API requests per hour per account (0: off)")
	fs.IntVar(&l.MaxDevicesPerRequest, "max-devices-per-request", 10000, "devices per state-change request")
	fs.IntVar(&l.MaxDevicesPerAdd, "max-devices-per-add", 200, "devices per add request")
	fs.IntVar(
		&l.ActionsPerLinePerDay,
		"actions-per-line-per-day",
		5,
		"state changes per device per rolling 24h (negative: off)",
	)
	f := &c.Faults
	fs.Float64Var(&f.ErrorRate, "error-rate", 0, "fraction of API requests answered 500/502/503 unprocessed")
	fs.DurationVar(&f.Latency, "latency", 0, "latency added to every API answer")
	fs.DurationVar(&f.LatencyJitter, "latency-jitter", 0, "random extra latency")
	fs.Float64Var(&f.TimeoutRate, "timeout-rate", 0, "fraction of state changes applied but answered after --stall-for")
	fs.DurationVar(&f.StallFor, "stall-for", 0, "how long a timed-out answer is held")
	fs.Float64Var(&f.GatewayAfterApplyRate, "gateway-after-apply-rate", 0,
		"fraction of state changes applied but answered 502/504 by the gateway (HTML page)")
	fs.Float64Var(&f.DropCallbackRate, "drop-callback-rate", 0, "fraction of device callbacks never sent")
	fs.Float64Var(&f.DuplicateCallbackRate, "duplicate-callback-rate", 0, "fraction of device callbacks sent twice")
	fs.Float64Var(
		&f.LateCallbackRate,
		"late-callback-rate",
		0,
		"fraction of device callbacks delayed by --late-callback-delay",
	)
	fs.DurationVar(&f.LateCallbackDelay, "late-callback-delay", 0, "extra delay of late callbacks")
	fs.BoolVar(&f.ReorderCallbacks, "reorder-callbacks", false, "deliver a request's callbacks in random order")
	fs.TextVar(&st.logLevel, "log-level", slog.LevelInfo, "log level (debug, info, warn, error)")
	if err := fs.Parse(args); err != nil {
		return st, err
	}
	if fs.NArg() > 0 {
		return st, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if c.ClientSecret == "" {
		c.ClientSecret = getenv("TS_SIM_CLIENT_SECRET")
	}
	if c.Password == "" {
		c.Password = getenv("TS_SIM_PASSWORD")
	}
	if st.seedCount < 0 {
		return st, errors.New("--seed-count must not be negative")
	}
	return st, nil
}

// defaultedCredentials names (never shows) the credentials left empty, which
// the simulator replaces with its public demo values.
func defaultedCredentials(c thingspacesim.Config) []string {
	var out []string
	for _, f := range []struct{ name, value string }{
		{"client-id", c.ClientID}, {"client-secret", c.ClientSecret}, {"username", c.Username}, {"password", c.Password},
	} {
		if f.value == "" {
			out = append(out, f.name)
		}
	}
	return out
}

func loadSeeds(st settings) ([]thingspacesim.DeviceSeed, error) {
	var seeds []thingspacesim.DeviceSeed
	if st.seedFile != "" {
		s, err := thingspacesim.LoadSeedFile(st.seedFile)
		if err != nil {
			return nil, err
		}
		seeds = append(seeds, s...)
	}
	if st.seedCount > 0 {
		seeds = append(seeds, thingspacesim.GenerateDevices(st.seedCount, st.seedPrefix, st.seedState)...)
	}
	return seeds, nil
}

// withSeedAccounts appends accounts named in the seed file, so that a seed
// file can be used without repeating its accounts as flags. The first
// --account (or the simulator's default) stays the default account.
func withSeedAccounts(accounts []string, seeds []thingspacesim.DeviceSeed) []string {
	if len(accounts) == 0 {
		accounts = []string{thingspacesim.DefaultAccount}
	}
	have := map[string]bool{}
	for _, a := range accounts {
		have[a] = true
	}
	for _, s := range seeds {
		if s.Account != "" && !have[s.Account] {
			have[s.Account] = true
			accounts = append(accounts, s.Account)
		}
	}
	return accounts
}
