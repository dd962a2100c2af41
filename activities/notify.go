package activities

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/notify"
)

// NotifyInput and NotifyResult are the Notify activity's contract
// (notify.Input, notify.Result).
type (
	NotifyInput  = notify.Input
	NotifyResult = notify.Result
)

// ErrTypeNotification is the error of a Notify attempt that some channel
// did not take: retryable, the retry policy (notify.ActivityOptions) tries
// those channels again.
const ErrTypeNotification = "NotificationNotDelivered"

// Notifier carries the dependencies of the Notify activity, apart from
// Activities: the channels' secrets stay with the one activity that uses
// them.
type Notifier struct {
	// Sender is nil when no channel is configured: events are dropped.
	Sender *notify.Sender
	Store  *db.Store
	Logger *slog.Logger
}

// RegisterNotifier registers Notify on r under notify.ActivityName.
func RegisterNotifier(r Registry, n *Notifier) {
	r.RegisterActivityWithOptions(n.Notify, activity.RegisterOptions{Name: notify.ActivityName})
}

// Notify sends an event to every channel configured for its kind, at once,
// each within notifications.timeout. Every delivery, done or failed, is
// written to the audit log (service notify, operation the kind, the JSON
// or mail sent, never a secret). A channel that took the event (this
// attempt or an earlier one: its audit entry carries the event's dedupe
// key) is not sent it again; when any channel failed, the attempt fails
// retryably and the next one tries the failed channels only.
func (n *Notifier) Notify(ctx context.Context, in NotifyInput) (NotifyResult, error) {
	var res NotifyResult
	if err := in.Event.Validate(); err != nil {
		return res, permanent(ErrTypeInvalidData, "notify: %v", err)
	}
	if n.Sender == nil {
		return res, nil
	}
	// Prepared once: every channel and audit entry of this attempt say
	// the same.
	ev := notify.Prepare(in.Event, time.Now())
	attempt := int(activity.GetInfo(ctx).Attempt)
	channels := n.Sender.Channels(ev.Kind)
	type outcome struct {
		already bool
		err     error
	}
	outcomes := make([]outcome, len(channels))
	// At once: a receiver that is down costs the others nothing.
	var wg sync.WaitGroup
	for i, ch := range channels {
		wg.Go(func() {
			already, err := n.deliver(ctx, ev, ch, attempt)
			outcomes[i] = outcome{already, err}
		})
	}
	wg.Wait()
	var failed []string
	for i, ch := range channels {
		switch o := outcomes[i]; {
		case o.err != nil:
			failed = append(failed, o.err.Error())
		case o.already:
			res.AlreadyDelivered = append(res.AlreadyDelivered, ch)
		default:
			res.Delivered = append(res.Delivered, ch)
		}
	}
	if len(failed) > 0 {
		return res, temporal.NewApplicationError(
			fmt.Sprintf("notify %s: %d of %d channels did not take the event: %s",
				ev.ID, len(failed), len(channels), strings.Join(failed, "; ")),
			ErrTypeNotification)
	}
	return res, nil
}

// deliver sends ev to one channel unless it took it already, and records
// the delivery.
func (n *Notifier) deliver(ctx context.Context, ev notify.Event, channel string, attempt int) (already bool, err error) {
	key := db.NotificationKey(ev.ID, channel)
	done, err := n.Store.NotificationDelivered(ctx, key)
	if err != nil {
		return false, fmt.Errorf("%s: %w", channel, err)
	}
	if done {
		return true, nil
	}
	started := time.Now()
	d, sendErr := n.Sender.Send(ctx, channel, ev)
	entry := db.AuditEntry{
		BulkChangeID: ev.BulkChangeID,
		Operation:    string(ev.Kind),
		Method:       d.Method,
		Path:         strings.TrimSpace(channel + " " + d.Target),
		RequestBody:  d.Request,
		ResponseBody: d.Response,
		HTTPStatus:   d.Status,
		Outcome:      "ok",
		RequestID:    ev.ID,
		Attempt:      attempt,
		Duration:     d.Duration,
		At:           started,
	}
	recordKey := key
	if sendErr != nil {
		entry.Outcome, entry.ErrorMessage, recordKey = "error", sendErr.Error(), ""
	}
	if _, err := n.Store.RecordNotification(ctx, entry, recordKey); err != nil {
		// Delivered but not recorded: the retry sends it again (at least
		// once).
		return false, fmt.Errorf("%s: %w", channel, err)
	}
	if sendErr != nil {
		n.logger(ctx).Warn("notification not delivered; retried by the activity's policy",
			"event", ev.ID, "channel", channel, "attempt", attempt, "error", sendErr)
		return false, sendErr
	}
	return false, nil
}

func (n *Notifier) logger(ctx context.Context) *slog.Logger {
	if n.Logger != nil {
		return n.Logger
	}
	return slog.Default().With("activity", activity.GetInfo(ctx).ActivityType.Name)
}
