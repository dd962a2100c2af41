package config

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const notificationsYAML = `
notifications:
  timeout: 7s
  webhooks:
    - name: ops
      url: https://hooks.example.com/tsbulk
      format: json
      kinds: [approval_needed, failed]
      secret_header: X-Webhook-Token
    - name: chat
      format: slack
  email:
    host: smtp.example.com
    tls: implicit
    username: tsbulk-mailer
    from: tsbulk <tsbulk@example.com>
    to: [ops@example.com, night@example.com]
    kinds: [finished]
`

func TestNotificationsConfigLoads(t *testing.T) {
	dir := t.TempDir()
	slackURL := "https://hooks.slack.com/services/T0/B0/token-in-the-url"
	urlFile := filepath.Join(dir, "chat-url")
	require.NoError(t, os.WriteFile(urlFile, []byte(slackURL+"\n"), 0o600))
	t.Setenv("TSBULK_NOTIFICATIONS_WEBHOOKS_CHAT_URL_FILE", urlFile)
	t.Setenv("TSBULK_NOTIFICATIONS_WEBHOOKS_OPS_SECRET", "hook-secret-value")
	t.Setenv("TSBULK_NOTIFICATIONS_EMAIL_PASSWORD", "smtp-password-value")
	t.Setenv("TSBULK_NOTIFICATIONS_EMAIL_HOST", "mail.example.org")
	cfg := loadYAML(t, notificationsYAML)
	n := cfg.Notifications
	require.Equal(t, 7*time.Second, n.Timeout)
	require.Len(t, n.Webhooks, 2)
	ops, chat := n.Webhooks[0], n.Webhooks[1]
	require.Equal(t, Webhook{Name: "ops", URL: "https://hooks.example.com/tsbulk", Format: "json",
		Kinds: []string{"approval_needed", "failed"}, SecretHeader: "X-Webhook-Token", Secret: "hook-secret-value"}, ops)
	require.Equal(t, Webhook{Name: "chat", URL: Secret(slackURL), Format: "slack"}, chat)
	require.True(t, Wants(chat.Kinds, "stalled"), "no kinds: every kind")
	require.False(t, Wants(ops.Kinds, "finished"))
	e := n.Email
	require.Equal(t, "mail.example.org", e.Host, "the environment overrides the file")
	require.Equal(t, 465, e.ServerPort())
	require.Equal(t, Secret("smtp-password-value"), e.Password)
	require.Equal(t, []string{"ops@example.com", "night@example.com"}, e.To)
	require.NoError(t, cfg.ValidateNotifications())

	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("config", "notifications", n)
	fmt.Fprintf(&b, "%v %+v %#v", n, n, n)
	for _, secret := range []string{"hook-secret-value", "smtp-password-value", "token-in-the-url"} {
		require.NotContains(t, b.String(), secret)
	}
}

func TestNotificationsSecretsFromFiles(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "hook")
	pwFile := filepath.Join(dir, "smtp")
	require.NoError(t, os.WriteFile(secretFile, []byte("from-a-file\n"), 0o600))
	require.NoError(t, os.WriteFile(pwFile, []byte("pw-from-a-file\n"), 0o600))
	body := strings.Replace(notificationsYAML, "secret_header: X-Webhook-Token",
		"secret_header: X-Webhook-Token\n      secret_file: "+secretFile, 1)
	body = strings.Replace(body, "username: tsbulk-mailer", "username: tsbulk-mailer\n    password_file: "+pwFile, 1)
	cfg := loadYAML(t, body)
	require.Equal(t, Secret("from-a-file"), cfg.Notifications.Webhooks[0].Secret)
	require.Equal(t, Secret("pw-from-a-file"), cfg.Notifications.Email.Password)
}

func TestNotificationsSecretsInTheFileAreRefused(t *testing.T) {
	_, err := Load(writeYAML(t, strings.Replace(notificationsYAML, "secret_header: X-Webhook-Token",
		"secret_header: X-Webhook-Token\n      secret: in-the-file", 1)))
	require.ErrorContains(t, err, "notifications.webhooks entry 1: secret must not be in the config file")
	require.NotContains(t, err.Error(), "in-the-file")
	_, err = Load(writeYAML(t, strings.Replace(notificationsYAML, "username: tsbulk-mailer",
		"username: tsbulk-mailer\n    password: in-the-file", 1)))
	require.ErrorContains(t, err, "notifications.email.password must not be in the config file")
	require.NotContains(t, err.Error(), "in-the-file")
}

func TestNotificationsUnknownOrBadlyNamedWebhooksAreRefused(t *testing.T) {
	for _, c := range []struct{ body, want string }{
		{strings.Replace(notificationsYAML, "name: chat", "name: Chat-Room", 1), `entry 2: name "Chat-Room"`},
		// A misspelt setting is not silently dropped.
		{strings.Replace(notificationsYAML, "format: slack", "format: slack\n      colour: red", 1), "entry 2"},
		{strings.Replace(notificationsYAML, "format: slack", "format: slack\n      colour: red", 1), "colour"},
	} {
		_, err := Load(writeYAML(t, c.body))
		require.ErrorContains(t, err, c.want)
	}
}

func TestNotificationsValidationNamesEverySetting(t *testing.T) {
	t.Setenv("TSBULK_NOTIFICATIONS_WEBHOOKS_CHAT_URL", "http://hooks.example.com/x")
	body := strings.NewReplacer(
		"timeout: 7s", "timeout: 0s",
		"format: json", "format: xml",
		"kinds: [approval_needed, failed]", "kinds: [approval_needed, exploded]",
		"tls: implicit", "tls: none",
		"from: tsbulk <tsbulk@example.com>", "from: not an address",
		"to: [ops@example.com, night@example.com]", "to: [ops@example.com, nobody]",
		"kinds: [finished]", "kinds: [finishd]",
	).Replace(notificationsYAML)
	body += "    ca_file: /nonexistent/ca.pem\n"
	cfg := loadYAML(t, body)
	err := cfg.ValidateNotifications()
	require.Error(t, err)
	for _, want := range []string{
		"notifications.timeout (TSBULK_NOTIFICATIONS_TIMEOUT): must be positive",
		"notifications.webhooks.ops.format: \"xml\" is not json or slack",
		"notifications.webhooks.ops.kinds: \"exploded\" is not a kind of event",
		// The header without its secret.
		"notifications.webhooks.ops.secret_header: goes with the secret (TSBULK_NOTIFICATIONS_WEBHOOKS_OPS_SECRET",
		// http outside dev mode.
		"notifications.webhooks.chat.url (TSBULK_NOTIFICATIONS_WEBHOOKS_CHAT_URL): must be https",
		"notifications.email.tls (TSBULK_NOTIFICATIONS_EMAIL_TLS): \"none\" is not starttls or implicit",
		"notifications.email.username (TSBULK_NOTIFICATIONS_EMAIL_USERNAME): goes with the password",
		"notifications.email.from (TSBULK_NOTIFICATIONS_EMAIL_FROM): must be an e-mail address",
		"notifications.email.to (TSBULK_NOTIFICATIONS_EMAIL_TO): entry 2: \"nobody\"",
		"notifications.email.kinds (TSBULK_NOTIFICATIONS_EMAIL_KINDS): \"finishd\" is not a kind of event",
		"notifications.email.ca_file (TSBULK_NOTIFICATIONS_EMAIL_CA_FILE): cannot be read",
	} {
		require.ErrorContains(t, err, want)
	}
	// The URL may carry a token: never quoted back.
	require.NotContains(t, err.Error(), "hooks.example.com/x")
}

func TestNotificationsNoneConfiguredIsValid(t *testing.T) {
	cfg, err := Load("")
	require.NoError(t, err)
	require.Empty(t, cfg.Notifications.Webhooks)
	require.False(t, cfg.Notifications.Email.Enabled())
	require.NoError(t, cfg.ValidateNotifications())
	require.Equal(t, 10*time.Second, cfg.Notifications.Timeout)
}

// A configuration without any channel (one built in code, with its zero
// timeout) is valid: nothing is ever sent. With a channel, the timeout
// must be positive.
func TestNotificationsWithoutChannelsNeedNoTimeout(t *testing.T) {
	c := &Config{}
	require.NoError(t, c.ValidateNotifications())
	c.Notifications.Email = Email{Host: "smtp.example.com", From: "a@example.com", To: []string{"b@example.com"}}
	require.ErrorContains(t, c.ValidateNotifications(), "notifications.timeout (TSBULK_NOTIFICATIONS_TIMEOUT): must be positive")
}
