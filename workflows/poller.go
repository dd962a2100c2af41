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

// AccountPoller confirms, for one ThingSpace account, the device changes
// whose callback did not arrive in time. Every cycle it checks the devices
// that are due in one batched pass (a few device-list pages, not one request
// per device) and signals each confirmed device's workflow. It stops when
// nothing is left; the next device that needs polling starts it again.
func AccountPoller(ctx workflow.Context, in api.AccountPollerInput) error {
	wake := workflow.GetSignalChannel(ctx, api.PollRequestedSignal)
	interval := in.Interval
	if interval <= 0 {
		interval = time.Minute
	}
	for cycle := 0; cycle < pollerCyclesPerRun; cycle++ {
		drain(wake)
		var res activities.PollAccountResult
		err := workflow.ExecuteActivity(withPolling(ctx), a.PollAccount,
			activities.PollAccountInput{AccountName: in.AccountName}).Get(ctx, &res)
		if err != nil {
			return err
		}
		if res.Waiting == 0 && !drain(wake) {
			// Nothing to poll and nobody asked meanwhile. A request that
			// arrives while this run completes makes the server reject the
			// completion, and the loop goes round again.
			return nil
		}
		if err := workflow.Sleep(ctx, interval); err != nil {
			return err
		}
	}
	drain(wake)
	return workflow.NewContinueAsNewError(ctx, AccountPoller, in)
}

// drain empties a signal channel and reports whether it held anything.
func drain(ch workflow.ReceiveChannel) bool {
	got := false
	for ch.ReceiveAsync(nil) {
		got = true
	}
	return got
}
