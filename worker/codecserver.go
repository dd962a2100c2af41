package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/process"
	"github.com/iot-ops/tsbulk/setup"
)

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
