// Command worker runs the product's Temporal worker: the bulk change,
// device change, poller and billing-retry workflows and all activities, with
// health, readiness and Prometheus endpoints. With
// worker.embed_callback_receiver it also serves ThingSpace's callbacks.
//
//	worker [--config FILE]
//	worker migrate [--config FILE]
//	worker replay --workflow-id ID [--run-id RUN] [--config FILE]
//	worker replay --file history.json
//	worker replay --dir DIR (every *.json history in DIR)
//	worker codec-server [--config FILE]
//
// migrate applies the database migrations this build holds: the one
// explicit step of a deploy, before the new build's processes start (they
// only check the schema). replay checks that a history replays against this build's workflow code
// (exit 3 on nondeterminism).
//
// With payload encryption on (temporal.codec.*), replay reads encrypted
// histories with its keys, and codec-server serves the codec through which
// the Temporal Web UI and `temporal --codec-endpoint` read them
// (codec_server.*).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/process"
	"github.com/iot-ops/tsbulk/setup"
)

func main() {
	setup.ExitIfVersionRequested("worker")
	if len(os.Args) > 1 && os.Args[1] == "migrate" {
		ctx, stop := setup.OnSignal()
		defer stop()
		os.Exit(migrate(ctx, os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "replay" {
		ctx, stop := setup.OnSignal()
		defer stop()
		os.Exit(replay(ctx, os.Args[2:], os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "codec-server" {
		os.Exit(codecServer(os.Args[2:]))
	}
	path := config.FileFlag(flag.CommandLine)
	flag.Parse()
	cfg, err := config.Load(*path)
	if err == nil {
		err = cfg.ValidateWorker()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(2)
	}
	ctx, stop := setup.OnSignal()
	defer stop()
	// The file again on SIGHUP: the tenants are reloaded from it.
	if err := process.RunWorker(ctx, cfg, *path, cfg.Logger()); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", setup.Explain(err))
		os.Exit(1)
	}
}

// migrate is `worker migrate`: exit 0 when the schema is this build's.
func migrate(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("worker migrate", flag.ContinueOnError)
	path := config.FileFlag(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.Load(*path)
	if err == nil && cfg.Database.URL == "" {
		err = errors.New("database.url is required")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker migrate:", err)
		return 2
	}
	if err := db.Migrate(ctx, cfg.Database.URL.Reveal()); err != nil {
		fmt.Fprintln(os.Stderr, "worker migrate:", setup.Explain(err))
		return 1
	}
	fmt.Printf("database schema at version %d\n", db.SchemaVersion())
	return 0
}
