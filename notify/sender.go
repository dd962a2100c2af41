package notify

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/iot-ops/tsbulk/config"
)

// Delivery is what the audit log keeps of one delivery to one channel:
// never a secret (no URL path, no header secret, no password).
type Delivery struct {
	// Channel is "webhook:<name>" or "email".
	Channel string
	// Method is POST or SMTP.
	Method string
	// Target is where it went: the webhook's scheme and host, the SMTP
	// server's host and port.
	Target string
	// Request is what was sent: the JSON posted, or the mail's subject and
	// body.
	Request string
	// Status is the webhook's HTTP status (0: no answer, or e-mail).
	Status int
	// Response is the start of the answer.
	Response string
	Duration time.Duration
}

type channel interface {
	name() string
	wants(Kind) bool
	send(context.Context, message) (Delivery, error)
}

// Sender sends events to the configured channels. It holds the secrets it
// needs; it is safe for concurrent use.
type Sender struct {
	channels  []channel
	timeout   time.Duration
	uiURL     string
	namespace string
}

// NewSender checks the notification settings (cfg.ValidateNotifications)
// and builds the channels. namespace is the Temporal namespace, for the
// Web UI links (setup.TemporalNamespace).
func NewSender(cfg *config.Config, namespace string) (*Sender, error) {
	if err := cfg.ValidateNotifications(); err != nil {
		return nil, err
	}
	n := cfg.Notifications
	s := &Sender{timeout: n.Timeout, uiURL: cfg.Temporal.UIURL, namespace: namespace}
	for _, w := range n.Webhooks {
		wh, err := newWebhook(w)
		if err != nil {
			return nil, err
		}
		s.channels = append(s.channels, wh)
	}
	if n.Email.Enabled() {
		m, err := newMailer(n.Email)
		if err != nil {
			return nil, err
		}
		s.channels = append(s.channels, m)
	}
	return s, nil
}

// Timeout bounds one delivery.
func (s *Sender) Timeout() time.Duration { return s.timeout }

// Channels are the names of the channels that get events of kind.
func (s *Sender) Channels(kind Kind) []string {
	var names []string
	for _, c := range s.channels {
		if c.wants(kind) {
			names = append(names, c.name())
		}
	}
	return names
}

// Prepare is the event as it is sent: free text cut to one line, long
// numbers removed, the top error codes, At set (now when zero). Send
// prepares the event itself; the activity prepares it once so that every
// channel and every audit row say the same.
func Prepare(e Event, now time.Time) Event { return e.normalized(now) }

// Send delivers the event to one channel, within the Sender's timeout.
// The Delivery is filled as far as the attempt went, for the audit log,
// also when it fails.
func (s *Sender) Send(ctx context.Context, channelName string, e Event) (Delivery, error) {
	if err := e.Validate(); err != nil {
		return Delivery{Channel: channelName}, err
	}
	for _, c := range s.channels {
		if c.name() != channelName {
			continue
		}
		ctx, cancel := context.WithTimeout(ctx, s.timeout)
		defer cancel()
		e = e.normalized(time.Now())
		started := time.Now()
		d, err := c.send(ctx, render(e, UILink(s.uiURL, s.namespace, e.BulkChangeID)))
		d.Duration = time.Since(started)
		// The connection's deadline (the context's) may strike first.
		if err != nil && (ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded)) {
			err = fmt.Errorf("%w: no delivery within notifications.timeout (%s)", err, s.timeout)
		}
		return d, err
	}
	return Delivery{Channel: channelName}, fmt.Errorf("no notification channel %q is configured", channelName)
}
