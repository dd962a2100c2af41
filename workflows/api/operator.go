package api

import "time"

// The operators' requests to a running bulk change, and what the bulk
// change carries of them across its runs.

// Updates an operator sends a running bulk change (starter pause|resume|
// cancel|approve|reject, or `temporal workflow update execute --name NAME
// --input '{"by":"...","reason":"..."}'`). Each takes an OperatorRequest and
// returns an OperatorResult; a request that makes no sense is refused by
// the update's validator with the reason, and changes nothing.
const (
	// PauseUpdate: no new ThingSpace state change and no new device
	// workflow from the moment it is accepted; changes already sent are
	// still awaited and recorded. It returns once no request is in flight.
	PauseUpdate = "pause"
	// ResumeUpdate carries on a paused bulk change.
	ResumeUpdate = "resume"
	// CancelUpdate ends the device changes not yet sent as CANCELLED; those
	// already sent finish normally; the bulk change ends CANCELLED.
	CancelUpdate = "cancel"
	// ApproveUpdate lets a bulk change awaiting approval run; the approver
	// must not be its submitter.
	ApproveUpdate = "approve"
	// RejectUpdate cancels a bulk change awaiting approval.
	RejectUpdate = "reject"
)

// OperatorRequest is an operator's request to a bulk change: who asks and
// why (both go to the audit log).
type OperatorRequest struct {
	By     string `json:"by"`
	Reason string `json:"reason,omitempty"`
}

// OperatorResult is the bulk change's answer to an operator's request.
type OperatorResult struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

// Control is what operators asked of a bulk change, carried across runs.
type Control struct {
	// Paused: sending nothing new (who and why in PausedBy).
	Paused   bool            `json:"paused,omitempty"`
	PausedBy *OperatorAction `json:"pausedBy,omitempty"`
	// Cancelled: the device changes not yet sent were ended CANCELLED.
	Cancelled *OperatorAction `json:"cancelled,omitempty"`
	// Approved: the second operator's approval.
	Approved *OperatorAction `json:"approved,omitempty"`
}

// OperatorAction records who asked what, when and why.
type OperatorAction struct {
	By     string    `json:"by"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}
