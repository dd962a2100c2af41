package setup_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/iot-ops/tsbulk/setup"
)

// Ctrl-C and an orchestrator's SIGTERM must each stop the context, not the
// process.
func TestStopSignalsCancelTheContext(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			ctx, stop := setup.OnSignal()
			defer stop()
			if err := syscall.Kill(syscall.Getpid(), sig); err != nil {
				t.Fatal(err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Second):
				t.Fatalf("%v did not cancel the context", sig)
			}
		})
	}
}
