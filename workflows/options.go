// Package workflows holds the workflow code: BulkChange (one per bulk
// change), DeviceChange (one child per device), AccountPoller (one per
// ThingSpace account) and BillingRetry. Workflow code is deterministic: no
// I/O, clocks, randomness or map iteration; all of that is in activities.
package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/iot-ops/tsbulk/activities"
)

// a is used to name activities: its methods are never called with it.
var a *activities.Activities

// Retry policies are declared here, per kind of dependency, so the waits of
// every call are visible in one place. Activities mark the errors that
// retrying cannot fix as non-retryable themselves (refused credentials,
// ThingSpace refusals, bad data), and a 429 carries its Retry-After as the
// next retry delay.
var (
	// PostgreSQL: keep trying through a database restart.
	dbRetry = &temporal.RetryPolicy{
		InitialInterval:        time.Second,
		BackoffCoefficient:     2,
		MaximumInterval:        time.Minute,
		NonRetryableErrorTypes: []string{activities.ErrTypeInvalidData, activities.ErrTypeNotRunnable},
	}
	// ThingSpace: back off to five minutes between attempts and keep
	// going: an outage delays a bulk change, it does not fail it.
	thingSpaceRetry = &temporal.RetryPolicy{
		InitialInterval:        2 * time.Second,
		BackoffCoefficient:     2,
		MaximumInterval:        5 * time.Minute,
		NonRetryableErrorTypes: []string{activities.ErrTypeInvalidCredentials, activities.ErrTypeInvalidData},
	}
	// The authentication check at the start waits out an outage like every
	// other ThingSpace call (its attempts and last error show in `starter
	// status`); only a refusal of the credentials ends it, at once.
	authRetry = &temporal.RetryPolicy{
		InitialInterval:        2 * time.Second,
		BackoffCoefficient:     2,
		MaximumInterval:        time.Minute,
		NonRetryableErrorTypes: []string{activities.ErrTypeInvalidCredentials},
	}
	// Rev.io: bounded by time, not attempts (revioPatience); a billing
	// failure is then recorded and can be retried later without touching
	// the activation. Not by attempts: a 429 carries its Retry-After (a few
	// seconds) as the next delay, so a minute of congestion used up eight
	// attempts and ended as a billing error (the chaos suite saw it).
	revioRetry = &temporal.RetryPolicy{
		InitialInterval:        2 * time.Second,
		BackoffCoefficient:     2,
		MaximumInterval:        2 * time.Minute,
		NonRetryableErrorTypes: []string{activities.ErrTypeInvalidData},
	}
)

// withActivityOptions returns a function that sets opts on a workflow
// context: the options of each kind of call are then declared as data.
func withActivityOptions(opts workflow.ActivityOptions) func(workflow.Context) workflow.Context {
	return func(ctx workflow.Context) workflow.Context {
		return workflow.WithActivityOptions(ctx, opts)
	}
}

var withDB = withActivityOptions(workflow.ActivityOptions{
	StartToCloseTimeout: 30 * time.Second,
	RetryPolicy:         dbRetry,
})

// withLocalDB runs short reads and writes as local activities: no task
// queue round trip and one marker event instead of three. A database outage
// of any length delays them, never fails them: once the wait between
// attempts outgrows a workflow task, the SDK waits on a timer and tries
// again, for as long as the schedule-to-close timeout allows.
func withLocalDB(ctx workflow.Context) workflow.Context {
	return workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout:    10 * time.Second,
		ScheduleToCloseTimeout: localDBPatience,
		RetryPolicy:            dbRetry,
	})
}

// localDBPatience bounds the retries of a local database activity: far
// beyond any outage, so in effect never.
const localDBPatience = 365 * 24 * time.Hour

// deathNoticedAfter is the heartbeat timeout of the calls to ThingSpace and
// Rev.io: the worker's activities.KeepAlive interceptor beats while a call
// runs, so a worker killed in the middle of one costs this long, not the
// call's start-to-close timeout (the chaos suite measured three minutes of
// no progress per such kill before).
const deathNoticedAfter = 20 * time.Second

// withThingSpace sets the options of calls to ThingSpace. There is no
// schedule-to-start or schedule-to-close timeout: under the account's rate
// limit a call may wait a long time for its turn, and that is not a failure.
var withThingSpace = withActivityOptions(workflow.ActivityOptions{
	StartToCloseTimeout: 3 * time.Minute,
	HeartbeatTimeout:    deathNoticedAfter,
	RetryPolicy:         thingSpaceRetry,
})

var withAuthCheck = withActivityOptions(workflow.ActivityOptions{
	StartToCloseTimeout: time.Minute,
	RetryPolicy:         authRetry,
})

// withPolling sets the options of a polling cycle, which may page through
// a large account's device list.
var withPolling = withActivityOptions(workflow.ActivityOptions{
	StartToCloseTimeout: 15 * time.Minute,
	HeartbeatTimeout:    deathNoticedAfter,
	RetryPolicy:         thingSpaceRetry,
})

// revioPatience is how long a Rev.io step keeps retrying transient errors
// (5xx, 429, timeouts) before its billing is recorded ERROR: an outage
// shorter than this delays the billing line, it does not lose it.
const revioPatience = time.Hour

// withRevio: one Rev.io step makes a few calls of at most 30 s each;
// patience (revio.retry_for; 0: revioPatience) bounds its retries.
func withRevio(ctx workflow.Context, patience time.Duration) workflow.Context {
	if patience <= 0 {
		patience = revioPatience
	}
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		ScheduleToCloseTimeout: patience,
		StartToCloseTimeout:    time.Minute,
		HeartbeatTimeout:       deathNoticedAfter,
		RetryPolicy:            revioRetry,
	})
}

// withSummary gives the activities called with ctx a summary the Web UI
// shows beside them ("ThingSpace request 3 of 20"). User metadata: not
// compared on replay, so adding one needs no version.
func withSummary(ctx workflow.Context, summary string) workflow.Context {
	opts := workflow.GetActivityOptions(ctx)
	opts.Summary = summary
	return workflow.WithActivityOptions(ctx, opts)
}
