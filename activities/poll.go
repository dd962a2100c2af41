package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/thingspace"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// RequestPollInput registers a device change for polling.
type RequestPollInput struct {
	DeviceChangeID int64
	AccountName    string
	ICCID          string
	Operation      string
	RequestID      string
	WorkflowID     string
	Interval       time.Duration
	MaxInterval    time.Duration
}

// RequestPoll hands a device change whose callback did not come in time to
// its account's poller, starting the poller if it is not running. Polling is
// per account, not per device, so that a mass callback outage costs a few
// batched status checks per cycle instead of one request per device.
func (a *Activities) RequestPoll(ctx context.Context, in RequestPollInput) error {
	if err := a.Store.AddPollRequest(ctx, db.PollRequest{
		DeviceChangeID: in.DeviceChangeID, AccountName: in.AccountName, ICCID: in.ICCID, Operation: in.Operation,
		RequestID: in.RequestID, WorkflowID: in.WorkflowID, Interval: in.Interval, MaxInterval: in.MaxInterval,
	}); err != nil {
		return err
	}
	_, err := a.Temporal.SignalWithStartWorkflow(ctx, api.AccountPollerWorkflowID(in.AccountName), api.PollRequestedSignal, nil,
		client.StartWorkflowOptions{
			ID:                       api.AccountPollerWorkflowID(in.AccountName),
			TaskQueue:                api.TaskQueue,
			WorkflowIDConflictPolicy: enums.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		},
		api.AccountPollerWorkflowType, api.AccountPollerInput{AccountName: in.AccountName, Interval: in.Interval})
	if err != nil {
		return fmt.Errorf("wake the poller of %s: %w", in.AccountName, err)
	}
	return nil
}

// CancelPoll removes a device change from polling (its confirmation came).
func (a *Activities) CancelPoll(ctx context.Context, deviceChangeID int64) error {
	return a.Store.RemovePollRequest(ctx, deviceChangeID)
}

// PollAccountInput names the account to poll.
type PollAccountInput struct {
	AccountName string
}

// PollAccountResult counts one polling cycle.
type PollAccountResult struct {
	Waiting  int `json:"waiting"`  // device changes still registered after this cycle
	Checked  int `json:"checked"`  // device changes due and checked
	Resolved int `json:"resolved"` // confirmations delivered
}

// PollAccount checks at ThingSpace the account's device changes that are
// due, and signals each one whose device reached a final state to its
// workflow, through the same signal as a callback. A device still pending
// is checked again later, with a doubling wait.
func (a *Activities) PollAccount(ctx context.Context, in PollAccountInput) (*PollAccountResult, error) {
	ctx = forAccount(ctx, in.AccountName)
	limit := a.PollMaxRequests * 2000
	if limit <= 0 {
		limit = 10000
	}
	due, total, err := a.Store.DuePolls(ctx, in.AccountName, limit)
	if err != nil {
		return nil, err
	}
	res := &PollAccountResult{Waiting: total, Checked: len(due)}
	if len(due) == 0 {
		return res, nil
	}
	ids := make([]string, len(due))
	for i, p := range due {
		ids[i] = p.ICCID
	}
	devices, err := a.deviceStates(ctx, in.AccountName, ids)
	if err != nil {
		return nil, thingSpaceError("poll "+in.AccountName, err)
	}
	now := time.Now()
	for _, p := range due {
		d, found := devices[p.ICCID]
		conf, done := pollVerdict(p, d, found, now)
		if !done {
			if err := a.Store.DeferPoll(ctx, p.DeviceChangeID, p.NextWait(), string(d.State())); err != nil {
				return nil, err
			}
			continue
		}
		if err := a.Temporal.SignalWorkflow(ctx, p.WorkflowID, "", api.ConfirmationSignal, conf); err != nil {
			var nf *serviceerror.NotFound
			if !errors.As(err, &nf) {
				return nil, fmt.Errorf("signal %s: %w", p.WorkflowID, err)
			}
			// The workflow has finished (its callback won): nothing to deliver.
		}
		if err := a.Store.RemovePollRequest(ctx, p.DeviceChangeID); err != nil {
			return nil, err
		}
		res.Resolved++
		res.Waiting--
	}
	return res, nil
}

// pollVerdict decides from a device's listed state whether its change is
// confirmed, failed, or still pending.
func pollVerdict(p db.PollRequest, d thingspace.Device, found bool, now time.Time) (api.Confirmation, bool) {
	conf := api.Confirmation{Source: api.SourcePoll, RequestID: p.RequestID, At: now}
	if !found {
		conf.FaultCode = thingspace.CodeDeviceNotFound
		conf.FaultMessage = "ThingSpace's device list does not have this device"
		return conf, true
	}
	st := d.State()
	conf.State = string(st)
	target := targetState(p.Operation)
	if p.Operation == "contactInfo" {
		// A PPU update leaves the state alone and the device list does not
		// show the PPU (extendedAttributes are unconfirmed): an active,
		// settled device is the best evidence there is.
		target = thingspace.StateActive
	}
	switch {
	case st == target && p.Operation == "activate" && activatedBefore(d, p.SubmittedAt):
		// Active since before our request: the DeviceAlreadyActive fault
		// that would have said so was lost with its callback.
		conf.FaultCode = thingspace.CodeDeviceAlreadyActive
		conf.FaultMessage = "device was already active before the activation request (seen by polling)"
		conf.MSISDN = d.MSISDN()
		return conf, true
	case st == target:
		conf.Success = true
		conf.MSISDN = d.MSISDN()
		return conf, true
	case st.Pending():
		return conf, false
	default:
		// ThingSpace puts a device into a pending state when it accepts a
		// change; after the callback timeout, a device neither pending nor in
		// the target state means the change failed.
		conf.FaultCode = db.CodePollStateInvalid
		conf.FaultMessage = fmt.Sprintf("device is %s at ThingSpace after the %s request (expected %s)", st, p.Operation, target)
		return conf, true
	}
}

// activatedBefore reports whether the device's last activation predates the
// request.
func activatedBefore(d thingspace.Device, submitted *time.Time) bool {
	if submitted == nil || d.LastActivationDate == "" {
		return false
	}
	at, err := time.Parse(time.RFC3339, d.LastActivationDate)
	return err == nil && at.Before(*submitted)
}
