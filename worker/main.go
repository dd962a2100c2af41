// Command worker runs the product's Temporal worker: the bulk change,
// device change, poller and billing-retry workflows and all activities, with
// health, readiness and Prometheus endpoints. With
// worker.embed_callback_receiver it also serves ThingSpace's callbacks.
//
//	worker [--config FILE]
//	worker replay --workflow-id ID [--run-id RUN] [--config FILE]
//	worker replay --file history.json
//	worker replay --dir DIR (every *.json history in DIR)
//	worker codec-server [--config FILE]
//
// replay checks that a history replays against this build's workflow code
// (exit 3 on nondeterminism), reading encrypted payloads with the keys of
// temporal.codec.* (--config or the environment). codec-server serves the
// codec through which the Temporal Web UI and `temporal --codec-endpoint`
// read encrypted payloads (temporal.codec.*, codec_server.*).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/process"
	"github.com/iot-ops/tsbulk/setup"
)

func main() {
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
	if err := process.RunWorker(ctx, cfg, cfg.Logger()); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", setup.Explain(err))
		os.Exit(1)
	}
}

// codecServer runs `worker codec-server`.
func codecServer(args []string) int {
	fs := flag.NewFlagSet("codec-server", flag.ContinueOnError)
	path := config.FileFlag(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.Load(*path)
	if err == nil {
		err = cfg.ValidateCodecServer()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker codec-server:", err)
		return 2
	}
	ctx, stop := setup.OnSignal()
	defer stop()
	if err := process.RunCodecServer(ctx, cfg, cfg.Logger()); err != nil {
		fmt.Fprintln(os.Stderr, "worker codec-server:", err)
		return 1
	}
	return 0
}
