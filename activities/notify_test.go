package activities_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/db/dbtest"
	"github.com/iot-ops/tsbulk/harness/notifytest"
	"github.com/iot-ops/tsbulk/notify"
)

const (
	notifyHookSecret = "hook-secret-value-0123"
	notifySMTPUser   = "tsbulk-mailer"
	notifySMTPPass   = "smtp-password-value-0456"
	notifySlackPath  = "/services/T0000/B0000/slacktokenvalue789"
)

// notifyWorld is a database, two webhook receivers (ops: JSON with a
// header secret; chat: Slack's shape, its token in the URL), an SMTP server
// speaking STARTTLS, and the Notify activity wired to them.
type notifyWorld struct {
	store    *db.Store
	ops      *notifytest.Webhook
	chat     *notifytest.Webhook
	smtp     *notifytest.SMTPServer
	notifier *activities.Notifier
	env      *testsuite.TestActivityEnvironment
}

func newNotifyWorld(t *testing.T, timeout time.Duration) *notifyWorld {
	t.Helper()
	certs := notifytest.Certs(t)
	w := &notifyWorld{store: dbtest.New(t)}
	w.ops = notifytest.StartWebhook(t, certs)
	w.chat = notifytest.StartWebhook(t, certs)
	w.smtp = notifytest.StartSMTP(t, notifytest.StartTLS, certs, notifySMTPUser, notifySMTPPass)
	cfg := &config.Config{
		Temporal: config.Temporal{UIURL: "https://temporal-ui.example.com"},
		Notifications: config.Notifications{
			Timeout: timeout,
			Webhooks: []config.Webhook{
				{Name: "ops", URL: config.Secret(w.ops.URL + "/hook"), Format: "json",
					SecretHeader: "Authorization", Secret: "Bearer " + notifyHookSecret, CAFile: certs.CA},
				{Name: "chat", URL: config.Secret(w.chat.URL + notifySlackPath), Format: "slack",
					Kinds: []string{"failed", "finished"}, CAFile: certs.CA},
			},
			Email: config.Email{Host: w.smtp.Host, Port: w.smtp.Port, TLS: "starttls", Username: notifySMTPUser,
				Password: notifySMTPPass, From: "tsbulk@example.com", To: []string{"ops@example.com"},
				Kinds: []string{"approval_needed", "finished", "failed"}, CAFile: certs.CA},
		},
	}
	sender, err := notify.NewSender(cfg, "default")
	require.NoError(t, err)
	w.notifier = &activities.Notifier{Sender: sender, Store: w.store, Logger: slog.New(slog.DiscardHandler)}
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	w.env = suite.NewTestActivityEnvironment()
	activities.RegisterNotifier(w.env, w.notifier)
	return w
}

func (w *notifyWorld) notify(t *testing.T, ev notify.Event) (activities.NotifyResult, error) {
	t.Helper()
	var res activities.NotifyResult
	v, err := w.env.ExecuteActivity(notify.ActivityName, activities.NotifyInput{Event: ev})
	if err == nil {
		require.NoError(t, v.Get(&res))
	}
	return res, err
}

func notifyEvent(kind notify.Kind) notify.Event {
	id := uuid.NewString()
	return notify.Event{
		ID: notify.EventID(id, kind, ""), Kind: kind, BulkChangeID: id, Tenant: "default", Operation: "deactivate",
		Account: "0000123456-00001", Summary: "deactivate 250 devices", Total: 250, Processed: 240, Errors: 10,
		ErrorsByCode: notify.TopErrors(map[change.Code]int{"DeviceNotFound": 10}),
		At:           time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC),
	}
}

// notifyRow is a notification delivery as the audit log has it.
type notifyRow struct {
	Operation, Path, Outcome, RequestBody, ResponseBody, ErrorMessage, RequestID, DedupeKey string
	Method                                                                                  string
	Status, Attempt                                                                         int
}

func notifyAudit(t *testing.T, st *db.Store, bulkID string) []notifyRow {
	t.Helper()
	rows, err := st.Pool.Query(context.Background(), `
		SELECT operation, coalesce(path, ''), outcome, coalesce(request_body, ''), coalesce(response_body, ''),
			coalesce(error_message, ''), coalesce(request_id, ''), coalesce(dedupe_key, ''), coalesce(method, ''),
			coalesce(http_status, 0), coalesce(attempt, 0)
		FROM m2m_log WHERE service = 'notify' AND bulk_change_id = $1 ORDER BY path, id`, bulkID)
	require.NoError(t, err)
	defer rows.Close()
	var out []notifyRow
	for rows.Next() {
		var r notifyRow
		require.NoError(t, rows.Scan(&r.Operation, &r.Path, &r.Outcome, &r.RequestBody, &r.ResponseBody,
			&r.ErrorMessage, &r.RequestID, &r.DedupeKey, &r.Method, &r.Status, &r.Attempt))
		out = append(out, r)
	}
	require.NoError(t, rows.Err())
	return out
}

// requireNoSecret checks that no audit row holds a channel's secret.
func requireNoSecret(t *testing.T, rows []notifyRow) {
	t.Helper()
	for _, r := range rows {
		all := strings.Join([]string{r.Path, r.RequestBody, r.ResponseBody, r.ErrorMessage, r.DedupeKey}, " ")
		for _, secret := range []string{notifyHookSecret, notifySMTPPass, "slacktokenvalue789"} {
			require.NotContains(t, all, secret)
		}
	}
}

// A finished bulk change goes to both webhooks and by mail; each delivery
// is in the audit log; running the same event again sends nothing.
func TestNotifyActivityDeliversAndRecords(t *testing.T) {
	w := newNotifyWorld(t, 5*time.Second)
	ev := notifyEvent(notify.Finished)
	res, err := w.notify(t, ev)
	require.NoError(t, err)
	require.Equal(t, []string{"webhook:ops", "webhook:chat", "email"}, res.Delivered)
	require.Empty(t, res.AlreadyDelivered)
	require.Len(t, w.ops.Requests(), 1)
	require.Equal(t, "Bearer "+notifyHookSecret, w.ops.Requests()[0].Header.Get("Authorization"))
	require.Len(t, w.chat.Requests(), 1)
	require.Len(t, w.smtp.Mails(), 1)

	rows := notifyAudit(t, w.store, ev.BulkChangeID)
	require.Len(t, rows, 3)
	byPath := map[string]notifyRow{}
	for _, r := range rows {
		require.Equal(t, "finished", r.Operation)
		require.Equal(t, "ok", r.Outcome)
		require.Equal(t, ev.ID, r.RequestID)
		require.Equal(t, 1, r.Attempt)
		byPath[strings.Fields(r.Path)[0]] = r
	}
	ops := byPath["webhook:ops"]
	require.Equal(t, "webhook:ops "+w.ops.URL, ops.Path)
	require.Equal(t, string(w.ops.Requests()[0].Body), ops.RequestBody, "the JSON sent")
	require.Equal(t, 200, ops.Status)
	require.Equal(t, "POST", ops.Method)
	require.Equal(t, db.NotificationKey(ev.ID, "webhook:ops"), ops.DedupeKey)
	require.Equal(t, "webhook:chat "+w.chat.URL, byPath["webhook:chat"].Path)
	mail := byPath["email"]
	require.Equal(t, "SMTP", mail.Method)
	require.Contains(t, mail.RequestBody, "finished with 10 errors: deactivate 250 devices")
	requireNoSecret(t, rows)

	// The same event again (a retry, a replayed emit): nothing resent.
	res, err = w.notify(t, ev)
	require.NoError(t, err)
	require.Empty(t, res.Delivered)
	require.Equal(t, []string{"webhook:ops", "webhook:chat", "email"}, res.AlreadyDelivered)
	require.Len(t, w.ops.Requests(), 1)
	require.Len(t, w.chat.Requests(), 1)
	require.Len(t, w.smtp.Mails(), 1)
	require.Len(t, notifyAudit(t, w.store, ev.BulkChangeID), 3)
}

// Each channel gets the kinds configured for it.
func TestNotifyActivitySendsOnlyToTheKindsChannels(t *testing.T) {
	w := newNotifyWorld(t, 5*time.Second)
	res, err := w.notify(t, notifyEvent(notify.Stalled))
	require.NoError(t, err)
	require.Equal(t, []string{"webhook:ops"}, res.Delivered)
	require.Empty(t, w.chat.Requests())
	require.Empty(t, w.smtp.Mails())
}

// A receiver that hangs fails the attempt retryably by the per-delivery
// timeout, without holding back the other channels, which deliver in the
// same attempt; the next attempt sends to the failed channel only.
func TestNotifyActivityReceiverDownIsRetriedAlone(t *testing.T) {
	w := newNotifyWorld(t, time.Second)
	w.chat.Hang(true)
	ev := notifyEvent(notify.Failed)
	ev.Reason = "ThingSpace refused the credentials"
	started := time.Now()
	_, err := w.notify(t, ev)
	elapsed := time.Since(started)
	require.Error(t, err)
	require.Less(t, elapsed, 5*time.Second, "bounded by notifications.timeout, not by the receiver")
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(err, &appErr), "%v", err)
	require.Equal(t, activities.ErrTypeNotification, appErr.Type())
	require.False(t, appErr.NonRetryable(), "the retry policy must try again")
	require.Contains(t, err.Error(), "webhook:chat")
	require.NotContains(t, err.Error(), "slacktokenvalue789")
	// The others delivered meanwhile.
	require.Len(t, w.ops.Requests(), 1)
	require.Len(t, w.smtp.Mails(), 1)

	rows := notifyAudit(t, w.store, ev.BulkChangeID)
	require.Len(t, rows, 3)
	var failed notifyRow
	for _, r := range rows {
		if r.Outcome == "error" {
			failed = r
		}
	}
	require.Equal(t, "webhook:chat "+w.chat.URL, failed.Path)
	require.Contains(t, failed.ErrorMessage, "notifications.timeout")
	require.Empty(t, failed.DedupeKey, "a failed delivery does not count as delivered")
	require.NotEmpty(t, failed.RequestBody, "what was tried is kept")
	requireNoSecret(t, rows)

	// The receiver is back: the retry sends to it alone.
	w.chat.Hang(false)
	res, err := w.notify(t, ev)
	require.NoError(t, err)
	require.Equal(t, []string{"webhook:chat"}, res.Delivered)
	require.Equal(t, []string{"webhook:ops", "email"}, res.AlreadyDelivered)
	require.Len(t, w.ops.Requests(), 1)
	require.Len(t, w.chat.Requests(), 1)
	require.Len(t, w.smtp.Mails(), 1)
	require.Len(t, notifyAudit(t, w.store, ev.BulkChangeID), 4)
}

// A receiver whose port is closed fails at once, retryably.
func TestNotifyActivityReceiverRefusingConnections(t *testing.T) {
	w := newNotifyWorld(t, 5*time.Second)
	certs := notifytest.Certs(t)
	gone := notifytest.StartWebhook(t, certs)
	cfg := &config.Config{Notifications: config.Notifications{Timeout: 5 * time.Second, Webhooks: []config.Webhook{
		{Name: "gone", URL: config.Secret(gone.URL), Format: "json", CAFile: certs.CA}}}}
	sender, err := notify.NewSender(cfg, "default")
	require.NoError(t, err)
	w.notifier.Sender = sender
	gone.Close()
	started := time.Now()
	_, err = w.notify(t, notifyEvent(notify.ApprovalNeeded))
	require.Less(t, time.Since(started), 5*time.Second)
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(err, &appErr), "%v", err)
	require.False(t, appErr.NonRetryable())
	require.Contains(t, err.Error(), "webhook:gone")
}

// An event that cannot be sent is not retried for a day.
func TestNotifyActivityInvalidEventIsNotRetried(t *testing.T) {
	w := newNotifyWorld(t, 5*time.Second)
	ev := notifyEvent(notify.Finished)
	ev.Kind = "exploded"
	_, err := w.notify(t, ev)
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(err, &appErr), "%v", err)
	require.True(t, appErr.NonRetryable())
	require.Empty(t, w.ops.Requests())
}

// No channel configured: the activity succeeds and sends nothing.
func TestNotifyActivityWithoutChannels(t *testing.T) {
	w := newNotifyWorld(t, 5*time.Second)
	w.notifier.Sender = nil
	res, err := w.notify(t, notifyEvent(notify.Finished))
	require.NoError(t, err)
	require.Empty(t, res.Delivered)
	require.Empty(t, w.ops.Requests())
}

// The notification workflow runs the activity with its retry policy: a
// receiver that hangs on the first attempt gets the event on a later one,
// and the others get it once.
func TestNotifyWorkflowRetriesUntilDelivered(t *testing.T) {
	w := newNotifyWorld(t, time.Second)
	w.chat.HangNext(1)
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := suite.NewTestWorkflowEnvironment()
	env.SetTestTimeout(2 * time.Minute)
	notify.RegisterWorkflow(env)
	activities.RegisterNotifier(env, w.notifier)
	ev := notifyEvent(notify.Finished)
	env.ExecuteWorkflow(notify.WorkflowName, notify.Input{Event: ev})
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res notify.Result
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, []string{"webhook:chat"}, res.Delivered)
	require.Equal(t, []string{"webhook:ops", "email"}, res.AlreadyDelivered)
	require.Len(t, w.ops.Requests(), 1)
	require.Len(t, w.chat.Requests(), 1)
	require.Len(t, w.smtp.Mails(), 1)
	var attempts []int
	for _, r := range notifyAudit(t, w.store, ev.BulkChangeID) {
		if strings.HasPrefix(r.Path, "webhook:chat") {
			attempts = append(attempts, r.Attempt)
		}
	}
	require.Equal(t, []int{1, 2}, attempts)
}
