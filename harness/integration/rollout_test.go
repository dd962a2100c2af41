package integration

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/harness/stack"
	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
)

// TestStoppingWorkerLetsInFlightCallFinish: a deploy stops the worker
// while its ThingSpace call is on the wire. With worker.stop_timeout the
// call gets its answer and the request is recorded ACCEPTED; without it
// the SDK cancels the call at once and the request is left SENDING, its
// outcome unknown until a later worker reconciles it.
func TestStoppingWorkerLetsInFlightCallFinish(t *testing.T) {
	s := newStack(t, stack.Options{
		// Every state change is applied at once and answered 4 s later.
		ThingSpace: tssim.Config{CompletionDelay: 200 * time.Millisecond,
			Faults: tssim.Faults{TimeoutRate: 1, StallFor: 4 * time.Second}},
		Config: func(c *config.Config) { c.Worker.StopTimeout = 20 * time.Second },
	})
	w, err := s.StartWorker()
	require.NoError(t, err)
	devs, file := suspendFile(t, s, "8914800017", 3)
	res := submit(t, s, file)

	require.Eventually(t, func() bool { return s.TS.Stats(time.Hour).AcceptedChanges[devs[0].ICCID]["suspend"] == 1 },
		time.Minute, 50*time.Millisecond, "the suspend reaches ThingSpace")
	require.Equal(t, 1, countRows(t, s,
		`SELECT count(*) FROM thingspace_requests WHERE bulk_change_id = $1 AND state = 'SENDING'`, res.ID),
		"the worker is waiting for ThingSpace's answer")
	stopped := time.Now()
	w.Stop()
	require.Equal(t, 0, countRows(t, s,
		`SELECT count(*) FROM thingspace_requests WHERE bulk_change_id = $1 AND state <> 'ACCEPTED'`, res.ID),
		"the call in flight finished and was recorded before the worker stopped (stopping took %s)",
		time.Since(stopped).Round(time.Millisecond))
}
