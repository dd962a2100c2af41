package workflows

import (
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// pollerCyclesPerRun bounds one run's history; the poller then continues as
// new.
const pollerCyclesPerRun = 200

// defaultPollerSignalsPerRun is the poll requests a run receives before it
// continues as new when its input does not say: half of the Temporal
// server's default history.maximumSignalsPerExecution (10,000), leaving
// room for the signals that arrive while the run closes.
const defaultPollerSignalsPerRun = 5000

// AccountPoller confirms, for one ThingSpace account, the device changes
// whose callback did not arrive in time. Every cycle it checks the devices
// that are due in one batched pass (a few device-list pages, not one request
// per device) and signals each confirmed device's workflow. It stops when
// nothing is left; the next device that needs polling starts it again.
//
// Every device handed to polling signals the run (RequestPoll), and the
// server refuses signals beyond its per-execution limit: the run continues
// as new after SignalsPerRun of them, counted during its waits too. The
// signals only wake the poller: the devices to poll are the rows of
// poll_requests in PostgreSQL, written before the signal, so a signal that
// reaches a closing run, or that the server refuses (RequestPoll is then
// retried), loses nothing; the next run's first cycle reads every row.
func AccountPoller(ctx workflow.Context, in api.AccountPollerInput) error {
	wake := workflow.GetSignalChannel(ctx, api.PollRequestedSignal)
	interval := in.Interval
	if interval <= 0 {
		interval = time.Minute
	}
	limit := in.SignalsPerRun
	if limit <= 0 {
		limit = defaultPollerSignalsPerRun
	}
	// The version is asked only when the count is reached, so that a run
	// that never gets there records no marker.
	signals, version := 0, -2
	full := func() bool {
		if signals < limit {
			return false
		}
		if version == -2 {
			version = int(workflow.GetVersion(ctx, versionPollerSignalLimit, workflow.DefaultVersion, 1))
		}
		return version >= 1
	}
	for cycle := 0; cycle < pollerCyclesPerRun; cycle++ {
		signals += drain(wake)
		if full() {
			break
		}
		var res activities.PollAccountResult
		err := workflow.ExecuteActivity(withPolling(ctx), a.PollAccount,
			activities.PollAccountInput{AccountName: in.AccountName}).Get(ctx, &res)
		if err != nil {
			return err
		}
		if res.Waiting == 0 {
			n := drain(wake)
			signals += n
			if n == 0 {
				// Nothing to poll and nobody asked meanwhile. A request that
				// arrives while this run completes makes the server reject
				// the completion, and the loop goes round again.
				return nil
			}
		}
		if err := sleepCounting(ctx, interval, wake, &signals, full); err != nil {
			return err
		}
		if full() {
			break
		}
	}
	drain(wake)
	return workflow.NewContinueAsNewError(ctx, AccountPoller, in)
}

// sleepCounting waits for the interval (one timer, as workflow.Sleep)
// while counting the signals that arrive, and stops early once the run is
// full: a burst of poll requests must not wait out the interval while the
// server refuses the signals after them.
func sleepCounting(ctx workflow.Context, d time.Duration, wake workflow.ReceiveChannel, signals *int, full func() bool) error {
	timer := workflow.NewTimer(ctx, d)
	fired := false
	var err error
	for !fired && !full() {
		sel := workflow.NewSelector(ctx)
		sel.AddFuture(timer, func(f workflow.Future) {
			fired = true
			err = f.Get(ctx, nil)
		})
		sel.AddReceive(wake, func(c workflow.ReceiveChannel, _ bool) {
			c.Receive(ctx, nil)
			*signals += 1 + drain(c)
		})
		sel.Select(ctx)
	}
	return err
}

// drain empties a signal channel and reports how many signals it held.
func drain(ch workflow.ReceiveChannel) int {
	n := 0
	for ch.ReceiveAsync(nil) {
		n++
	}
	return n
}
