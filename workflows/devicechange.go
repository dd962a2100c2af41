package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/workflow"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// DeviceChange follows one device's change to its end: it waits for
// ThingSpace's confirmation (a callback signal, with a timer that falls back
// to polling), records the outcome, runs the follow-up step the record owes
// (PPU update of an already-active device, the Rev.io service after an
// activation, its disconnection after a deactivation) and reports to its
// parent.
func DeviceChange(ctx workflow.Context, in api.DeviceChangeInput) (*api.DeviceResult, error) {
	d := newDeviceRun(ctx, in)
	if err := d.setup(); err != nil {
		return nil, err
	}
	dev, err := d.load()
	if err != nil {
		return nil, err
	}
	res, err := d.outcome(dev)
	if err != nil {
		return nil, err
	}
	d.followUp(dev, &res)
	d.report(res)
	return &res, nil
}

type deviceRun struct {
	ctx     workflow.Context
	in      api.DeviceChangeInput
	logger  log.Logger
	signals workflow.ReceiveChannel
	status  api.DeviceStatus
	start   time.Time
	// recorded is the outcome as PostgreSQL holds it (the first one
	// written wins); the follow-up is decided from it.
	recorded *activities.CompleteResult
	// endedBeforeRun: the change already had its outcome when this run
	// loaded it.
	endedBeforeRun bool
}

func newDeviceRun(ctx workflow.Context, in api.DeviceChangeInput) *deviceRun {
	return &deviceRun{
		ctx: ctx,
		in:  in,
		logger: log.With(
			workflow.GetLogger(ctx),
			"bulkChangeId",
			in.BulkChangeID,
			"iccid",
			in.ICCID,
			"operation",
			in.Operation,
		),
		signals: workflow.GetSignalChannel(ctx, api.ConfirmationSignal),
		start:   workflow.Now(ctx),
	}
}

func (d *deviceRun) setup() error {
	return workflow.SetQueryHandler(
		d.ctx,
		api.DeviceStatusQuery,
		func() (api.DeviceStatus, error) { return d.status, nil },
	)
}

func (d *deviceRun) step(name change.Step) {
	d.status.Step = name
	d.status.WaitingSince = workflow.Now(d.ctx)
	// Where it stands, for the Web UI (no PPU, no MSISDN).
	workflow.SetCurrentDetails(d.ctx, fmt.Sprintf("%s %s · %s since %s", d.in.Operation, d.in.ICCID,
		stepWords[name], d.status.WaitingSince.UTC().Format(time.RFC3339)))
}

// stepWords say each step to a person.
var stepWords = map[change.Step]string{
	change.StepLoading:              "loading its device change",
	change.StepWaitingForCallback:   "waiting for ThingSpace's callback",
	change.StepPolling:              "no callback in time: polling ThingSpace",
	change.StepUpdatingPPU:          "updating the primary place of use",
	change.StepRecording:            "recording the outcome",
	change.StepCreatingBilling:      "creating the Rev.io service line",
	change.StepDisconnectingBilling: "disconnecting the Rev.io service line",
	change.StepDone:                 "done",
}

func (d *deviceRun) load() (*activities.DeviceState, error) {
	d.step(change.StepLoading)
	if k := d.in.Known; d.in.Protocol >= 1 && k.Complete() {
		// The parent read the outcome or ThingSpace's answer when it listed
		// the change: reading it again would cost a marker event and tell
		// nothing more. The input is the same on every attempt, so the
		// path taken never depends on an earlier attempt.
		d.status.RequestID = k.RequestID
		return d.known(k), nil
	}
	var dev activities.DeviceState
	err := workflow.ExecuteLocalActivity(withLocalDB(d.ctx), a.LoadDeviceChange, d.in.DeviceChangeID).Get(d.ctx, &dev)
	if err != nil {
		return nil, fmt.Errorf("load device change %d: %w", d.in.DeviceChangeID, err)
	}
	d.status.RequestID = dev.RequestID
	return &dev, nil
}

// known is the device change as the parent's input describes it.
func (d *deviceRun) known(k *api.KnownDeviceChange) *activities.DeviceState {
	dev := &activities.DeviceState{
		ID:           d.in.DeviceChangeID,
		BulkChangeID: d.in.BulkChangeID,
		ICCID:        d.in.ICCID,
		Operation:    d.in.Operation,
		AccountName:  d.in.AccountName,
		Status:       k.Status,
		Final:        k.Final,
		RequestID:    k.RequestID,
		HasPPU:       k.HasPPU,
		HasBilling:   k.HasBilling,
	}
	if c := k.Confirmation; c != nil {
		if c.Source == change.BySync {
			dev.Sync = c
		} else {
			dev.Stored = []api.Confirmation{*c}
		}
	}
	return dev
}

// outcome records how the change ended. A change that already has its
// outcome when the workflow loads it was ended either before the workflow
// ran (refused when its batch was claimed) or by an earlier attempt of this
// very workflow task: local activities run inside the task, and their
// results reach the history only when the task completes, so a worker that
// died after CompleteDeviceChange wrote left the write in PostgreSQL and no
// trace in the history. Either way the stored record is returned as it is,
// and what follows is decided from that record, never from which of the two
// branches ran (docs/architecture.md, "Decisions never depend on an earlier
// attempt").
func (d *deviceRun) outcome(dev *activities.DeviceState) (api.DeviceResult, error) {
	if dev.Final {
		d.endedBeforeRun = true
		return d.complete(activities.CompleteInput{Status: dev.Status})
	}
	return d.conclude(dev, d.confirmation(dev))
}

// confirmation returns ThingSpace's answer for the device: already known
// (a synchronous answer, or a callback stored before this workflow started)
// or awaited.
func (d *deviceRun) confirmation(dev *activities.DeviceState) api.Confirmation {
	if dev.Sync != nil {
		return *dev.Sync
	}
	if c, ok := matching(dev.Stored, dev.RequestID); ok {
		return c
	}
	return d.await(dev.RequestID, change.Await(dev.Operation))
}

// await waits for the confirmation of requestID: first for the callback
// (CallbackTimeout, 30 minutes by default), then, when the timer fires first,
// through the account's poller until ConfirmDeadline. A callback arriving
// while polling still wins: both come through the same signal.
func (d *deviceRun) await(requestID string, awaited change.Awaited) api.Confirmation {
	t := d.in.Options.Timing
	deadline := d.start.Add(t.ConfirmDeadline)
	if d.in.Options.CallbacksEnabled {
		d.step(change.StepWaitingForCallback)
		if c, ok := d.receive(requestID, workflow.Now(d.ctx).Add(t.CallbackTimeout)); ok {
			return c
		}
		// The callback may be stored with its signal lost (receiver crash):
		// check before spending ThingSpace requests.
		var stored []api.Confirmation
		if err := workflow.ExecuteLocalActivity(withLocalDB(d.ctx), a.StoredConfirmations, d.in.DeviceChangeID).Get(d.ctx, &stored); err == nil {
			if c, ok := matching(stored, requestID); ok {
				return c
			}
		}
	}
	d.step(change.StepPolling)
	poll := activities.RequestPollInput{
		DeviceChangeID: d.in.DeviceChangeID, AccountName: d.in.AccountName, ICCID: d.in.ICCID, Operation: awaited,
		RequestID: requestID, WorkflowID: workflow.GetInfo(d.ctx).WorkflowExecution.ID,
		Interval: t.PollInterval, MaxInterval: t.PollMaxInterval,
	}
	if err := workflow.ExecuteActivity(withDB(d.ctx), a.RequestPoll, poll).Get(d.ctx, nil); err != nil {
		d.logger.Error("could not register for polling", "error", err)
	}
	c, ok := d.receive(requestID, deadline)
	_ = workflow.ExecuteLocalActivity(withLocalDB(d.ctx), a.CancelPoll, d.in.DeviceChangeID).Get(d.ctx, nil)
	if !ok {
		return api.Confirmation{Source: change.ByPoll, RequestID: requestID, FaultCode: change.NotConfirmed,
			FaultMessage: fmt.Sprintf(
				"ThingSpace did not confirm the change within %s",
				t.ConfirmDeadline,
			), At: workflow.Now(d.ctx)}
	}
	return c
}

// receive waits until the deadline for a confirmation of requestID.
// Confirmations of another request (a late duplicate of an earlier one) are
// skipped. With no requestID (its answer was lost and the request
// reconciled), any confirmation for the device counts.
func (d *deviceRun) receive(requestID string, until time.Time) (api.Confirmation, bool) {
	for {
		left := until.Sub(workflow.Now(d.ctx))
		if left <= 0 {
			return api.Confirmation{}, false
		}
		var c api.Confirmation
		if ok, _ := d.signals.ReceiveWithTimeout(d.ctx, left, &c); !ok {
			return api.Confirmation{}, false
		}
		if requestID == "" || c.RequestID == "" || c.RequestID == requestID {
			return c, true
		}
		d.logger.Info("ignoring a confirmation of another request", "requestId", c.RequestID)
	}
}

func matching(cs []api.Confirmation, requestID string) (api.Confirmation, bool) {
	for _, c := range cs {
		if requestID == "" || c.RequestID == requestID {
			return c, true
		}
	}
	return api.Confirmation{}, false
}

// conclude turns ThingSpace's answer into the device change's outcome.
func (d *deviceRun) conclude(dev *activities.DeviceState, c api.Confirmation) (api.DeviceResult, error) {
	in := activities.CompleteInput{ConfirmedBy: c.Source, ConfirmedAt: c.At, RequestID: c.RequestID}
	if !c.Success {
		if dev.Operation == change.Activate && c.FaultCode == change.FaultAlreadyActive {
			return d.alreadyActive(dev, c)
		}
		in.Status, in.ErrorCode, in.ErrorMessage = change.Failed, c.FaultCode, c.FaultMessage
		in.ObservedState = c.State
		if in.ErrorCode == "" {
			in.ErrorCode = change.Unexplained
		}
		return d.complete(in)
	}
	// The table of operations says what a success means: the state the
	// device is left in and the outcome recorded.
	in.Status = change.Processed
	in.BillingPending = d.owesBilling(dev)
	in.Outcome, in.FinalState = dev.Operation.Outcome(), dev.Operation.Target()
	switch dev.Operation {
	case change.Activate:
		in.MSISDN = c.MSISDN
		if in.MSISDN == "" {
			// The callback did not carry the MSISDN: read it from the device list.
			in.MSISDN = d.lookupMSISDN(dev)
		}
	case change.Deactivate:
		// The line's number is released.
		in.ReleaseMSISDN = true
	}
	return d.complete(in)
}

// owesBilling says whether a successful change of this device owes a Rev.io
// step: the service line after an activation with billing data, its
// disconnection after a deactivation when configured. The record written
// by CompleteDeviceChange carries the answer (billing PENDING).
func (d *deviceRun) owesBilling(dev *activities.DeviceState) bool {
	switch dev.Operation {
	case change.Activate:
		return dev.HasBilling && d.in.Options.BillingEnabled
	case change.Deactivate:
		return d.in.Options.DisconnectBillingOnDeactivate
	}
	return false
}

// alreadyActive handles an activation of a device that is already active:
// it is not activated again; its PPU is updated when the change carries one.
// fault is ThingSpace's DeviceAlreadyActive answer, whose source (sync,
// callback or poll) is how the outcome was confirmed.
func (d *deviceRun) alreadyActive(dev *activities.DeviceState, fault api.Confirmation) (api.DeviceResult, error) {
	in := activities.CompleteInput{
		Status:      change.Processed,
		Outcome:     change.AlreadyActive,
		FinalState:  change.StateActive,
		ConfirmedBy: fault.Source,
		ConfirmedAt: fault.At,
		RequestID:   fault.RequestID,
	}
	if in.ConfirmedAt.IsZero() {
		in.ConfirmedAt = workflow.Now(d.ctx)
	}
	if dev.HasPPU {
		c := d.updatePlaceOfUse()
		if !c.Success {
			in.Status, in.Outcome, in.FinalState = change.Failed, "", ""
			in.ErrorCode = c.FaultCode
			in.ErrorMessage = "device is already active; its PPU update failed: " + c.FaultMessage
			return d.complete(in)
		}
		in.Outcome, in.ConfirmedBy, in.ConfirmedAt, in.RequestID = change.AlreadyActivePPU, c.Source, c.At, c.RequestID
		if c.Source != change.ByCallback {
			// Polling saw the device active, as it was before: that proves
			// the request was taken, not that the address was set.
			in.Outcome = change.AlreadyActivePPUUnconfirmed
		}
	}
	in.MSISDN = d.lookupMSISDN(dev)
	in.BillingPending = d.owesBilling(dev)
	return d.complete(in)
}

// updatePlaceOfUse sends the change's PPU to an already-active device and
// waits for ThingSpace's confirmation of that request.
func (d *deviceRun) updatePlaceOfUse() api.Confirmation {
	d.step(change.StepUpdatingPPU)
	var update activities.PPUUpdateResult
	err := workflow.ExecuteActivity(
		withThingSpace(d.ctx),
		a.UpdatePlaceOfUse,
		activities.PPUUpdateInput{
			BulkChangeID:   d.in.BulkChangeID,
			DeviceChangeID: d.in.DeviceChangeID,
		},
	).Get(d.ctx, &update)
	switch {
	case err != nil:
		return api.Confirmation{FaultCode: change.PPUUpdateFailed, FaultMessage: rootMessage(err)}
	case update.Refusal != nil:
		return *update.Refusal
	}
	d.status.RequestID = update.RequestID
	return d.await(update.RequestID, change.AwaitPPUUpdate)
}

// lookupMSISDN reads the device's MSISDN from ThingSpace's device list; ""
// when it cannot.
func (d *deviceRun) lookupMSISDN(dev *activities.DeviceState) string {
	var got activities.DeviceLookup
	in := activities.LookupInput{
		BulkChangeID:   d.in.BulkChangeID,
		DeviceChangeID: dev.ID,
		ICCID:          dev.ICCID,
		AccountName:    dev.AccountName,
	}
	if err := workflow.ExecuteActivity(withThingSpace(d.ctx), a.LookupDevice, in).Get(d.ctx, &got); err != nil {
		d.logger.Warn("could not read the device's MSISDN", "error", err)
		return ""
	}
	return got.MSISDN
}

func (d *deviceRun) complete(in activities.CompleteInput) (api.DeviceResult, error) {
	d.step(change.StepRecording)
	in.DeviceChangeID, in.Operation = d.in.DeviceChangeID, d.in.Operation
	var res activities.CompleteResult
	// Recording the outcome is a short database transaction: as a local
	// activity it costs one marker instead of a task-queue round trip and
	// four events per device. Device workflows started before this change
	// replay the regular activity they recorded. A child of protocol 1 was
	// started by code that has the change: it records no version marker.
	var f workflow.Future
	if d.in.Protocol >= 1 ||
		workflow.GetVersion(d.ctx, versionCompleteAsLocalActivity, workflow.DefaultVersion, 1) != workflow.DefaultVersion {
		f = workflow.ExecuteLocalActivity(withLocalDB(d.ctx), a.CompleteDeviceChange, in)
	} else {
		f = workflow.ExecuteActivity(withDB(d.ctx), a.CompleteDeviceChange, in)
	}
	if err := f.Get(d.ctx, &res); err != nil {
		return api.DeviceResult{}, fmt.Errorf("record outcome of %s: %w", d.in.ICCID, err)
	}
	d.recorded = &res
	d.status.Outcome = res.Outcome
	return api.DeviceResult{
		DeviceChangeID: d.in.DeviceChangeID,
		ICCID:          d.in.ICCID,
		Operation:      d.in.Operation,
		Status:         res.Status,
		Outcome:        res.Outcome,
		ErrorCode:      res.ErrorCode,
	}, nil
}

// followUp runs the Rev.io step the recorded outcome owes. A Rev.io failure
// does not undo the change: it is recorded on the device change and can be
// retried later on its own (`starter billing-retry`).
func (d *deviceRun) followUp(dev *activities.DeviceState, res *api.DeviceResult) {
	if !d.billingOwed(dev) {
		return
	}
	in := activities.BillingInput{BulkChangeID: d.in.BulkChangeID, DeviceChangeID: d.in.DeviceChangeID}
	var err error
	if dev.Operation == change.Deactivate {
		d.step(change.StepDisconnectingBilling)
		err = workflow.ExecuteActivity(withRevio(d.ctx, d.in.Options.Timing.BillingPatience), a.DisconnectBilling, in).Get(d.ctx, nil)
	} else {
		d.step(change.StepCreatingBilling)
		err = workflow.ExecuteActivity(withRevio(d.ctx, d.in.Options.Timing.BillingPatience), a.CreateBillingService, in).Get(d.ctx, nil)
	}
	if err == nil {
		return
	}
	res.BillingError = true
	d.logger.Error("Rev.io step failed", "error", err)
	rec := activities.RecordBillingFailureInput{
		DeviceChangeID: d.in.DeviceChangeID,
		Message:        rootMessage(err),
		Code:           errorType(err),
	}
	if rerr := workflow.ExecuteActivity(withDB(d.ctx), a.RecordBillingFailure, rec).Get(d.ctx, nil); rerr != nil {
		d.logger.Error("could not record the Rev.io failure", "error", rerr)
	}
}

// billingOwed reads the recorded outcome: a Rev.io step is owed when the
// record says billing PENDING. Records returned by code older than that
// field carry no billing status; for them the rule that wrote PENDING is
// applied to the change itself, which gives the same answer.
//
// A change that had its outcome when this run loaded it took no follow-up
// before this fix, even when its record owed one (the defect of a worker
// dying between recording and scheduling the Rev.io step); the version
// keeps those histories replaying, and is recorded only on that path.
func (d *deviceRun) billingOwed(dev *activities.DeviceState) bool {
	if d.recorded == nil || d.recorded.Status != change.Processed {
		return false
	}
	owed := d.owesBilling(dev)
	if d.recorded.BillingStatus != "" {
		owed = d.recorded.BillingStatus == change.BillingPending
	}
	if !owed || !d.endedBeforeRun {
		return owed
	}
	return d.in.Protocol >= 1 ||
		workflow.GetVersion(d.ctx, versionFollowUpOfRecordedOutcome, workflow.DefaultVersion, 1) >= 1
}

// report signals the result to the parent. A parent that no longer runs
// (terminated by an operator) is not an error for the device.
func (d *deviceRun) report(res api.DeviceResult) {
	d.step(change.StepDone)
	if d.in.ParentWorkflowID == "" {
		return
	}
	err := workflow.SignalExternalWorkflow(d.ctx, d.in.ParentWorkflowID, "", api.DeviceResultSignal, res).
		Get(d.ctx, nil)
	if err != nil {
		d.logger.Warn("could not report to the bulk change", "error", err)
	}
	// Late copies of the confirmation (a duplicated callback, a poll racing
	// the callback) change nothing; take them off the channel so they are
	// not reported as unhandled.
	drain(d.signals)
}
