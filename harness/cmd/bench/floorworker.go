package main

import (
	"fmt"
	"os"

	"go.temporal.io/sdk/worker"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/harness/cmd/bench/floor"
	"github.com/iot-ops/tsbulk/metrics"
	"github.com/iot-ops/tsbulk/process"
	"github.com/iot-ops/tsbulk/setup"
)

// floorWorkerArg is the benchmark's own command line for a floor worker
// process: `bench floor-worker`.
const floorWorkerArg = "floor-worker"

// runFloorWorker runs the floor's worker as its own process, set up as the
// product's worker is (process.RunWorker) from the same TSBULK_* environment:
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
	ctx, stop := setup.OnSignal()
	defer stop()
	process.ApplyWorkerProcessSettings(cfg)
	defer process.StartCPUProfile(logger)()
	tc, err := setup.Temporal(ctx, cfg, metrics.New(), logger)
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
