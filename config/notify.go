package config

// Notifications: the events a person must act on or wants to know (a bulk
// change awaits approval, finished, failed, stalled, billing steps owed),
// sent by webhook and e-mail (package notify). Which channel gets which
// kinds is set per channel.

import (
	"crypto/x509"
	"fmt"
	"net/mail"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/spf13/viper"
)

// NotificationKinds are the kinds of events notified, as the settings name
// them (notify.Kind's values).
var NotificationKinds = []string{"approval_needed", "finished", "failed", "stalled", "billing_owed"}

// Notifications are the channels notifications are sent to
// (notifications.*). None configured: nothing is sent.
type Notifications struct {
	// Webhooks are read from the file's notifications.webhooks list (a
	// list of sections cannot come from the environment); their secrets
	// from the environment or *_file settings.
	Webhooks []Webhook `mapstructure:"-"`
	Email    Email     `mapstructure:"email"`
	// Timeout bounds one delivery (one POST, one SMTP session): a receiver
	// that is down fails the attempt by then, and the activity's retry
	// policy tries again later.
	Timeout time.Duration `mapstructure:"timeout"`
}

// Webhook is an HTTP endpoint that receives an event as a POST of JSON.
type Webhook struct {
	// Name identifies the webhook in the audit log and in the names of its
	// secrets' environment variables
	// (TSBULK_NOTIFICATIONS_WEBHOOKS_<NAME>_SECRET).
	Name string `mapstructure:"name"`
	// URL is where events are posted. A Slack incoming webhook's URL is
	// itself a credential, so the URL is held as a secret (never printed,
	// never in the audit log, which names the webhook), and may come from
	// TSBULK_NOTIFICATIONS_WEBHOOKS_<NAME>_URL or url_file instead of url.
	URL Secret `mapstructure:"-"`
	// Format is json (the event's fields) or slack (Slack's {"text",
	// "blocks"}, which Mattermost and Rocket.Chat take too).
	Format string `mapstructure:"format"`
	// Kinds are the kinds of events sent here; empty: every kind.
	Kinds []string `mapstructure:"kinds"`
	// SecretHeader names the header that carries Secret (for example
	// Authorization, or X-Webhook-Token): both or neither.
	SecretHeader string `mapstructure:"secret_header"`
	// Secret is the header's value: from
	// TSBULK_NOTIFICATIONS_WEBHOOKS_<NAME>_SECRET or secret_file, never
	// from the file itself.
	Secret Secret `mapstructure:"-"`
	// CAFile is the PEM file of the CAs the receiver's certificate must
	// chain to instead of the system's roots (a self-signed receiver, the
	// tests).
	CAFile string `mapstructure:"ca_file"`
}

// Email sends events by SMTP, always over TLS. Host "" turns it off.
type Email struct {
	Host string `mapstructure:"host"`
	// Port: 0 takes 587 with starttls, 465 with implicit.
	Port int `mapstructure:"port"`
	// TLS is starttls (the session must switch to TLS before anything
	// else is sent: a server that does not offer it is refused) or
	// implicit (TLS from the first byte, "SMTPS").
	TLS string `mapstructure:"tls"`
	// Username and Password authenticate with AUTH PLAIN, sent only once
	// TLS is up. Both or neither (a relay that trusts the network).
	Username string `mapstructure:"username"`
	// Password is from TSBULK_NOTIFICATIONS_EMAIL_PASSWORD or
	// notifications.email.password_file.
	Password Secret   `mapstructure:"-"`
	From     string   `mapstructure:"from"`
	To       []string `mapstructure:"to"`
	// Kinds are the kinds of events mailed; empty: every kind.
	Kinds []string `mapstructure:"kinds"`
	// CAFile is the PEM file of the CAs the server's certificate must chain
	// to instead of the system's roots.
	CAFile string `mapstructure:"ca_file"`
}

// Enabled reports whether events are mailed.
func (e Email) Enabled() bool { return e.Host != "" }

// ServerPort is Port, or the standard port of the TLS mode.
func (e Email) ServerPort() int {
	switch {
	case e.Port != 0:
		return e.Port
	case e.TLS == "implicit":
		return 465
	default:
		return 587
	}
}

// Wants reports whether a channel whose kinds setting is kinds gets events
// of kind.
func Wants(kinds []string, kind string) bool {
	return len(kinds) == 0 || slices.Contains(kinds, kind)
}

func notificationDefaults(v *viper.Viper) {
	v.SetDefault("notifications.timeout", 10*time.Second)
	v.SetDefault("notifications.email.host", "")
	v.SetDefault("notifications.email.port", 0)
	v.SetDefault("notifications.email.tls", "starttls")
	v.SetDefault("notifications.email.username", "")
	v.SetDefault("notifications.email.from", "")
	v.SetDefault("notifications.email.to", []string{})
	v.SetDefault("notifications.email.kinds", []string{})
	v.SetDefault("notifications.email.ca_file", "")
}

// webhookFile is a webhook as the file has it: the *_file settings of its
// secrets beside the others.
type webhookFile struct {
	Webhook    `mapstructure:",squash"`
	RawURL     string `mapstructure:"url"`
	URLFile    string `mapstructure:"url_file"`
	SecretFile string `mapstructure:"secret_file"`
}

// loadNotifications reads notifications.webhooks and the notification
// secrets (never from the file itself). path is the configuration file ("" =
// none).
func (c *Config) loadNotifications(v *viper.Viper, path string) error {
	if path != "" && v.InConfig("notifications.email.password") {
		return fmt.Errorf("notifications.email.password must not be in the config file %s: set %s or notifications.email.password_file instead",
			path, EnvName("notifications.email.password"))
	}
	pw, err := readSecret(v, "notifications.email.password")
	if err != nil {
		return err
	}
	c.Notifications.Email.Password = Secret(pw)

	c.Notifications.Webhooks = nil
	raw := v.Get("notifications.webhooks")
	if raw == nil {
		return nil
	}
	list, ok := raw.([]any)
	if !ok {
		return fmt.Errorf("notifications.webhooks: is not a list of webhooks (name, url, format, kinds, ...)")
	}
	for i, item := range list {
		section, ok := item.(map[string]any)
		if !ok {
			return fmt.Errorf("notifications.webhooks entry %d: is not a section of settings", i+1)
		}
		var w webhookFile
		if _, inFile := section["secret"]; inFile {
			return fmt.Errorf("notifications.webhooks entry %d: secret must not be in the config file: "+
				"set TSBULK_NOTIFICATIONS_WEBHOOKS_<NAME>_SECRET or secret_file instead", i+1)
		}
		if err := decodeSection(section, &w); err != nil {
			return fmt.Errorf("notifications.webhooks entry %d: %w", i+1, err)
		}
		if !namePattern.MatchString(w.Name) {
			return fmt.Errorf("notifications.webhooks entry %d: name %q: a lower-case letter then up to 31 lower-case letters, digits or _ "+
				"(it names the webhook's environment variables)", i+1, w.Name)
		}
		key := "notifications.webhooks." + w.Name
		url, err := secretOf(key+".url", w.URLFile, w.RawURL)
		if err != nil {
			return err
		}
		secret, err := secretOf(key+".secret", w.SecretFile, "")
		if err != nil {
			return err
		}
		w.URL, w.Secret = Secret(url), Secret(secret)
		if w.Format == "" {
			w.Format = "json"
		}
		c.Notifications.Webhooks = append(c.Notifications.Webhooks, w.Webhook)
	}
	return nil
}

// secretOf is a webhook's secret: its environment variable, else the file
// its *_file setting (or that setting's environment variable) names, else
// inFile (the file's value, where one is allowed).
func secretOf(key, file, inFile string) (string, error) {
	if val := os.Getenv(EnvName(key)); val != "" {
		return val, nil
	}
	if f := os.Getenv(EnvName(key + "_file")); f != "" {
		file = f
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s_file: read secret file: %w", key, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return inFile, nil
}

// ValidateNotifications checks the notification channels: every problem
// at once, each naming its setting. The worker calls it at start (through
// notify.NewSender).
func (c *Config) ValidateNotifications() error {
	var p problems
	n := c.Notifications
	// Checked where it is used: without a channel nothing is sent (a
	// configuration built in code, as the tests' stack builds it, has
	// neither).
	p.need(n.Timeout > 0 || (len(n.Webhooks) == 0 && !n.Email.Enabled()), "notifications.timeout", "must be positive")
	seen := map[string]bool{}
	for _, w := range n.Webhooks {
		key := "notifications.webhooks." + w.Name
		// A webhook's settings other than its secrets are the file's only:
		// they are named without an environment variable.
		var f fileProblems
		f.need(!seen[w.Name], key, "is defined twice: webhook names are unique")
		seen[w.Name] = true
		if w.URL == "" {
			p.need(false, key+".url", "is required (url in the file, or the environment, or url_file)")
		} else {
			// The URL is not quoted back: it may carry a token.
			c.needSecureURL(&p, key+".url", w.URL.Reveal())
		}
		f.need(w.Format == "json" || w.Format == "slack", key+".format", "%q is not json or slack", w.Format)
		for _, k := range w.Kinds {
			f.need(slices.Contains(NotificationKinds, k), key+".kinds", "%q is not a kind of event (%s)", k,
				strings.Join(NotificationKinds, ", "))
		}
		f.need((w.SecretHeader == "") == (w.Secret == ""), key+".secret_header",
			"goes with the secret (%s or %s.secret_file): set both or neither", EnvName(key+".secret"), key)
		f.need(w.SecretHeader == "" || headerName.MatchString(w.SecretHeader), key+".secret_header",
			"%q is not an HTTP header name", w.SecretHeader)
		if msg := caFileProblem(w.CAFile); msg != "" {
			f.need(false, key+".ca_file", "%s", msg)
		}
		p = append(p, f...)
	}
	e := n.Email
	if !e.Enabled() {
		return p.err()
	}
	p.need(e.TLS == "starttls" || e.TLS == "implicit", "notifications.email.tls",
		"%q is not starttls or implicit (mail is never sent in clear)", e.TLS)
	p.need(e.Port >= 0 && e.Port <= 65535, "notifications.email.port", "must be 1..65535 (0 = 587 or 465 by tls)")
	p.need((e.Username == "") == (e.Password == ""), "notifications.email.username",
		"goes with the password (%s or notifications.email.password_file): set both or neither",
		EnvName("notifications.email.password"))
	_, err := mail.ParseAddress(e.From)
	p.need(err == nil, "notifications.email.from", "must be an e-mail address (%q)", e.From)
	p.need(len(e.To) > 0, "notifications.email.to", "needs at least one address")
	for i, to := range e.To {
		_, err := mail.ParseAddress(to)
		p.need(err == nil, "notifications.email.to", "entry %d: %q is not an e-mail address", i+1, to)
	}
	checkKinds(&p, "notifications.email.kinds", e.Kinds)
	checkCAFile(&p, "notifications.email.ca_file", e.CAFile)
	return p.err()
}

// headerName is an HTTP header name (RFC 9110 token).
var headerName = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

func checkKinds(p *problems, key string, kinds []string) {
	for _, k := range kinds {
		p.need(slices.Contains(NotificationKinds, k), key, "%q is not a kind of event (%s)", k,
			strings.Join(NotificationKinds, ", "))
	}
}

func checkCAFile(p *problems, key, path string) {
	if msg := caFileProblem(path); msg != "" {
		p.need(false, key, "%s", msg)
	}
}

// caFileProblem is what is wrong with a CA file setting ("" = nothing).
func caFileProblem(path string) string {
	if path == "" {
		return ""
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("cannot be read: %v", err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		return fmt.Sprintf("holds no PEM certificate (%s)", path)
	}
	return ""
}

// fileProblems are problems of settings read from the file only, named
// without an environment variable.
type fileProblems []string

func (f *fileProblems) need(ok bool, key, format string, args ...any) {
	if !ok {
		*f = append(*f, key+": "+fmt.Sprintf(format, args...))
	}
}
