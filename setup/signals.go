// A process that ignored SIGTERM would be killed mid-task after the grace
// period instead of draining: every command takes the same stop signals.

package setup

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// OnSignal returns a context cancelled by the first SIGINT or SIGTERM; a
// second one then kills the process as usual. stop releases the signals.
func OnSignal() (ctx context.Context, stop context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}
