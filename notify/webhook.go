package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/iot-ops/tsbulk/config"
)

// maxResponse is how much of a receiver's answer is kept for the audit log.
const maxResponse = 1024

type webhook struct {
	cfg    config.Webhook
	target string // scheme://host of the URL: what the audit log may show
	// hidden are the parts of the configuration never shown: the URL, its
	// path and query (a Slack URL's token), the secret.
	hidden []string
	client *http.Client
}

func newWebhook(w config.Webhook) (*webhook, error) {
	u, err := url.Parse(w.URL.Reveal())
	if err != nil {
		// The parse error would quote the URL.
		return nil, fmt.Errorf("notifications.webhooks.%s.url: cannot be read as a URL", w.Name)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if w.CAFile != "" {
		pem, err := os.ReadFile(w.CAFile)
		if err != nil {
			return nil, fmt.Errorf("notifications.webhooks.%s.ca_file: %w", w.Name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("notifications.webhooks.%s.ca_file: holds no PEM certificate", w.Name)
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	hidden := []string{w.URL.Reveal(), w.Secret.Reveal(), u.RawQuery}
	if p := u.EscapedPath(); len(p) > 1 {
		hidden = append(hidden, p)
	}
	return &webhook{
		cfg:    w,
		hidden: hidden,
		target: u.Scheme + "://" + u.Host,
		client: &http.Client{
			Transport: transport,
			// A redirect is not followed: it would carry the secret header
			// to another address. The 3xx counts as a failure.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

func (w *webhook) name() string { return "webhook:" + w.cfg.Name }

func (w *webhook) wants(k Kind) bool { return config.Wants(w.cfg.Kinds, string(k)) }

func (w *webhook) send(ctx context.Context, m message) (Delivery, error) {
	d := Delivery{Channel: w.name(), Method: http.MethodPost, Target: w.target}
	var body []byte
	var err error
	if w.cfg.Format == "slack" {
		body, err = slackPayload(m)
	} else {
		body, err = jsonPayload(m)
	}
	if err != nil {
		return d, fmt.Errorf("%s: encode the event: %w", d.Channel, err)
	}
	d.Request = string(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL.Reveal(), bytes.NewReader(body))
	if err != nil {
		return d, fmt.Errorf("%s: %s", d.Channel, w.redact(err.Error()))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tsbulk-notify")
	// The same event retried carries the same key: a receiver may drop
	// the copy that at-least-once delivery can bring.
	req.Header.Set("Idempotency-Key", m.ID)
	if w.cfg.SecretHeader != "" {
		req.Header.Set(w.cfg.SecretHeader, w.cfg.Secret.Reveal())
	}
	resp, err := w.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			// url.Error quotes the URL, which may hold a token.
			err = ue.Err
		}
		return d, fmt.Errorf("%s: POST to %s: %s", d.Channel, w.target, w.redact(err.Error()))
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	d.Status = resp.StatusCode
	d.Response = w.redact(string(answer))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return d, fmt.Errorf("%s: %s answered %s", d.Channel, w.target, resp.Status)
	}
	return d, nil
}

// redact removes the webhook's URL and secret from text that may quote
// them (an error, an answer echoing the request).
func (w *webhook) redact(s string) string {
	for _, secret := range w.hidden {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "[REDACTED]")
		}
	}
	return s
}
