// Package change is the product's vocabulary: the operations of a bulk
// change, the states a device goes through at ThingSpace, the statuses,
// outcomes and error codes of a device change, and the phases and steps the
// workflows report. It imports nothing of the project, so the workflows, the
// activities, the store and the submission code all speak it, and each edge
// (the ThingSpace client, PostgreSQL) maps to it.
//
// Every type is a string: values marshal as they always have, so recorded
// workflow histories and stored rows read the same.
package change

import (
	"fmt"
	"strings"
)

// Operation is the status change asked for one device.
type Operation string

// The operations of a bulk change.
const (
	Activate   Operation = "activate"
	Suspend    Operation = "suspend"
	Restore    Operation = "restore"
	Deactivate Operation = "deactivate"
	// Inventory adds the device to the ThingSpace inventory (pre-active).
	Inventory Operation = "inventory"
)

// Operations lists the operations in the order files and reports show them.
var Operations = []Operation{Activate, Suspend, Restore, Deactivate, Inventory}

// State is a device's state at ThingSpace, in the canonical spelling.
type State string

// Device states. A device shows a pending state while ThingSpace carries
// out a change it accepted.
const (
	StateUnknown             State = "unknown"
	StatePreActive           State = "preactive"
	StateActive              State = "active"
	StateSuspended           State = "suspended"
	StateDeactive            State = "deactive"
	StatePendingActivation   State = "pending_activation"
	StatePendingSuspend      State = "pending_suspend"
	StatePendingResume       State = "pending_resume"
	StatePendingDeactivation State = "pending_deactivation"
	StatePendingPreActive    State = "pending_preactive"
	// StatePendingOther: ThingSpace shows a pending state for a change the
	// product does not make (e.g. "pending mdn change").
	StatePendingOther State = "pending"
)

// Pending reports whether the state is transitional: a change is under way
// and any other change fails meanwhile.
func (s State) Pending() bool {
	switch s {
	case StatePendingActivation, StatePendingSuspend, StatePendingResume,
		StatePendingDeactivation, StatePendingPreActive, StatePendingOther:
		return true
	}
	return false
}

// Outcome is how a successful device change ended.
type Outcome string

// AlreadyActive reports whether the outcome is one of an activation that
// found the device already active.
func (o Outcome) AlreadyActive() bool {
	return o == AlreadyActive || o == AlreadyActivePPU || o == AlreadyActivePPUUnconfirmed
}

// Outcomes of successful device changes.
const (
	Activated        Outcome = "activated"
	AlreadyActive    Outcome = "already_active"
	AlreadyActivePPU Outcome = "already_active_ppu_updated"
	// AlreadyActivePPUUnconfirmed: the PPU update was accepted but its own
	// callback never came. Polling cannot stand in: the device was active
	// before the update and stays active after it, and ThingSpace's
	// request-status call covers single-device state changes, not
	// contactInfo. The address may or may not be the one sent.
	AlreadyActivePPUUnconfirmed Outcome = "already_active_ppu_unconfirmed"
	Suspended                   Outcome = "suspended"
	Restored                    Outcome = "restored"
	Deactivated                 Outcome = "deactivated"
	AddedToInventory            Outcome = "added_to_inventory"
)

// operationFacts is what each operation means at ThingSpace: the state a
// success leaves the device in, the state it shows meanwhile, and the
// outcome recorded. One table, read by the workflows (conclusions), the
// poller (verdicts) and the reconciliation of lost answers.
var operationFacts = map[Operation]struct {
	target, pending State
	outcome         Outcome
}{
	Activate:   {StateActive, StatePendingActivation, Activated},
	Suspend:    {StateSuspended, StatePendingSuspend, Suspended},
	Restore:    {StateActive, StatePendingResume, Restored},
	Deactivate: {StateDeactive, StatePendingDeactivation, Deactivated},
	Inventory:  {StatePreActive, StatePendingPreActive, AddedToInventory},
}

// Valid reports whether o is one of the operations.
func (o Operation) Valid() bool {
	_, ok := operationFacts[o]
	return ok
}

// Target is the state a successful change leaves the device in
// (StateUnknown for an invalid operation).
func (o Operation) Target() State {
	if f, ok := operationFacts[o]; ok {
		return f.target
	}
	return StateUnknown
}

// Pending is the state the device shows while the change is under way.
func (o Operation) Pending() State {
	if f, ok := operationFacts[o]; ok {
		return f.pending
	}
	return StateUnknown
}

// Outcome is what a successful change of this operation records.
func (o Operation) Outcome() Outcome { return operationFacts[o].outcome }

// deactiveAlias is how the predecessor system spelled deactivate (after
// ThingSpace's state name "deactive"); files exported from it still use it.
const deactiveAlias = "deactive"

// maxQuoted is the most characters of an unknown operation quoted back in
// an error: the text may be a whole mistyped cell.
const maxQuoted = 40

// ParseOperation reads an operation as an operator typed it: a file's
// operation column, a default operation. Case and surrounding spaces are
// ignored because files are typed by hand and come out of spreadsheets.
func ParseOperation(s string) (Operation, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if t == deactiveAlias {
		return Deactivate, nil
	}
	if o := Operation(t); o.Valid() {
		return o, nil
	}
	if t == "" {
		return "", fmt.Errorf("operation is empty; valid values: %s", OperationNames())
	}
	if r := []rune(s); len(r) > maxQuoted {
		s = string(r[:maxQuoted]) + "…"
	}
	return "", fmt.Errorf("unknown operation %q; valid values: %s", s, OperationNames())
}

// OperationNames lists the operations for a message, in Operations' order.
func OperationNames() string {
	names := make([]string, len(Operations))
	for i, o := range Operations {
		names[i] = string(o)
	}
	return strings.Join(names, ", ")
}

// Awaited names what a device's workflow waits to have confirmed: the state
// change of its operation, or the PPU update of an already-active device,
// which changes no state (the poller judges it differently).
type Awaited string

// AwaitPPUUpdate is the PPU update of an already-active device (ThingSpace's
// contactInfo request).
const AwaitPPUUpdate Awaited = "contactInfo"

// Await names the confirmation of an operation's state change.
func Await(o Operation) Awaited { return Awaited(o) }

// Operation is the operation awaited ("" for a PPU update).
func (w Awaited) Operation() Operation {
	if o := Operation(w); o.Valid() {
		return o
	}
	return ""
}

// Status is where a device change stands.
type Status string

// Device change statuses. Sending and Sent are "in flight": a state change
// may be under way at ThingSpace. Their stored values still say SUBMITTING
// and SUBMITTED, the words of an older spelling in which sending a batch to
// ThingSpace was "submitting" it: PostgreSQL rows, recorded histories and
// operators' queries hold them, so the values stay.
const (
	Pending Status = "PENDING"
	// Sending: taken into a ThingSpace request whose answer has not come.
	Sending Status = "SUBMITTING"
	// Sent: ThingSpace accepted the request; its confirmation is awaited.
	Sent      Status = "SUBMITTED"
	Processed Status = "PROCESSED"
	Failed    Status = "ERROR"
	// Cancelled: never sent; an operator cancelled its bulk change.
	Cancelled Status = "CANCELLED"
)

// Final reports whether the device change has its outcome.
func (s Status) Final() bool { return s == Processed || s == Failed || s == Cancelled }

// BulkStatus is where a bulk change stands, as operators see it:
// bulk_changes.status, the BulkChangeStatus search attribute, the status of
// the progress query and of operators' requests.
type BulkStatus string

// Bulk change statuses.
const (
	BulkPending  BulkStatus = "PENDING"
	BulkRunning  BulkStatus = "RUNNING"
	BulkFinished BulkStatus = "FINISHED"
	BulkFailed   BulkStatus = "FAILED"
	// Statuses operators bring about.
	BulkScheduled        BulkStatus = "SCHEDULED"
	BulkAwaitingApproval BulkStatus = "AWAITING_APPROVAL"
	BulkPaused           BulkStatus = "PAUSED"
	BulkCancelled        BulkStatus = "CANCELLED"
)

// BillingStatus is the Rev.io step that follows a successful change.
// Pending means a step is owed and has not ended: the device's workflow runs
// it, or, once that workflow has closed, the step is stranded and a billing
// retry takes it.
type BillingStatus string

// Billing statuses.
const (
	BillingNone         BillingStatus = "NONE"
	BillingPending      BillingStatus = "PENDING"
	BillingCreated      BillingStatus = "CREATED"
	BillingExisting     BillingStatus = "EXISTING"
	BillingDisconnected BillingStatus = "DISCONNECTED"
	BillingError        BillingStatus = "ERROR"
)

// Code is why a device change ended in error. ThingSpace's own codes are
// kept as ThingSpace sends them (short form, e.g.
// REQUEST_FAILED.DeviceNotFound); these are the product's.
type Code string

// The product's error codes.
const (
	// DeviceBusy: another bulk change has a change of the device in flight.
	DeviceBusy Code = "DEVICE_BUSY"
	// DailyLimit: the line had its daily number of state changes.
	DailyLimit Code = "DAILY_LIMIT"
	// AuthFailed: ThingSpace refused the account's credentials.
	AuthFailed Code = "AUTH_FAILED"
	// AccountNotTenants: the bulk change's account is not one of its
	// tenant's (as the worker's configuration says): nothing is sent.
	AccountNotTenants Code = "ACCOUNT_NOT_TENANTS"
	// SendFailed: the request carrying the device could not be sent. The
	// value keeps the older word (stored rows, metrics and histories carry
	// it).
	SendFailed Code = "SUBMIT_FAILED"
	// NotConfirmed: neither a callback nor polling confirmed the change in
	// time.
	NotConfirmed Code = "NOT_CONFIRMED"
	// PollStateMismatch: polling found the device neither changed nor
	// pending.
	PollStateMismatch Code = "POLL_STATE_MISMATCH"
	// WorkflowStartFailed: the device's workflow could not be started.
	WorkflowStartFailed Code = "WORKFLOW_START_FAILED"
	// DeviceWorkflowEnded: the device's workflow ended (failed, terminated,
	// timed out) without recording an outcome.
	DeviceWorkflowEnded Code = "DEVICE_WORKFLOW_ENDED"
	// PPUUpdateFailed: the PPU update of an already-active device could not
	// be sent.
	PPUUpdateFailed Code = "PPU_UPDATE_FAILED"
	// Unexplained: ThingSpace reported a failure without a code.
	Unexplained Code = "FAILED"
	// AddFailed, AddNoAnswer: ThingSpace's synchronous answer to an
	// inventory add refused the device, or did not mention it.
	AddFailed   Code = "ADD_FAILED"
	AddNoAnswer Code = "ADD_NO_ANSWER"
	// MSISDNUnknown: the Rev.io service needs the MSISDN, and ThingSpace
	// has not told it.
	MSISDNUnknown Code = "MSISDN_UNKNOWN"
)

// Codes of ThingSpace's the product branches on (short form).
const (
	// FaultAlreadyActive: the device to activate is already active; the
	// product updates its PPU instead.
	FaultAlreadyActive Code = "REQUEST_FAILED.DeviceAlreadyActive"
)

// Source is how ThingSpace's answer for a device arrived.
type Source string

// Confirmation sources.
const (
	ByCallback Source = "callback"
	ByPoll     Source = "poll"
	BySync     Source = "sync" // the synchronous answer of the request
)

// Phase is where a bulk change's parent workflow stands.
type Phase string

// Phases of a bulk change.
const (
	PhaseStarting           Phase = "starting"
	PhaseCheckingThingSpace Phase = "checking_thingspace"
	PhaseRunning            Phase = "running"
	PhaseFinishing          Phase = "finishing"
	PhaseSettlingBilling    Phase = "settling_billing"
	PhaseFinished           Phase = "finished"
	PhaseFailed             Phase = "failed"
)

// Step is where a device's workflow stands.
type Step string

// Steps of a device change.
const (
	StepLoading              Step = "loading"
	StepWaitingForCallback   Step = "waiting_for_callback"
	StepPolling              Step = "polling"
	StepUpdatingPPU          Step = "updating_ppu"
	StepRecording            Step = "recording"
	StepCreatingBilling      Step = "creating_billing_service"
	StepDisconnectingBilling Step = "disconnecting_billing_service"
	StepDone                 Step = "done"
)

// ShortCode is a ThingSpace error or fault code without the prefix the
// gateway sometimes puts in front ("UnifiedWebService.REQUEST_FAILED.X" →
// "REQUEST_FAILED.X"), the form device changes record. Codes are stable
// across releases; messages are not, so callers match on this.
func ShortCode(code string) string {
	for _, marker := range []string{"REQUEST_FAILED.", "INPUT_INVALID.", "SYSTEM_ERROR."} {
		if i := strings.Index(code, marker); i >= 0 {
			return code[i:]
		}
	}
	return code
}
