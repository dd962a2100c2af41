package notify_test

import (
	"context"
	"encoding/json"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/harness/notifytest"
	"github.com/iot-ops/tsbulk/harness/testcerts"
	"github.com/iot-ops/tsbulk/notify"
)

const (
	bulkID       = "6f1c2a9e-4b7d-4c1e-9a3f-2d8e5b7c9a10"
	hookSecret   = "hook-secret-value-0123"
	smtpUser     = "tsbulk-mailer"
	smtpPassword = "smtp-password-value-0456"
	// A Slack incoming webhook's URL carries its token in the path.
	slackToken = "/services/T0000/B0000/slacktokenvalue789"
)

func finishedEvent() notify.Event {
	return notify.Event{
		ID:           notify.EventID(bulkID, notify.Finished, ""),
		Kind:         notify.Finished,
		BulkChangeID: bulkID,
		Tenant:       "acme",
		Operation:    "suspend",
		Account:      "0000123456-00001",
		Summary:      "suspend 10,000 devices, submitted by alice",
		Total:        10000,
		Processed:    9988,
		Errors:       12,
		ErrorsByCode: notify.TopErrors(map[change.Code]int{
			"DeviceNotFound": 7, "InvalidState": 3, "Throttled": 1, "PlanMismatch": 1, "Other": 0,
			"LineLocked": 1, "A": 1,
		}),
		At: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC),
	}
}

type world struct {
	certs testcerts.Files
	json  *notifytest.Webhook
	slack *notifytest.Webhook
	smtp  *notifytest.SMTPServer
	cfg   *config.Config
}

// newWorld starts a JSON webhook (with a header secret), a Slack webhook
// (its token in the URL) and an SMTP server in smtpMode, and a
// configuration sending them every kind.
func newWorld(t *testing.T, smtpMode string) *world {
	t.Helper()
	w := &world{certs: notifytest.Certs(t)}
	w.json = notifytest.StartWebhook(t, w.certs)
	w.slack = notifytest.StartWebhook(t, w.certs)
	w.smtp = notifytest.StartSMTP(t, smtpMode, w.certs, smtpUser, smtpPassword)
	tlsMode := "starttls"
	if smtpMode == notifytest.Implicit {
		tlsMode = "implicit"
	}
	w.cfg = &config.Config{
		Temporal: config.Temporal{UIURL: "https://temporal-ui.example.com/"},
		Notifications: config.Notifications{
			Timeout: 5 * time.Second,
			Webhooks: []config.Webhook{
				{Name: "ops", URL: config.Secret(w.json.URL + "/hooks/tsbulk"), Format: "json",
					SecretHeader: "X-Webhook-Token", Secret: hookSecret, CAFile: w.certs.CA},
				{Name: "chat", URL: config.Secret(w.slack.URL + slackToken), Format: "slack",
					Kinds: []string{"failed", "finished"}, CAFile: w.certs.CA},
			},
			Email: config.Email{Host: w.smtp.Host, Port: w.smtp.Port, TLS: tlsMode, Username: smtpUser,
				Password: smtpPassword, From: "tsbulk <tsbulk@example.com>",
				To: []string{"ops@example.com", "Night Shift <night@example.com>"}, CAFile: w.certs.CA},
		},
	}
	return w
}

func (w *world) sender(t *testing.T) *notify.Sender {
	t.Helper()
	s, err := notify.NewSender(w.cfg, "tsbulk-prod")
	require.NoError(t, err)
	return s
}

func TestNotifyKindsAreTheConfigurationsKinds(t *testing.T) {
	var kinds []string
	for _, k := range notify.Kinds() {
		kinds = append(kinds, string(k))
	}
	require.Equal(t, config.NotificationKinds, kinds)
}

func TestNotifyChannelsPerKind(t *testing.T) {
	w := newWorld(t, notifytest.StartTLS)
	s := w.sender(t)
	require.Equal(t, []string{"webhook:ops", "webhook:chat", "email"}, s.Channels(notify.Finished))
	require.Equal(t, []string{"webhook:ops", "email"}, s.Channels(notify.ApprovalNeeded))
	w.cfg.Notifications.Email.Kinds = []string{"failed"}
	s = w.sender(t)
	require.Equal(t, []string{"webhook:ops"}, s.Channels(notify.Stalled))
	require.Equal(t, []string{"webhook:ops", "webhook:chat", "email"}, s.Channels(notify.Failed))
}

func TestNotifyWebhookJSON(t *testing.T) {
	w := newWorld(t, notifytest.StartTLS)
	ev := finishedEvent()
	d, err := w.sender(t).Send(context.Background(), "webhook:ops", ev)
	require.NoError(t, err)
	reqs := w.json.Requests()
	require.Len(t, reqs, 1)
	r := reqs[0]
	require.Equal(t, "POST", r.Method)
	require.Equal(t, "/hooks/tsbulk", r.Path)
	require.Equal(t, "application/json", r.Header.Get("Content-Type"))
	require.Equal(t, hookSecret, r.Header.Get("X-Webhook-Token"))
	require.Equal(t, ev.ID, r.Header.Get("Idempotency-Key"))

	var got struct {
		notify.Event
		Title string `json:"title"`
		Text  string `json:"text"`
		Link  string `json:"link"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &got))
	require.Equal(t, ev.ID, got.ID)
	require.Equal(t, notify.Finished, got.Kind)
	require.Equal(t, bulkID, got.BulkChangeID)
	require.Equal(t, "acme", got.Tenant)
	require.Equal(t, 10000, got.Total)
	require.Equal(t, 12, got.Errors)
	require.Equal(t, ev.At, got.At)
	// The five most frequent codes, ties by code.
	require.Equal(t, []notify.ErrorCount{{Code: "DeviceNotFound", Count: 7}, {Code: "InvalidState", Count: 3},
		{Code: "A", Count: 1}, {Code: "LineLocked", Count: 1}, {Code: "PlanMismatch", Count: 1}}, got.ErrorsByCode)
	require.Equal(t, "https://temporal-ui.example.com/namespaces/tsbulk-prod/workflows/bulk-change%2F"+bulkID, got.Link)
	require.Equal(t, "Bulk change 6f1c2a9e finished with 12 errors: suspend 10,000 devices, submitted by alice", got.Title)
	require.Contains(t, got.Text, "10,000: 9,988 processed, 12 errors")

	// The audit log's copy: what was sent, where, without the secrets.
	require.Equal(t, string(r.Body), d.Request)
	require.Equal(t, 200, d.Status)
	require.Equal(t, "ok", d.Response)
	require.Equal(t, w.json.URL, d.Target)
	require.NotContains(t, d.Request+d.Target+d.Response, hookSecret)
}

func TestNotifyWebhookSlackShape(t *testing.T) {
	w := newWorld(t, notifytest.StartTLS)
	ev := finishedEvent()
	ev.Summary = "suspend <b>&</b> devices"
	d, err := w.sender(t).Send(context.Background(), "webhook:chat", ev)
	require.NoError(t, err)
	reqs := w.slack.Requests()
	require.Len(t, reqs, 1)
	require.Equal(t, slackToken, reqs[0].Path)
	var got struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type string `json:"type"`
			Text *struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"text"`
			Fields []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"fields"`
			Elements []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"elements"`
		} `json:"blocks"`
	}
	dec := json.NewDecoder(strings.NewReader(string(reqs[0].Body)))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&got))
	require.Equal(t, "Bulk change 6f1c2a9e finished with 12 errors: suspend <b>&</b> devices", got.Text)
	require.Equal(t, "section", got.Blocks[0].Type)
	require.Equal(t, "mrkdwn", got.Blocks[0].Text.Type)
	// mrkdwn's reserved characters are escaped in blocks.
	require.Contains(t, got.Blocks[0].Text.Text, "suspend &lt;b&gt;&amp;&lt;/b&gt; devices")
	var fields []string
	for _, f := range got.Blocks[1].Fields {
		fields = append(fields, f.Text)
	}
	require.Contains(t, fields, "*Devices*\n10,000: 9,988 processed, 12 errors")
	require.Contains(t, got.Blocks[2].Text.Text, "`DeviceNotFound` 7")
	last := got.Blocks[len(got.Blocks)-1]
	require.Equal(t, "context", last.Type)
	require.Contains(t, last.Elements[1].Text,
		"<https://temporal-ui.example.com/namespaces/tsbulk-prod/workflows/bulk-change%2F"+bulkID+"|")
	// The URL's token is a secret: the audit copy names the host only.
	require.Equal(t, w.slack.URL, d.Target)
	require.NotContains(t, d.Request+d.Target+d.Response, "slacktokenvalue789")
}

// Free text cannot carry a line's identifiers or break a mail header.
func TestNotifyEventCarriesNothingPersonal(t *testing.T) {
	w := newWorld(t, notifytest.StartTLS)
	ev := finishedEvent()
	ev.Kind, ev.ID = notify.Failed, notify.EventID(bulkID, notify.Failed, "")
	ev.Summary = "activate 89148000001234567890\r\nBcc: victim@example.com"
	ev.Reason = "ThingSpace refused MSISDN +15551234567 at 2026-03-04 05:06:07"
	s := w.sender(t)
	_, err := s.Send(context.Background(), "webhook:ops", ev)
	require.NoError(t, err)
	_, err = s.Send(context.Background(), "email", ev)
	require.NoError(t, err)
	body := string(w.json.Requests()[0].Body)
	mails := w.smtp.Mails()
	require.Len(t, mails, 1)
	msg, err := mail.ReadMessage(strings.NewReader(string(mails[0].Data)))
	require.NoError(t, err)
	require.Empty(t, msg.Header.Get("Bcc"), "a line break in the summary must not add a header")
	text, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	require.NoError(t, err)
	for _, sent := range []string{body, msg.Header.Get("Subject"), string(text)} {
		require.NotContains(t, sent, "89148000001234567890")
		require.NotContains(t, sent, "5551234567")
		require.Contains(t, sent, "[number removed]")
	}
	// A date is not a number to remove.
	require.Contains(t, string(text), "2026-03-04 05:06:07")
	require.Equal(t, []string{"ops@example.com", "night@example.com"}, mails[0].To)
}

func TestNotifyEmailOverSTARTTLS(t *testing.T) {
	w := newWorld(t, notifytest.StartTLS)
	ev := finishedEvent()
	d, err := w.sender(t).Send(context.Background(), "email", ev)
	require.NoError(t, err)
	requireMail(t, w, ev)
	require.Equal(t, "SMTP", d.Method)
	require.Equal(t, w.smtp.Addr(), d.Target)
	require.NotContains(t, d.Request, smtpPassword)
	var audit struct {
		Subject    string `json:"subject"`
		Body       string `json:"body"`
		Recipients int    `json:"recipients"`
	}
	require.NoError(t, json.Unmarshal([]byte(d.Request), &audit))
	require.Equal(t, 2, audit.Recipients)
	require.Equal(t, "[tsbulk] Bulk change 6f1c2a9e finished with 12 errors: suspend 10,000 devices, submitted by alice",
		audit.Subject)
}

func TestNotifyEmailOverImplicitTLS(t *testing.T) {
	w := newWorld(t, notifytest.Implicit)
	ev := finishedEvent()
	_, err := w.sender(t).Send(context.Background(), "email", ev)
	require.NoError(t, err)
	requireMail(t, w, ev)
}

// requireMail checks the one mail the server got: over TLS, authenticated
// over TLS, from and to the configured addresses, its subject and body.
func requireMail(t *testing.T, w *world, ev notify.Event) {
	t.Helper()
	auths := w.smtp.Auths()
	require.Len(t, auths, 1)
	require.Equal(t, notifytest.Auth{Mechanism: "PLAIN", Username: smtpUser, Password: smtpPassword, TLS: true}, auths[0])
	mails := w.smtp.Mails()
	require.Len(t, mails, 1)
	m := mails[0]
	require.True(t, m.TLS)
	require.Equal(t, "tsbulk@example.com", m.From)
	require.Equal(t, []string{"ops@example.com", "night@example.com"}, m.To)
	msg, err := mail.ReadMessage(strings.NewReader(string(m.Data)))
	require.NoError(t, err)
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	require.NoError(t, err)
	require.Equal(t, "[tsbulk] Bulk change 6f1c2a9e finished with 12 errors: suspend 10,000 devices, submitted by alice", subject)
	require.Equal(t, `"tsbulk" <tsbulk@example.com>`, msg.Header.Get("From"))
	require.Equal(t, `<ops@example.com>, "Night Shift" <night@example.com>`, msg.Header.Get("To"))
	require.Equal(t, "text/plain; charset=utf-8", msg.Header.Get("Content-Type"))
	require.Equal(t, "auto-generated", msg.Header.Get("Auto-Submitted"))
	date, err := msg.Header.Date()
	require.NoError(t, err)
	require.True(t, date.Equal(ev.At))
	require.Equal(t, "quoted-printable", msg.Header.Get("Content-Transfer-Encoding"))
	raw, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	require.NoError(t, err)
	// Columns aligned with spaces: compared with single spaces.
	var lines []string
	for _, l := range strings.Split(string(raw), "\r\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	for _, want := range []string{
		"Bulk change 6f1c2a9e finished with 12 errors: suspend 10,000 devices, submitted by alice",
		"Bulk change: " + bulkID,
		"Tenant: acme",
		"Operation: suspend",
		"Account: 0000123456-00001",
		"Devices: 10,000: 9,988 processed, 12 errors",
		"Errors by code:",
		"DeviceNotFound 7",
		"Web UI: https://temporal-ui.example.com/namespaces/tsbulk-prod/workflows/bulk-change%2F" + bulkID,
		"Time: 2026-03-04T05:06:07Z",
		"Event: " + ev.ID,
	} {
		require.Contains(t, lines, want)
	}
}

// A server that offers no STARTTLS gets nothing: not the password, not the
// message.
func TestNotifyEmailRefusesAServerWithoutTLS(t *testing.T) {
	w := newWorld(t, notifytest.NoTLS)
	_, err := w.sender(t).Send(context.Background(), "email", finishedEvent())
	require.ErrorContains(t, err, "does not offer STARTTLS")
	require.Empty(t, w.smtp.Auths())
	require.Empty(t, w.smtp.Mails())
}

// A certificate the configured CAs do not vouch for is refused.
func TestNotifyRefusesAnUntrustedCertificate(t *testing.T) {
	w := newWorld(t, notifytest.StartTLS)
	other := notifytest.Certs(t)
	w.cfg.Notifications.Email.CAFile = other.CA
	w.cfg.Notifications.Webhooks[0].CAFile = other.CA
	s := w.sender(t)
	_, err := s.Send(context.Background(), "email", finishedEvent())
	require.ErrorContains(t, err, "certificate")
	_, err = s.Send(context.Background(), "webhook:ops", finishedEvent())
	require.ErrorContains(t, err, "certificate")
	require.Empty(t, w.smtp.Auths())
	require.Empty(t, w.json.Requests())
}

// A receiver that takes the connection and never answers fails the
// delivery by notifications.timeout; the error names no secret.
func TestNotifyHangingReceiversFailWithinTheTimeout(t *testing.T) {
	w := newWorld(t, notifytest.StartTLS)
	w.cfg.Notifications.Timeout = 500 * time.Millisecond
	// An SMTP server that accepts and says nothing.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = silent.Close() })
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() })
		}
	}()
	w.cfg.Notifications.Email.Port = silent.Addr().(*net.TCPAddr).Port
	w.slack.Hang(true)
	s := w.sender(t)
	for _, ch := range []string{"email", "webhook:chat"} {
		started := time.Now()
		d, err := s.Send(context.Background(), ch, finishedEvent())
		require.Error(t, err, ch)
		require.Less(t, time.Since(started), 3*time.Second, ch)
		require.Contains(t, err.Error(), "notifications.timeout", ch)
		require.NotContains(t, err.Error(), "slacktokenvalue789")
		require.NotContains(t, err.Error(), smtpPassword)
		require.NotEmpty(t, d.Request, "the audit log gets what was tried")
	}
}

func TestNotifyWebhookErrorStatusFails(t *testing.T) {
	w := newWorld(t, notifytest.StartTLS)
	w.json.AnswerStatus(503)
	d, err := w.sender(t).Send(context.Background(), "webhook:ops", finishedEvent())
	require.ErrorContains(t, err, "503")
	require.Equal(t, 503, d.Status)
}

func TestNotifyInvalidEventsAreRefused(t *testing.T) {
	w := newWorld(t, notifytest.StartTLS)
	s := w.sender(t)
	for name, mutate := range map[string]func(*notify.Event){
		"id":           func(e *notify.Event) { e.ID = "" },
		"kind":         func(e *notify.Event) { e.Kind = "exploded" },
		"bulkChangeId": func(e *notify.Event) { e.BulkChangeID = "89148000001234567890" },
		"errors":       func(e *notify.Event) { e.Errors = -1 },
	} {
		ev := finishedEvent()
		mutate(&ev)
		_, err := s.Send(context.Background(), "webhook:ops", ev)
		require.Error(t, err, name)
	}
	require.Empty(t, w.json.Requests())
}

func TestNotifyNewSenderValidates(t *testing.T) {
	w := newWorld(t, notifytest.StartTLS)
	w.cfg.Notifications.Webhooks[0].Format = "xml"
	_, err := notify.NewSender(w.cfg, "default")
	require.ErrorContains(t, err, "notifications.webhooks.ops.format")
}
