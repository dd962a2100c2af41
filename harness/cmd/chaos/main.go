// Command chaos runs the whole product (Temporal server, PostgreSQL, the
// ThingSpace and Rev.io simulators, two workers, the callback receiver, the
// starter), every piece a real process, on a mixed bulk change, kills and
// restarts those processes and makes the simulators misbehave on a schedule
// drawn from one seed, then checks the invariants from the simulators and
// the database. It prints the seed first; passing it again replays the
// same fault schedule. Exit status 1 when any invariant is violated.
//
//	chaos [-devices 2000] [-kills 20] [-seed N] [-temporal dev|postgres] [-no-faults] [-compare] [-short]
//
// It needs root (its PostgreSQL cluster runs as the postgres user) and the
// product's binaries (make build). See docs/reliability.md.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/iot-ops/tsbulk/harness/chaos"
	"github.com/iot-ops/tsbulk/setup"
)

func main() {
	setup.ExitIfVersionRequested("chaos")
	devices := flag.Int("devices", 2000, "devices in the mixed bulk change")
	kills := flag.Int("kills", -1, "SIGKILLs of every worker at random points (default 20; 3 with -short)")
	seed := flag.Int64("seed", 0, "seed of the fault schedule and the workload (0: from the clock; printed first)")
	temporal := flag.String("temporal", "dev", "Temporal server: dev (CLI dev server) or postgres (scripts/temporal-postgres.sh)")
	noFaults := flag.Bool("no-faults", false, "the same run without any fault (the baseline of the 2x target)")
	compare := flag.Bool("compare", false, "run without faults first, then with them, and compare the wall times")
	short := flag.Bool("short", false, "the short run of make test: 500 devices in 4 shards, 7 kills (2 at a shard's continue-as-new), one Temporal restart")
	bin := flag.String("bin", "bin", "directory of the product's binaries (make build)")
	repo := flag.String("repo", ".", "repository root (for scripts/temporal-postgres.sh)")
	timeout := flag.Duration("timeout", 40*time.Minute, "give up waiting for the bulk change after this long")
	keep := flag.Bool("keep", false, "keep the run directory (logs, databases) even when the run passes")
	flag.Parse()
	if *seed == 0 {
		*seed = time.Now().UnixNano() % 1_000_000_000
	}
	fmt.Printf("chaos: seed %d (replay with -seed %d)\n", *seed, *seed)

	mix := chaos.FullMix()
	if *short {
		mix = chaos.ShortMix()
		if !isSet("devices") {
			*devices = 500
		}
	}
	if *kills >= 0 {
		mix[chaos.KillWorkers] = *kills
	}
	o := chaos.Options{Devices: *devices, Seed: *seed, Mix: mix, NoFaults: *noFaults, Temporal: *temporal,
		BinDir: *bin, Repo: *repo, Timeout: *timeout, Keep: *keep, Out: os.Stdout}
	if !*noFaults {
		fmt.Print(chaos.NewSchedule(*seed, mix))
	}

	ctx, stop := setup.OnSignal()
	defer stop()
	var baseline *chaos.Result
	if *compare && !*noFaults {
		b := o
		b.NoFaults = true
		fmt.Println("chaos: the baseline run, without faults")
		r, err := chaos.Run(ctx, b)
		if err != nil {
			fail(err)
		}
		chaos.Report(os.Stdout, r, nil)
		baseline = r
		fmt.Println("chaos: the run with faults")
	}
	r, err := chaos.Run(ctx, o)
	if err != nil {
		fail(err)
	}
	fmt.Println()
	chaos.Report(os.Stdout, r, baseline)
	if len(r.Violations) > 0 || (baseline != nil && len(baseline.Violations) > 0) {
		os.Exit(1)
	}
}

func isSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "chaos:", err)
	os.Exit(2)
}
