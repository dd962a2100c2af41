// Command revio-simulator serves the in-memory Rev.io simulator for local
// runs and end-to-end tests.
//
// Secrets are best passed through the environment (REVIO_SIM_PASSWORD,
// REVIO_SIM_SUBSCRIPTION_KEY): flags are visible in the process list. The
// simulator logs only its listen address, never credentials or bodies.
//
// The /admin endpoints have no authentication, so keep the default loopback
// address unless the network is private.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/iot-ops/tsbulk/harness/reviosim"
	"github.com/iot-ops/tsbulk/setup"
)

func main() {
	setup.ExitIfVersionRequested("revio-simulator")
	if err := run(os.Args[1:], os.Getenv, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		log.Printf("revio-simulator: %v", err)
		os.Exit(1)
	}
}

type options struct {
	listen string
	cfg    reviosim.Config
}

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("revio-simulator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8091", "listen address")
	fs.StringVar(&o.cfg.Login, "login", "INTEGRATIONS", "API user name expected in Basic auth (login@clientcode)")
	fs.StringVar(&o.cfg.ClientCode, "client-code", "SIMCLIENT", "client code expected in Basic auth")
	fs.StringVar(&o.cfg.Password, "password", "", "expected password (default $REVIO_SIM_PASSWORD)")
	fs.StringVar(
		&o.cfg.SubscriptionKey,
		"subscription-key",
		"",
		"expected Ocp-Apim-Subscription-Key (default $REVIO_SIM_SUBSCRIPTION_KEY)",
	)
	fs.IntVar(&o.cfg.CallsPerMinute, "calls-per-minute", 500, "rolling-minute call limit; negative disables it")
	fs.Int64Var(&o.cfg.Seed, "seed", time.Now().UnixNano(), "seed of the fault draws")
	fs.Float64Var(&o.cfg.Faults.ErrorRate, "error-rate", 0, "fraction of calls answered 500/503")
	fs.Float64Var(&o.cfg.Faults.RateLimitRate, "rate-limit-rate", 0, "fraction of calls answered 429")
	fs.DurationVar(&o.cfg.Faults.Latency, "latency", 0, "delay added to every call")
	fs.DurationVar(
		&o.cfg.Faults.StallCreateService,
		"stall-create-service",
		0,
		"POST /v1/Services creates, then waits this long before answering",
	)
	fs.Float64Var(
		&o.cfg.Faults.FailCreateServiceRate,
		"fail-create-service-rate",
		0,
		"fraction of POST /v1/Services answered 500 before creating",
	)
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if o.cfg.Password == "" {
		o.cfg.Password = getenv("REVIO_SIM_PASSWORD")
	}
	if o.cfg.SubscriptionKey == "" {
		o.cfg.SubscriptionKey = getenv("REVIO_SIM_SUBSCRIPTION_KEY")
	}
	// No built-in secrets: a default password would end up in real configs.
	switch {
	case o.cfg.Login == "" || o.cfg.ClientCode == "":
		return o, errors.New("--login and --client-code must not be empty")
	case o.cfg.Password == "":
		return o, errors.New("a password is required: set REVIO_SIM_PASSWORD or --password")
	case o.cfg.SubscriptionKey == "":
		return o, errors.New("a subscription key is required: set REVIO_SIM_SUBSCRIPTION_KEY or --subscription-key")
	}
	if err := o.cfg.Faults.Validate(); err != nil {
		return o, err
	}
	return o, nil
}

func run(args []string, getenv func(string) string, stderr io.Writer) error {
	o, err := parseFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	ctx, stop := setup.OnSignal()
	defer stop()
	return serve(ctx, ln, o.cfg, log.New(stderr, "", log.LstdFlags))
}

// serve runs the simulator on ln until ctx ends, then shuts down gracefully.
func serve(ctx context.Context, ln net.Listener, cfg reviosim.Config, logger *log.Logger) error {
	sim := reviosim.New(cfg)
	srv := &http.Server{
		Handler:           sim.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Printf("revio-simulator listening on %s", ln.Addr())

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Release stalled and delayed calls first so Shutdown need not wait
	// for them.
	sim.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	logger.Printf("revio-simulator stopped")
	return nil
}
