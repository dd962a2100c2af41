package changefile

// What the fuzz targets share besides the oracle: their seeds, the parse
// options drawn from a fuzzed byte, and the bounds that keep an iteration
// quick.

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/iot-ops/tsbulk/change"
)

// maxFuzzInput bounds one input so that every iteration is quick; long
// fields and many rows still fit.
const maxFuzzInput = 64 << 10

// parseTimeout bounds one parse; a hang fails the input instead of stalling
// the fuzzer until its global timeout.
const parseTimeout = 10 * time.Second

// addSeeds adds each seed file twice: with no default operation, and with
// suspend as the default.
func addSeeds(f *testing.F, seeds []string) {
	for _, s := range seeds {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(2)) // default operation suspend
	}
}

// fuzzOptions derives parse options from one fuzzed byte: the low bits pick
// the default operation (or none), bit 3 lowers the row limit so the
// "too many rows" path is exercised too.
func fuzzOptions(b uint8) Options {
	var opt Options
	if i := int(b & 7); i >= 1 && i <= len(change.Operations) {
		opt.DefaultOperation = change.Operations[i-1]
	}
	if b&8 != 0 {
		opt.MaxRows = 3
	}
	return opt
}

// parseWithin runs parse on a goroutine and fails the input if it does not
// return within parseTimeout (a panic on that goroutine still crashes the
// fuzzer, which records the input).
func parseWithin(t *testing.T, parse func() ([]DeviceRequest, error)) ([]DeviceRequest, error) {
	t.Helper()
	type result struct {
		reqs []DeviceRequest
		err  error
	}
	done := make(chan result, 1)
	go func() {
		reqs, err := parse()
		done <- result{reqs, err}
	}()
	select {
	case r := <-done:
		return r.reqs, r.err
	case <-time.After(parseTimeout):
		t.Fatalf("parse did not return within %s", parseTimeout)
		return nil, nil
	}
}

// addSeedFiles adds every file matching the globs (relative to the package
// directory) as a seed, with each of a few option bytes.
func addSeedFiles(f *testing.F, opts []uint8, globs ...string) {
	f.Helper()
	n := 0
	for _, g := range globs {
		paths, err := filepath.Glob(g)
		if err != nil {
			f.Fatal(err)
		}
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			for _, o := range opts {
				f.Add(b, o)
			}
			n++
		}
	}
	if n == 0 {
		f.Fatalf("no seed files match %v", globs)
	}
}
