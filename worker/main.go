// Command worker runs the product's Temporal worker: the bulk change,
// device change, poller and billing-retry workflows and all activities, with
// health, readiness and Prometheus endpoints. With
// worker.embed_callback_receiver it also serves ThingSpace's callbacks.
//
//	worker [--config FILE]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/iot-ops/tsbulk/app"
	"github.com/iot-ops/tsbulk/config"
)

func main() {
	path := flag.String("config", os.Getenv("TSBULK_CONFIG"), "YAML configuration file (environment variables TSBULK_* override it)")
	flag.Parse()
	cfg, err := config.Load(*path)
	if err == nil {
		err = cfg.ValidateWorker()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.RunWorker(ctx, cfg, cfg.Logger()); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", app.Explain(err))
		os.Exit(1)
	}
}
