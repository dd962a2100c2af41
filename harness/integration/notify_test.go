package integration

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/harness/notifytest"
	"github.com/iot-ops/tsbulk/harness/stack"
	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/notify"
	"github.com/iot-ops/tsbulk/submission"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// People are told, by webhook and by e-mail (a real HTTPS receiver and a
// real SMTP server speaking STARTTLS), what they must act on: a bulk change
// awaiting approval, its end with its errors by code, and a bulk change that
// failed (its tenant's password refused). A receiver that is down delays
// nothing: the bulk changes finish while its notifications are still
// being retried, and once it is back it gets them.
func TestNotificationsEndToEnd(t *testing.T) {
	certs := notifytest.Certs(t)
	hook := notifytest.StartWebhook(t, certs)
	down := notifytest.StartWebhook(t, certs)
	down.Hang(true)
	mail := notifytest.StartSMTP(t, notifytest.StartTLS, certs, "tsbulk", "smtp-secret")
	s := newStack(t, stack.Options{
		ThingSpace: simConfig(200*time.Millisecond, 200*time.Millisecond, 91),
		Tenants:    []stack.TenantOptions{{ID: "beta", ThingSpace: simConfig(200*time.Millisecond, 0, 92)}},
		Config: func(c *config.Config) {
			c.Approval = config.Approval{Operations: []string{"suspend"}, MinDevices: 1, ExpiresAfter: time.Hour}
			c.Tenants[0].Approval = config.Approval{}
			// Beta's ThingSpace refuses this password.
			c.Tenants[0].ThingSpace.Password = "not-beta-password"
			c.Notifications = config.Notifications{
				Timeout: 2 * time.Second,
				Webhooks: []config.Webhook{
					{Name: "ops", URL: config.Secret(hook.URL + "/events"), Format: "json", CAFile: certs.CA},
					{Name: "down", URL: config.Secret(down.URL + "/events"), Format: "slack", CAFile: certs.CA},
				},
				Email: config.Email{Host: mail.Host, Port: mail.Port, TLS: "starttls", Username: "tsbulk",
					Password: "smtp-secret", From: "tsbulk@example.com", To: []string{"noc@example.com"},
					Kinds:  []string{string(notify.ApprovalNeeded), string(notify.Failed), string(notify.Finished)},
					CAFile: certs.CA},
			}
		},
	})
	_, err := s.StartWorker()
	require.NoError(t, err)
	ctx := context.Background()

	// A suspend of three lines, one of them unknown to ThingSpace: it
	// waits for approval, then finishes with one error.
	devs := tssim.GenerateDevices(2, "8914800911", "active")
	require.NoError(t, s.TS.Seed(devs...))
	unknown := tssim.GenerateDevices(1, "8914800912", "active")[0]
	rows := []row{{"iccid": devs[0].ICCID, "operation": "suspend"}, {"iccid": devs[1].ICCID, "operation": "suspend"},
		{"iccid": unknown.ICCID, "operation": "suspend"}}
	req, err := submission.ForTenant(s.Config, "", "")
	require.NoError(t, err)
	req.File, req.SubmittedBy = writeCSV(t, []string{"iccid", "operation"}, rows), "alice"
	req.Options.Timing.CallbackTimeout = 5 * time.Second
	res, err := (&submission.Submitter{Store: s.Store, Temporal: s.Client}).Submit(ctx, req)
	require.NoError(t, err)
	waitForStatus(t, s, res.ID, change.BulkAwaitingApproval)
	approval := waitEvent(t, hook, res.ID, notify.ApprovalNeeded)
	require.Contains(t, approval.Reason, "approval by an operator other than alice")
	_, err = operatorUpdate(t, s, res.WorkflowID, api.ApproveUpdate, api.OperatorRequest{By: "bob"})
	require.NoError(t, err)
	out := waitBulk(t, s, res, 3*time.Minute)
	require.Equal(t, 1, out.Errors)

	// Beta's bulk change cannot run: its password is refused.
	betaDevs := tssim.GenerateDevices(2, "8914800913", "active")
	require.NoError(t, s.TenantTS["beta"].Seed(betaDevs...))
	breq, err := submission.ForTenant(s.Config, "beta", "")
	require.NoError(t, err)
	breq.File = writeCSV(t, []string{"iccid", "operation"}, []row{
		{"iccid": betaDevs[0].ICCID, "operation": "restore"}, {"iccid": betaDevs[1].ICCID, "operation": "restore"}})
	bres, err := (&submission.Submitter{Store: s.Store, Temporal: s.Client}).Submit(ctx, breq)
	require.NoError(t, err)
	require.Error(t, s.Client.GetWorkflow(ctx, bres.WorkflowID, "").Get(ctx, nil))

	// Both bulk changes ended while the receiver that is down still
	// holds their notifications: they waited for nothing.
	for _, ev := range []string{notify.EventID(res.ID, notify.Finished, ""), notify.EventID(bres.ID, notify.Failed, "")} {
		d, err := s.Client.DescribeWorkflow(ctx, notify.WorkflowID(notify.Event{ID: ev}), "")
		require.NoError(t, err, ev)
		require.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, d.Status, "%s is still being retried", ev)
	}

	finished := waitEvent(t, hook, res.ID, notify.Finished)
	require.Equal(t, []int{3, 2, 1}, []int{finished.Total, finished.Processed, finished.Errors})
	require.Len(t, finished.ErrorsByCode, 1)
	require.Equal(t, 1, finished.ErrorsByCode[0].Count)
	failed := waitEvent(t, hook, bres.ID, notify.Failed)
	require.Equal(t, "beta", failed.Tenant)
	require.Contains(t, failed.Reason, "ThingSpace authentication failed")
	require.Equal(t, 2, failed.Errors)

	// The same three by e-mail, over TLS, AUTH over TLS only.
	require.Eventually(t, func() bool { return len(mail.Mails()) >= 3 }, time.Minute, 200*time.Millisecond)
	subjects := ""
	for _, m := range mail.Mails() {
		require.True(t, m.TLS)
		require.Equal(t, []string{"noc@example.com"}, m.To)
		subjects += string(m.Data)
	}
	for _, id := range []string{res.ID, bres.ID} {
		require.Contains(t, subjects, id)
	}
	for _, a := range mail.Auths() {
		require.True(t, a.TLS, "AUTH only over TLS")
	}
	for _, d := range append(devs, unknown) {
		require.NotContains(t, subjects, d.ICCID, "no device identifiers in a notification")
	}

	// The receiver comes back: it is sent what it missed (Slack's shape).
	down.Hang(false)
	require.Eventually(t, func() bool {
		got := ""
		for _, r := range down.Requests() {
			got += string(r.Body)
		}
		return strings.Contains(got, res.ID) && strings.Contains(got, bres.ID) && strings.Contains(got, `"text"`)
	}, 3*time.Minute, time.Second, "the receiver that was down gets its notifications once back")

	// Every delivery is in the audit log, without secrets.
	var n int
	require.NoError(t, s.Store.Pool.QueryRow(ctx, `SELECT count(*) FROM m2m_log WHERE service = 'notify'
		AND (request_body LIKE '%smtp-secret%' OR coalesce(response_body, '') LIKE '%smtp-secret%')`).Scan(&n))
	require.Zero(t, n)
	require.NoError(t, s.Store.Pool.QueryRow(ctx, `SELECT count(*) FROM m2m_log WHERE service = 'notify' AND outcome = 'ok'`).Scan(&n))
	require.GreaterOrEqual(t, n, 3+3+2, "ops's three events, the mail's three, and down's at least two")
}

// waitEvent waits for the webhook to receive the event of kind about a
// bulk change, and returns it.
func waitEvent(t *testing.T, hook *notifytest.Webhook, bulkID string, kind notify.Kind) notify.Event {
	t.Helper()
	var got notify.Event
	require.Eventually(t, func() bool {
		for _, r := range hook.Requests() {
			var ev notify.Event
			if json.Unmarshal(r.Body, &ev) == nil && ev.BulkChangeID == bulkID && ev.Kind == kind {
				got = ev
				return true
			}
		}
		return false
	}, 2*time.Minute, 200*time.Millisecond, "the %s event of %s", kind, bulkID)
	return got
}
