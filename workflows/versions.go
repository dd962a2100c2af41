package workflows

// Version markers: the change ids given to workflow.GetVersion, every one
// of them here and nowhere else. Histories recorded by older code carry
// these strings, so a value never changes; a call stays even once a single
// branch remains. A change to the commands a workflow produces gets a new
// id here (and a DeviceChange that only children of a new
// api.DeviceChangeProtocol take records none: see docs/architecture.md,
// "Changing workflow code").
const (
	// BulkChange.

	// versionCoalesceResults: after a device result the parent waits a
	// moment and takes the other results in the same workflow task
	// (before, one task per result).
	versionCoalesceResults = "coalesce-results"
	// versionWatchChildren: a parent that hears nothing for
	// Timing.StallCheck asks Temporal whether its children still run.
	versionWatchChildren = "watch-children"
	// versionStatusSearchAttribute: the BulkChangeStatus search attribute
	// is kept current.
	versionStatusSearchAttribute = "status-search-attribute"
	// versionRecordStartFailure: a device change whose workflow could not
	// start is recorded ERROR WORKFLOW_START_FAILED (EndDeviceChange).
	versionRecordStartFailure = "record-start-failure"
	// versionStartWithoutWaiting: the parent starts the next page of
	// children without waiting for the server to confirm the last one's
	// starts (history bulkchange-start-without-waiting).
	versionStartWithoutWaiting = "start-without-waiting"
	// versionNotify: the bulk change tells people (notifications.*) when it
	// awaits approval, finishes, fails, stalls or owes Rev.io steps, each
	// event a SendNotification child.
	versionNotify = "notify"
	// versionShards: a bulk change larger than its shard size runs as a
	// tree of BulkChangeShard workflows (decided once, in its first run).
	versionShards = "shards"
	// versionAwaitAdoption: a pause, resume or cancel of a recovered root
	// waits until it has adopted the shards still running; asked only when
	// one comes before that.
	versionAwaitAdoption = "await-adoption"
	// versionDrainBeforeStallCheck: results waiting when the stall check
	// fires are taken before it decides there is a stall; asked only then.
	versionDrainBeforeStallCheck = "drain-before-stall-check"
	// versionEndedShardAcks: a pause, resume or cancel of a tree counts a
	// shard that ended without acknowledging it as acknowledged (it sends
	// nothing more); asked only when one does.
	versionEndedShardAcks = "ended-shard-acks"

	// DeviceChange, asked only by children started without
	// api.DeviceChangeInput.Protocol (protocol 1 takes both at version 1).

	// versionCompleteAsLocalActivity: the outcome is recorded by a local
	// activity (before, a regular one).
	versionCompleteAsLocalActivity = "complete-as-local-activity"
	// versionFollowUpOfRecordedOutcome: a device workflow that finds its
	// outcome recorded by an earlier run still runs the Rev.io step it
	// owes; asked only on that path.
	versionFollowUpOfRecordedOutcome = "follow-up-of-recorded-outcome"

	// BillingRetry.

	// versionOwedBillingSteps: failed and stranded steps are listed by a
	// regular activity and each change's owed step is run (before, failed
	// creations only, listed locally).
	versionOwedBillingSteps = "owed-billing-steps"

	// AccountPoller.

	// versionPollerSignalLimit: a run continues as new once it has received
	// SignalsPerRun poll requests; asked only when a run reaches the count
	// (history account-poller-signal-limit).
	versionPollerSignalLimit = "poller-signal-limit"
)
