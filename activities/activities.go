// Package activities holds the Temporal activities: every call to
// ThingSpace, Rev.io and PostgreSQL made on behalf of a workflow. Each
// activity is idempotent: a retry, or a worker restarted mid-way, never sends
// a second state change for the same device change nor creates a second
// Rev.io service.
package activities

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/metrics"
	"github.com/iot-ops/tsbulk/ratelimit"
	"github.com/iot-ops/tsbulk/revio"
	"github.com/iot-ops/tsbulk/submission"
	"github.com/iot-ops/tsbulk/thingspace"
)

// Activities carries the dependencies of every activity; its methods are the
// activities.
//
// ThingSpace, Revio, Limiter, Limits, Approval and DeleteAfterDeactivation
// are the default tenant's. With Tenants set, each activity takes them from
// its bulk change's tenant (the poller: its account's) instead, and these
// fields are not used; without, every bulk change runs with them.
type Activities struct {
	Store      *db.Store
	ThingSpace *thingspace.Client
	// Revio is nil when billing is switched off.
	Revio *revio.Client
	// Limiter keeps ThingSpace requests within the account's limits across
	// all workers (nil: no limits configured).
	Limiter  *ratelimit.Limiter
	Temporal client.Client
	Metrics  *metrics.Metrics
	Logger   *slog.Logger
	// Limits checked when device changes are claimed for a request.
	Limits db.ClaimLimits
	// PollBatchThreshold: above this many devices due for a status check in
	// one account, the poller lists the account's devices page by page
	// instead of looking each device up (one request per device).
	PollBatchThreshold int
	// PollMaxRequests caps the ThingSpace requests of one polling cycle.
	PollMaxRequests int
	// PollerSignalsPerRun is given to a poller this activity starts: the
	// poll requests one run receives before continuing as new.
	PollerSignalsPerRun int
	// Submissions configures bulk changes submitted through Temporal
	// (SubmitBulkChange).
	Submissions SubmissionSettings
	// Approval is the worker's four-eyes rule (nil: none), applied when a
	// bulk change starts whatever its submitter's configuration said: the
	// submitter may only ask for more approval.
	Approval *submission.ApprovalRule
	// ReconcileSettle is how long after a request whose answer was lost a
	// device showing no trace of it is sent again (default 2 minutes):
	// callbacks of devices ThingSpace refused need time to arrive.
	ReconcileSettle time.Duration
	// DeleteAfterDeactivation is thingspace.delete_after_deactivation: the
	// deleteAfterDeactivation sent with a deactivation whose file left it
	// unset. Read when the request is built, so this worker's configuration
	// decides, not the process that submitted the file.
	DeleteAfterDeactivation bool
	// Tenants, when set, gives each bulk change and each account its
	// tenant's clients and settings (nil: the fields above, for all).
	Tenants Tenants
	// Notifier sends the events the workflows tell (nil: registered
	// without channels, events dropped).
	Notifier *Notifier

	// tenantOfBulk: bulk change id → tenant id, which never changes
	// (created on first use: Activities are built as literals, and tests
	// copy them).
	tenantOfBulk *sync.Map
}

// SendBatchActivity is the activity type SendBatch is registered and called
// under: its name from when the method was SubmitBatch. Recorded histories
// and the activity tasks of running bulk changes carry that name, and a
// workflow calls an activity method by its name, so the workflows call this
// one by the constant.
const SendBatchActivity = "SubmitBatch"

// Registry is what activities are registered on: a worker, or a workflow
// test environment.
type Registry interface {
	RegisterActivityWithOptions(any, activity.RegisterOptions)
}

// Register registers the activities on r: every method under its own name,
// and SendBatch under SendBatchActivity as well (its own name, SendBatch,
// is registered with the others and never called).
func Register(r Registry, a *Activities) {
	r.RegisterActivityWithOptions(a, activity.RegisterOptions{})
	r.RegisterActivityWithOptions(a.SendBatch, activity.RegisterOptions{Name: SendBatchActivity})
	n := a.Notifier
	if n == nil {
		n = &Notifier{Store: a.Store, Logger: a.Logger}
	}
	RegisterNotifier(r, n)
}

// Error types of the application errors activities return. Workflows branch
// on these, never on message text.
const (
	ErrTypeInvalidCredentials = "ThingSpaceInvalidCredentials"
	ErrTypeThingSpace         = "ThingSpaceError"
	ErrTypeNotRunnable        = "BulkChangeNotRunnable"
	ErrTypeRevio              = "RevioError"
	ErrTypeInvalidData        = "InvalidData"
)

// thingSpaceError turns a ThingSpace client error into an activity error
// whose retry behaviour follows the client's classification: permanent
// refusals are non-retryable, a 429 waits for its Retry-After.
func thingSpaceError(op string, err error) error {
	if err == nil {
		return nil
	}
	e, ok := thingspace.AsError(err)
	if !ok {
		return fmt.Errorf("%s: %w", op, err)
	}
	typ := ErrTypeThingSpace
	if e.Kind == thingspace.KindInvalidCredentials {
		typ = ErrTypeInvalidCredentials
	}
	opts := temporal.ApplicationErrorOptions{NonRetryable: !e.Retryable()}
	if e.Kind == thingspace.KindRateLimited && e.RetryAfter > 0 {
		opts.NextRetryDelay = e.RetryAfter
	}
	return temporal.NewApplicationErrorWithOptions(fmt.Sprintf("%s: %s", op, e.Error()), typ, opts)
}

// outcomeUnknown is the error of a state change ThingSpace may have
// applied (thingspace.Error.MayHaveApplied): retryable whatever the
// answer's kind, since the next attempt looks at ThingSpace (or, for a PPU
// update, sends it again) instead of trusting the answer.
func outcomeUnknown(op string, e *thingspace.Error) error {
	return temporal.NewApplicationErrorWithOptions(
		fmt.Sprintf("%s: outcome unknown, checked before anything is sent again: %s", op, e.Error()),
		ErrTypeThingSpace, temporal.ApplicationErrorOptions{NextRetryDelay: e.RetryAfter})
}

// revioError does the same for Rev.io.
func revioError(op string, err error) error {
	if err == nil {
		return nil
	}
	var e *revio.Error
	if !errors.As(err, &e) {
		return fmt.Errorf("%s: %w", op, err)
	}
	opts := temporal.ApplicationErrorOptions{NonRetryable: !e.Retryable()}
	if e.RetryAfter > 0 {
		opts.NextRetryDelay = e.RetryAfter
	}
	return temporal.NewApplicationErrorWithOptions(fmt.Sprintf("%s: %s", op, e.Error()), ErrTypeRevio, opts)
}

func permanent(typ, format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), typ, nil)
}

// auditScope tells the audit hooks which bulk change and device change an
// HTTP exchange belongs to.
type auditScope struct {
	BulkChangeID   string
	DeviceChangeID int64
}

type auditScopeKey struct{}

func withScope(ctx context.Context, bulkID string, deviceChangeID int64) context.Context {
	return context.WithValue(ctx, auditScopeKey{}, auditScope{BulkChangeID: bulkID, DeviceChangeID: deviceChangeID})
}

// forAccount charges the ThingSpace requests made with ctx to the account.
func forAccount(ctx context.Context, account string) context.Context {
	return ratelimit.WithAccount(ctx, account)
}

func scopeOf(ctx context.Context) auditScope {
	s, _ := ctx.Value(auditScopeKey{}).(auditScope)
	return s
}
