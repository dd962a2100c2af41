package main

import (
	"fmt"
	"os"

	"go.temporal.io/sdk/worker"

	"github.com/iot-ops/tsbulk/app"
	"github.com/iot-ops/tsbulk/cmd/bench/floor"
	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/connect"
	"github.com/iot-ops/tsbulk/metrics"
	"github.com/iot-ops/tsbulk/shutdown"
)

// floorWorkerArg is the benchmark's own command line for a floor worker
// process: `bench floor-worker`.
const floorWorkerArg = "floor-worker"

// runFloorWorker runs the floor's worker as its own process, set up as the
// product's worker is (app.RunWorker) from the same TSBULK_* environment:
// the same Temporal client with the same SDK metrics, the same workflow-task
// pollers, deadlock timeout and sticky cache, and the same CPU profile
// switch. Only the workflows differ, so the two workers' CPU per device can
// be compared.
func runFloorWorker() int {
	cfg, err := config.Load("")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench floor-worker:", err)
		return 2
	}
	logger := cfg.Logger()
	ctx, stop := shutdown.OnSignal()
	defer stop()
	app.ApplyWorkerProcessSettings(cfg)
	defer app.StartCPUProfile(logger)()
	tc, err := connect.Temporal(ctx, cfg, metrics.New(), logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench floor-worker:", err)
		return 1
	}
	defer tc.Close()
	w := worker.New(tc, floor.TaskQueue, worker.Options{
		MaxConcurrentWorkflowTaskPollers: cfg.Worker.WorkflowTaskPollers,
		DeadlockDetectionTimeout:         cfg.Worker.DeadlockDetectionTimeout,
	})
	floor.Register(w)
	if err := w.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "bench floor-worker:", err)
		return 1
	}
	<-ctx.Done()
	w.Stop()
	return 0
}
