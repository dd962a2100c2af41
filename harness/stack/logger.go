package stack

import (
	"io"
	"log/slog"

	tlog "go.temporal.io/sdk/log"
)

// quietTemporalLogger keeps the SDK's own logging out of test output.
func quietTemporalLogger() tlog.Logger {
	return tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
}
