package chaos

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/harness/stack"
)

// binDir holds the product's binaries, built once for TestChaosShort.
var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Short() && runs("TestChaosShort") {
		// Without -race, like the binaries operators run: the harness, not
		// the product, is what this package's race tests cover.
		os.Exit(stack.WithBinaries(func(dir string) int {
			binDir = dir
			return m.Run()
		}, "../../worker", "../../starter", "../../callback-receiver", "../cmd/thingspace-simulator", "../cmd/revio-simulator"))
	}
	os.Exit(m.Run())
}

// runs reports whether -run selects the test (building the product for
// the unit tests alone would cost a minute).
func runs(name string) bool {
	f := flag.Lookup("test.run")
	if f == nil || f.Value.String() == "" {
		return true
	}
	ok, err := regexp.MatchString(f.Value.String(), name)
	return err != nil || ok
}

// TestChaosShort is the short chaos run of make test: about 500 devices
// in shards of 150 that continue as new every 50 starts, five process
// kills at points of progress (every worker three times, one of two
// workers once, the callback receiver once), two worker kills (every
// worker, one) as a shard begins to continue as new, a Temporal server
// restart, and one of each ThingSpace and Rev.io fault, on a schedule
// drawn from a seed (TSBULK_CHAOS_SEED to replay one). Every invariant
// must hold.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("the chaos run starts the whole product; skipped with -short")
	}
	seed := time.Now().UnixNano() % 1_000_000_000
	if s := os.Getenv("TSBULK_CHAOS_SEED"); s != "" {
		var err error
		seed, err = strconv.ParseInt(s, 10, 64)
		require.NoError(t, err, "TSBULK_CHAOS_SEED")
	}
	t.Logf("chaos seed %d (replay: TSBULK_CHAOS_SEED=%d go test -run TestChaosShort ./chaos/)", seed, seed)
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	res, err := Run(ctx, Options{Devices: 500, Seed: seed, Mix: ShortMix(), Temporal: "dev", BinDir: binDir,
		Repo: "..", Timeout: 15 * time.Minute, Out: &out})
	if err != nil {
		t.Fatalf("chaos run (seed %d): %v\n%s", seed, err, out.String())
	}
	var report bytes.Buffer
	Report(&report, res, nil)
	t.Logf("\n%s", report.String())
	injected := 0
	for _, n := range res.Injected {
		injected += n
	}
	require.Equal(t, len(res.Schedule.Events), injected+res.Shards.Armed.Unfired,
		"every fault of the schedule was injected (but a kill armed for a continue-as-new that none followed)")
	// The tree as Temporal holds it: several shards, each continuing as
	// new, and a worker killed while one did.
	sh := res.Shards
	assert.GreaterOrEqual(t, sh.Shards, 3, "the 500 devices ran as several shards")
	assert.GreaterOrEqual(t, sh.ContinuedAsNew, sh.Shards, "the shards continued as new")
	assert.Positive(t, sh.Kills.NearHandOver, "a worker kill landed at a shard's hand-over to its next run")
	if len(res.Violations) > 0 {
		t.Fatalf("seed %d: %d violations (evidence in %s); run log:\n%s", seed, len(res.Violations),
			filepath.Join(res.Dir, "evidence"), out.String())
	}
}
