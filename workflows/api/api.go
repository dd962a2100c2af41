// Package api is the public face of the workflows: task queue, workflow and
// signal names, deterministic workflow IDs, workflow inputs and the payloads
// of signals and queries. The starter, the callback receiver and the
// activities use it without importing the workflow code.
package api

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/iot-ops/tsbulk/change"
)

// TaskQueue is the task queue of the product's workflows and activities.
const TaskQueue = "thingspace-bulk"

// Workflow type names (registered under these names).
const (
	BulkChangeWorkflowType    = "BulkChange"
	DeviceChangeWorkflowType  = "DeviceChange"
	AccountPollerWorkflowType = "AccountPoller"
	BillingRetryWorkflowType  = "BillingRetry"
)

// Signal and query names.
const (
	// ConfirmationSignal carries ThingSpace's answer for one device to its
	// DeviceChange workflow, from the callback receiver or the poller.
	ConfirmationSignal = "thingspace-confirmation"
	// DeviceResultSignal carries a device change's outcome to its parent.
	DeviceResultSignal = "device-result"
	// PollRequestedSignal wakes the account poller.
	PollRequestedSignal = "poll-requested"
	// ProgressQuery returns a Progress from the BulkChange workflow.
	ProgressQuery = "progress"
	// DeviceStatusQuery returns a DeviceStatus from a DeviceChange workflow.
	DeviceStatusQuery = "device-status"
)

// BulkChangeWorkflowID is the deterministic ID of a bulk change's parent
// workflow: submitting twice can never start two.
func BulkChangeWorkflowID(bulkChangeID string) string { return "bulk-change/" + bulkChangeID }

// DeviceChangeWorkflowID is the deterministic ID of one device's child
// workflow. The callback receiver derives it from the stored device change.
func DeviceChangeWorkflowID(bulkChangeID, iccid string) string {
	return "bulk-change/" + bulkChangeID + "/device/" + iccid
}

// AccountPollerWorkflowID is the ID of the one poller per ThingSpace account.
func AccountPollerWorkflowID(account string) string {
	return "thingspace-poller/" + url.PathEscape(account)
}

// BillingRetryWorkflowID names a retry of the Rev.io step of a bulk change.
func BillingRetryWorkflowID(bulkChangeID string, at time.Time) string {
	return fmt.Sprintf("billing-retry/%s/%d", bulkChangeID, at.Unix())
}

// BillingSettleWorkflowID names the billing retry a bulk change runs at its
// end for stranded Rev.io steps (run and attempt keep it unique).
func BillingSettleWorkflowID(bulkChangeID string, run, attempt int) string {
	return fmt.Sprintf("billing-retry/%s/settle-%d-%d", bulkChangeID, run, attempt)
}

// BulkChangeIDFromWorkflowID extracts the bulk change id from a parent or
// child workflow ID.
func BulkChangeIDFromWorkflowID(id string) string {
	rest, ok := strings.CutPrefix(id, "bulk-change/")
	if !ok {
		return ""
	}
	bulk, _, _ := strings.Cut(rest, "/")
	return bulk
}

// Timing holds the waits of one bulk change. They are per bulk change (not
// process settings) so a test can use seconds where production waits 30
// minutes, and so a running bulk change keeps the timings it started with.
type Timing struct {
	// CallbackTimeout is how long a device waits for ThingSpace's callback
	// before its confirmation is sought by polling (default 30 minutes).
	CallbackTimeout time.Duration `json:"callbackTimeout"`
	// ConfirmDeadline bounds the whole wait for a confirmation, polling
	// included; after it the device change is ERROR NOT_CONFIRMED
	// (default 24 hours, ThingSpace's longest pending activation).
	ConfirmDeadline time.Duration `json:"confirmDeadline"`
	// PollInterval is the first wait between two status checks of a
	// device; it doubles up to PollMaxInterval.
	PollInterval    time.Duration `json:"pollInterval"`
	PollMaxInterval time.Duration `json:"pollMaxInterval"`
	// StallCheck is how long the parent waits without any device result
	// before it asks Temporal whether its children still run (default 10
	// minutes).
	StallCheck time.Duration `json:"stallCheck,omitempty"`
	// BillingPatience is how long a Rev.io step retries transient errors
	// before its billing is recorded ERROR (0: one hour).
	BillingPatience time.Duration `json:"billingPatience,omitempty"`
}

// Options are the settings a bulk change runs with, fixed at submission.
type Options struct {
	Timing Timing `json:"timing"`
	// CallbacksEnabled false skips waiting for callbacks: confirmations come
	// from polling only (the predecessor's CallbackEnabled setting).
	CallbacksEnabled bool `json:"callbacksEnabled"`
	// Window is how many device children may run at once.
	Window int `json:"window"`
	// StartsPerRun is how many children one run of the parent starts before
	// it continues as new, keeping its history small.
	StartsPerRun int `json:"startsPerRun"`
	// ShardSize: a bulk change of more devices runs as shard workflows of
	// at most this many devices, ShardsAtOnce at a time (BulkChangeShard).
	// 0, absent from bulk changes submitted before shards: one parent, as
	// they were started, so a running one keeps its shape.
	ShardSize    int `json:"shardSize,omitempty"`
	ShardsAtOnce int `json:"shardsAtOnce,omitempty"`
	// DefaultSite is given at the end to devices left in inventory or
	// pending state ("" = none).
	DefaultSite string `json:"defaultSite"`
	// BillingEnabled runs the Rev.io step after successful activations.
	BillingEnabled bool `json:"billingEnabled"`
	// DisconnectBillingOnDeactivate disconnects the device's Rev.io service
	// when it is deactivated.
	DisconnectBillingOnDeactivate bool `json:"disconnectBillingOnDeactivate"`
	// NotBefore: nothing is sent before this time (the bulk change waits on
	// a durable timer, SCHEDULED).
	NotBefore time.Time `json:"notBefore,omitempty"`
	// Approval, when set, holds the bulk change AWAITING_APPROVAL until a
	// second operator approves it (four eyes).
	Approval *Approval `json:"approval,omitempty"`
}

// Approval is the four-eyes rule a bulk change was submitted under.
type Approval struct {
	// Reason says which rule asked for it (e.g. "deactivates 1200 lines").
	Reason string `json:"reason"`
	// ExpiresAfter: without an approval by then, the bulk change is
	// cancelled.
	ExpiresAfter time.Duration `json:"expiresAfter"`
}

// BulkChangeInput starts (or continues) the parent workflow. Only ids and
// counters: the device list stays in PostgreSQL.
type BulkChangeInput struct {
	BulkChangeID string `json:"bulkChangeId"`
	// Tenant is the bulk change's tenant, passed on to its device
	// workflows (their Tenant search attribute). Absent from inputs
	// recorded before tenants: the parent then takes it from its plan.
	Tenant string `json:"tenant,omitempty"`
	// Resume is set when the workflow continues as new.
	Resume *BulkState `json:"resume,omitempty"`
	// Recover takes over a bulk change whose previous parent run ended
	// without finishing it: the state is read from PostgreSQL
	// (`starter resume-failed`).
	Recover bool `json:"recover,omitempty"`
}

// BulkState is what a run of the parent carries into the next one.
type BulkState struct {
	Plan      Plan       `json:"plan"`
	NextBatch int        `json:"nextBatch"`
	Queued    int        `json:"queued"`
	Cursor    Cursor     `json:"cursor"`
	InFlight  []InFlight `json:"inFlight"`
	Progress  Progress   `json:"progress"`
	Runs      int        `json:"runs"`
	// StopSending: no more batches are sent, for this reason. The JSON
	// name keeps the older word for sending ("submitting"): recorded
	// continue-as-new inputs carry it.
	StopSending string `json:"stopSubmitting,omitempty"`
	// RecoveredBelow: batches before this one were sent before a recovery;
	// only their device changes without an outcome get a child.
	RecoveredBelow int `json:"recoveredBelow,omitempty"`
	// Control is what operators asked.
	Control Control `json:"control,omitempty"`
	// UnsentCancelled: after a cancellation, the device changes not yet
	// sent were ended CANCELLED.
	UnsentCancelled bool `json:"unsentCancelled,omitempty"`
	// Tree: the root of a sharded bulk change; its shards do the window's
	// work, and the fields above that count it are theirs.
	Tree *TreeState `json:"tree,omitempty"`
	// Shard: this is a shard's state, the window over its own batches.
	Shard *ShardState `json:"shard,omitempty"`
}

// Plan is what the parent learns about its bulk change when it starts.
type Plan struct {
	BulkChangeID string `json:"bulkChangeId"`
	// Tenant is the bulk change's tenant (absent from plans recorded
	// before tenants).
	Tenant      string `json:"tenant,omitempty"`
	AccountName string `json:"accountName"`
	// SubmittedBy is the operator who submitted it (approval by another).
	SubmittedBy string  `json:"submittedBy,omitempty"`
	Total       int     `json:"total"`
	Batches     int     `json:"batches"`
	Options     Options `json:"options"`
}

// Cursor is the position of the next child to start.
type Cursor struct {
	BatchNo int `json:"batchNo"`
	Seq     int `json:"seq"`
}

// InFlight is a running child.
type InFlight struct {
	DeviceChangeID int64  `json:"id"`
	ICCID          string `json:"iccid"`
}

// Progress is the answer of ProgressQuery.
type Progress struct {
	BulkChangeID string `json:"bulkChangeId"`
	// Phase: starting | checking_thingspace | running | finishing |
	// settling_billing | finished | failed
	Phase       change.Phase `json:"phase"`
	Total       int          `json:"total"`
	Batches     int          `json:"batches"`
	BatchesSent int          `json:"batchesSent"`
	// DevicesSent counts the device changes taken into a ThingSpace
	// request (JSON "submitted", the older word: histories and query
	// answers carry it).
	DevicesSent int `json:"submitted"`
	Started     int `json:"started"` // children started
	InFlight    int `json:"inFlight"`
	// Tally: processed and failed device changes, by outcome and code.
	change.Tally
	BillingErrors int `json:"billingErrors"`
	// BillingPending counts Rev.io steps owed when the bulk change reached
	// its end (stranded steps being settled).
	BillingPending int `json:"billingPending,omitempty"`
	Runs           int `json:"runs"`
	// Recovered counts the times an operator resumed the bulk change after
	// its parent run failed.
	Recovered int `json:"recovered,omitempty"`
	// Status is the bulk change's status (RUNNING, PAUSED, ...).
	Status change.BulkStatus `json:"status,omitempty"`
	// Cancelled counts device changes ended CANCELLED (never sent).
	Cancelled int `json:"cancelled,omitempty"`
	// Shards of a sharded bulk change: how many, running, and done.
	Shards        int `json:"shards,omitempty"`
	ShardsRunning int `json:"shardsRunning,omitempty"`
	ShardsDone    int `json:"shardsDone,omitempty"`
	// Waiting says what the bulk change waits for before it sends anything
	// (approval, its start time).
	Waiting   string       `json:"waiting,omitempty"`
	Error     string       `json:"error,omitempty"`
	Limit     *LimitStatus `json:"limit,omitempty"`
	UpdatedAt time.Time    `json:"updatedAt"`
}

// Done is the number of device changes with their outcome.
func (p Progress) Done() int { return p.Processed + p.Errors + p.Cancelled }

// LimitStatus describes the account's ThingSpace request budget as last
// seen by the parent.
type LimitStatus struct {
	RequestsPerHour    int       `json:"requestsPerHour"`
	UsedLastHour       int       `json:"usedLastHour"`
	ActivatesPerMinute int       `json:"activatesPerMinute"`
	ThrottledUntil     time.Time `json:"throttledUntil,omitempty"`
	BatchesWaiting     int       `json:"batchesWaiting"`
	DevicesWaiting     int       `json:"devicesWaiting"`
}

// BulkChangeResult is the parent's result.
type BulkChangeResult struct {
	BulkChangeID string            `json:"bulkChangeId"`
	Status       change.BulkStatus `json:"status"`
	Total        int               `json:"total"`
	Processed    int               `json:"processed"`
	Errors       int               `json:"errors"`
	Cancelled    int               `json:"cancelled,omitempty"`
	SitesSet     int               `json:"sitesSet"`
	Error        string            `json:"error,omitempty"`
	Progress     Progress          `json:"progress"`
}

// DeviceChangeInput starts one device's child workflow.
type DeviceChangeInput struct {
	BulkChangeID string `json:"bulkChangeId"`
	// Tenant is the bulk change's tenant ("" in children started before
	// tenants). The activities find it from the bulk change, not from
	// here: it is for operators reading the input.
	Tenant           string           `json:"tenant,omitempty"`
	DeviceChangeID   int64            `json:"deviceChangeId"`
	ICCID            string           `json:"iccid"`
	Operation        change.Operation `json:"operation"`
	AccountName      string           `json:"accountName"`
	ParentWorkflowID string           `json:"parentWorkflowId"`
	Options          Options          `json:"options"`
	// Protocol is the version of this input's contract, so that a child
	// takes its paths from its input instead of recording a version
	// marker (and its search-attribute upsert: two events per device) on
	// every run. 0, absent: a child started by a parent older than the
	// field, which decides with workflow.GetVersion as it always did, so
	// its history replays unchanged. DeviceChangeProtocol (1): the changes
	// guarded by complete-as-local-activity and
	// follow-up-of-recorded-outcome are taken at their newest version, and
	// Known may be set.
	Protocol int `json:"protocol,omitempty"`
	// Known is what the parent read of the device change when it listed it
	// for starting (protocol 1). When it holds the change's outcome or
	// ThingSpace's answer, the child does not read the device change again
	// (one marker event less per device); otherwise it reads it at start,
	// which also finds a callback stored between the parent's read and the
	// child's start. Never personal data: no PPU, no billing details.
	Known *KnownDeviceChange `json:"known,omitempty"`
}

// DeviceChangeProtocol is the Protocol of the children the current code
// starts.
const DeviceChangeProtocol = 1

// KnownDeviceChange is the state of a device change as the parent listed
// it: the fields of a device change its workflow decides from.
type KnownDeviceChange struct {
	RequestID string        `json:"requestId,omitempty"`
	Status    change.Status `json:"status"`
	// Final: the change had its outcome already (refused when its batch
	// was claimed, or cancelled).
	Final      bool `json:"final,omitempty"`
	HasPPU     bool `json:"hasPpu,omitempty"`
	HasBilling bool `json:"hasBilling,omitempty"`
	// Confirmation is ThingSpace's answer already known: the synchronous
	// answer, or a stored callback of the change's request.
	Confirmation *Confirmation `json:"confirmation,omitempty"`
}

// Complete says whether Known is enough to decide the change without
// reading it again: it has its outcome, or ThingSpace's answer.
func (k *KnownDeviceChange) Complete() bool {
	return k != nil && (k.Final || k.Confirmation != nil)
}

// Confirmation is ThingSpace's answer for one device, whatever brought it:
// a callback, a status poll, or a synchronous answer.
type Confirmation struct {
	Source       change.Source `json:"source"`
	RequestID    string        `json:"requestId,omitempty"`
	Success      bool          `json:"success"`
	FaultCode    change.Code   `json:"faultCode,omitempty"` // short form, e.g. REQUEST_FAILED.DeviceAlreadyActive
	FaultMessage string        `json:"faultMessage,omitempty"`
	State        change.State  `json:"state,omitempty"` // device state seen by a poll
	MSISDN       string        `json:"msisdn,omitempty"`
	CallbackID   int64         `json:"callbackId,omitempty"`
	At           time.Time     `json:"at"`
}

// DeviceResult is a child's outcome, signalled to its parent.
type DeviceResult struct {
	DeviceChangeID int64            `json:"deviceChangeId"`
	ICCID          string           `json:"iccid"`
	Operation      change.Operation `json:"operation"`
	Status         change.Status    `json:"status"` // PROCESSED | ERROR
	Outcome        change.Outcome   `json:"outcome,omitempty"`
	ErrorCode      change.Code      `json:"errorCode,omitempty"`
	BillingError   bool             `json:"billingError,omitempty"`
}

// DeviceStatus is the answer of DeviceStatusQuery: where one device's
// change stands.
type DeviceStatus struct {
	Step         change.Step    `json:"step"`
	RequestID    string         `json:"requestId,omitempty"`
	WaitingSince time.Time      `json:"waitingSince,omitempty"`
	Outcome      change.Outcome `json:"outcome,omitempty"`
}

// AccountPollerInput starts an account's poller.
type AccountPollerInput struct {
	AccountName string `json:"accountName"`
	// Interval between two polling cycles.
	Interval time.Duration `json:"interval"`
	// SignalsPerRun: the run continues as new once it has received this
	// many poll requests, below the server's signals-per-execution limit
	// (0: the default, 5,000, half of Temporal's default limit).
	SignalsPerRun int `json:"signalsPerRun,omitempty"`
}

// BillingRetryInput retries the Rev.io step of a bulk change's device
// changes whose billing failed.
type BillingRetryInput struct {
	BulkChangeID string `json:"bulkChangeId"`
	// Tenant is the bulk change's tenant, for operators reading the input
	// (the activities find it from the bulk change).
	Tenant string `json:"tenant,omitempty"`
	// StrandedOnly takes only steps stranded in PENDING, not failed ones
	// (the bulk change's own settling at its end).
	StrandedOnly bool `json:"strandedOnly,omitempty"`
	// AfterID and SoFar carry the position and counts into a continued run.
	AfterID int64               `json:"afterId,omitempty"`
	SoFar   *BillingRetryResult `json:"soFar,omitempty"`
}

// BillingRetryResult counts what a billing retry achieved.
type BillingRetryResult struct {
	Attempted    int `json:"attempted"`
	Created      int `json:"created"`
	Disconnected int `json:"disconnected,omitempty"`
	Failed       int `json:"failed"`
	// Stranded counts steps taken from PENDING: their device's workflow had
	// closed without ending them.
	Stranded int `json:"stranded,omitempty"`
	// StillRunning counts pending steps left to their device's workflow,
	// which was still running.
	StillRunning int `json:"stillRunning,omitempty"`
}

// SubmitBulkChangeWorkflowType submits a bulk change from Temporal itself:
// `temporal workflow start --type SubmitBulkChange`, or the Web UI's start
// form.
const SubmitBulkChangeWorkflowType = "SubmitBulkChange"

// SubmitInput is the input of SubmitBulkChange: a file in one of the
// worker's inbox directories (submission.inbox_dirs), or a short list of
// devices without personal data. The same validation and records as
// `starter submit` follow.
type SubmitInput struct {
	// File names a .csv or .json file in an inbox directory: its name, or a
	// path inside one. Paths leading out of every inbox are refused.
	File string `json:"file,omitempty"`
	// Devices are rows given inline, with the file's column names. PPU
	// columns are refused: personal data has no place in a workflow's
	// history; put such a file in the inbox.
	Devices []map[string]string `json:"devices,omitempty"`
	// DefaultOperation applies to rows without one.
	DefaultOperation string `json:"defaultOperation,omitempty"`
	// IdempotencyKey: the same key returns the existing bulk change
	// (default: this workflow's ID and run).
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
	// Tenant is the customer the bulk change belongs to (default: the
	// default tenant, the top-level settings).
	Tenant string `json:"tenant,omitempty"`
	// Account is the ThingSpace account, one of the tenant's (default: the
	// tenant's first; thingspace.account for the default tenant).
	Account string `json:"account,omitempty"`
	// SubmittedBy names the operator.
	SubmittedBy string `json:"submittedBy,omitempty"`
	// BatchSize overrides bulk.batch_size.
	BatchSize int `json:"batchSize,omitempty"`
}

// SubmitResult is what SubmitBulkChange created (or found, for a key used
// before).
type SubmitResult struct {
	BulkChangeID string   `json:"bulkChangeId"`
	WorkflowID   string   `json:"workflowId"`
	Created      bool     `json:"created"`
	Devices      int      `json:"devices"`
	Batches      int      `json:"batches"`
	Warnings     []string `json:"warnings,omitempty"`
}
