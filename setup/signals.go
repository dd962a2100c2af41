// Package shutdown gives every command of the product the same stop
// signals: Ctrl-C at a terminal, and SIGTERM, which docker stop, systemd
// and Kubernetes send before they kill. A process that ignored SIGTERM
// would be killed mid-task after the grace period instead of draining.
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
