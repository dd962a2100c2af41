// Command bench measures a bulk change end to end (make bench): the Temporal
// server (the CLI's dev server, or a running server given by
// -temporal-address), PostgreSQL, the worker as its own processes, and the
// ThingSpace simulator with realistic latencies and a requests-per-hour
// limit.
//
// Absolute figures do not carry from one host to another, so in the same
// run and against the same server it also measures what the figures are
// compared with:
//
//   - the floor (-floor, on by default): the least the design's shape costs,
//     a parent starting one child per device with the same window and
//     continue-as-new cadence, each child receiving one signal and reporting
//     by signal, no activities (package floor), on worker processes set up
//     like the product's;
//   - the tree floor (-floor-shards K, on by default): the same split into
//     shards of -shard-size devices, K running at a time under a root, each
//     shard a floor parent over its devices reporting to the root by signal:
//     the least a sharded bulk change's shape costs;
//   - the baseline: what the predecessor did, one request per device, one
//     device after another, on a second account of the same simulator with
//     the same limit.
//
// It prints one table, with the ratios that carry between hosts.
//
//	bench [-devices 10000] [-limit 20000] [-floor] [-workers 1] [-temporal-address HOST:PORT] ...
//	bench floor-worker      (the floor's worker process; started by bench itself)
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/iot-ops/tsbulk/setup"
)

const (
	productAccount  = "0000123456-00001"
	baselineAccount = "0000123456-00002"
)

type options struct {
	devices          int
	limit            int
	latency          time.Duration
	jitter           time.Duration
	completion       time.Duration
	completionJit    time.Duration
	mix              map[string]int
	baseline         string
	baselineSample   int
	bin              string
	adminDB          string
	batch            int
	window           int
	shardSize        int
	shardsAtOnce     int
	floor            bool
	floorShards      int
	floorOrder       string
	floorPageWait    bool
	floorSearchAttrs bool
	floorCompare     bool
	floorDelay       time.Duration
	floorJitter      time.Duration
	product          bool
	temporalAddress  string
	workers          int
	cache            int
	cpuProfileDir    string
	breakdown        bool
	childSample      int
	source           string
	verifyEvents     bool
}

func main() {
	setup.ExitIfVersionRequested("bench")
	if len(os.Args) > 1 && os.Args[1] == floorWorkerArg {
		os.Exit(runFloorWorker())
	}
	var o options
	var mix string
	flag.IntVar(&o.devices, "devices", 10000, "devices in the bulk change")
	flag.IntVar(&o.limit, "limit", 20000, "ThingSpace requests per hour per account (both the product and the baseline)")
	flag.DurationVar(&o.latency, "latency", 150*time.Millisecond, "ThingSpace answer latency")
	flag.DurationVar(&o.jitter, "latency-jitter", 100*time.Millisecond, "random extra answer latency")
	flag.DurationVar(&o.completion, "callback-delay", 2*time.Second, "time from an accepted request to the device's callback")
	flag.DurationVar(&o.completionJit, "callback-jitter", 4*time.Second, "random extra callback delay")
	flag.StringVar(&mix, "mix", "activate=40,suspend=20,restore=15,deactivate=15,inventory=10", "operations mix, percent")
	flag.StringVar(&o.baseline, "baseline", "auto", "full: the baseline changes every device; sample: the first -baseline-sample devices, extrapolated; off; auto: full up to 10,000 devices")
	flag.IntVar(&o.baselineSample, "baseline-sample", 2000, "devices the sampled baseline changes")
	flag.StringVar(&o.bin, "bin", "bin", "directory of the product's binaries (make build)")
	flag.StringVar(&o.adminDB, "postgres", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL server; the benchmark creates and drops its own database")
	flag.IntVar(&o.batch, "batch-size", 10000, "devices per ThingSpace request (capped at ThingSpace's maximum per operation)")
	flag.IntVar(&o.window, "window", 500, "device workflows in flight per bulk change (the floor's too)")
	flag.IntVar(&o.shardSize, "shard-size", 2000, "devices per shard: the product's bulk.shard_size (0: never sharded) and the tree floor's")
	flag.IntVar(&o.shardsAtOnce, "shards-at-once", 5, "shards running at once: the product's bulk.shards_at_once and, unless -floor-shards is given, the tree floor's")
	flag.BoolVar(&o.floor, "floor", true, "also run the floor in the same run, against the same server: the design's shape without activities, one parent (-floor=false: not)")
	flag.IntVar(&o.floorShards, "floor-shards", 5, "also run the tree floor: the floor split into shards of -shard-size devices, this many at a time under a root (default: -shards-at-once; 0: not)")
	flag.StringVar(&o.floorOrder, "floor-order", "before", "run the floors (one parent, tree) before the product, after it, or around it (before and after: a drift of the host's load shows, and the ratios use both)")
	flag.BoolVar(&o.floorPageWait, "floor-page-wait", false, "the floor starts children as BulkChange did before start-without-waiting: 200 at a time, waiting for every start of a page (measures what that cost)")
	flag.BoolVar(&o.floorSearchAttrs, "floor-search-attributes", false, "the floor's children carry the product's device-workflow search attributes (bulk change, ICCID, operation): measures what they cost the server")
	flag.BoolVar(&o.floorCompare, "floor-compare", false, "also run, right after the floor, the floor starting children as BulkChange did before start-without-waiting (-floor-page-wait): what waiting for each page's starts cost, in the same run")
	flag.DurationVar(&o.floorDelay, "floor-signal-delay", 0, "time from a floor child's start to its callback signal (0: at once, as for most product devices, whose callback is stored before their workflow starts)")
	flag.DurationVar(&o.floorJitter, "floor-signal-jitter", 0, "random extra floor signal delay")
	flag.BoolVar(&o.product, "product", true, "run the product (-product=false: the floor only)")
	flag.StringVar(&o.temporalAddress, "temporal-address", "", "a running Temporal server (namespace default), such as the PostgreSQL-backed one of `make temporal-postgres-up` (127.0.0.1:7243); default: a dev server of the benchmark's own")
	flag.IntVar(&o.workers, "workers", 1, "worker processes (the product's, and as many for the floor)")
	flag.IntVar(&o.cache, "cache", 0, "worker.sticky_cache_size of the worker processes (0: the worker's default)")
	flag.StringVar(&o.cpuProfileDir, "cpuprofile", "", "directory where each worker process writes its CPU profile (go tool pprof -top BIN FILE)")
	flag.BoolVar(&o.breakdown, "breakdown", true, "read histories after the run: events per device by type, the parent's workflow tasks and child starts")
	flag.IntVar(&o.childSample, "child-sample", 20, "device workflows per operation whose histories the breakdown reads")
	flag.BoolVar(&o.verifyEvents, "verify-events", false, "check the history events visibility reports against each run's own record (slow: one call per workflow)")
	flag.StringVar(&o.source, "source", "", "the source measured, for the table (default: the working directory's git commit and its changed files)")
	flag.Parse()
	if !flagSet("floor-shards") {
		o.floorShards = o.shardsAtOnce
	}
	var err error
	if o.mix, err = parseMix(mix); err != nil {
		fail(err)
	}
	if o.baseline == "auto" {
		o.baseline = "full"
		if o.devices > 10000 {
			o.baseline = "sample"
		}
	}
	if o.floorOrder != "before" && o.floorOrder != "after" && o.floorOrder != "around" {
		fail(fmt.Errorf("-floor-order: before, after or around, not %q", o.floorOrder))
	}
	if o.floorShards < 0 || (o.floorShards > 0 && o.shardSize < 1) {
		fail(fmt.Errorf("-floor-shards %d: the tree floor needs a positive -shard-size, not %d", o.floorShards, o.shardSize))
	}
	if o.workers < 1 || (!o.product && !o.floor && o.floorShards == 0) {
		fail(fmt.Errorf("nothing to run: -workers must be at least 1, and -product, -floor or -floor-shards on"))
	}
	if err := run(o); err != nil {
		fail(err)
	}
}

// flagSet tells whether the command line gave the flag.
func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
