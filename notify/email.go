package notify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/iot-ops/tsbulk/config"
)

type mailer struct {
	cfg  config.Email
	addr string // host:port
	from *mail.Address
	to   []*mail.Address
	tls  *tls.Config
}

func newMailer(e config.Email) (*mailer, error) {
	from, err := mail.ParseAddress(e.From)
	if err != nil {
		return nil, fmt.Errorf("notifications.email.from: %w", err)
	}
	m := &mailer{cfg: e, addr: net.JoinHostPort(e.Host, strconv.Itoa(e.ServerPort())), from: from,
		tls: &tls.Config{ServerName: e.Host, MinVersion: tls.VersionTLS12}}
	for i, to := range e.To {
		a, err := mail.ParseAddress(to)
		if err != nil {
			return nil, fmt.Errorf("notifications.email.to entry %d: %w", i+1, err)
		}
		m.to = append(m.to, a)
	}
	if e.CAFile != "" {
		pem, err := os.ReadFile(e.CAFile)
		if err != nil {
			return nil, fmt.Errorf("notifications.email.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("notifications.email.ca_file: holds no PEM certificate")
		}
		m.tls.RootCAs = pool
	}
	return m, nil
}

func (m *mailer) name() string { return "email" }

func (m *mailer) wants(k Kind) bool { return config.Wants(m.cfg.Kinds, string(k)) }

// send mails the message in one SMTP session, TLS before anything else.
// The session ends by ctx's deadline whatever the server does.
func (m *mailer) send(ctx context.Context, msg message) (Delivery, error) {
	d := Delivery{Channel: m.name(), Method: "SMTP", Target: m.addr}
	subject := "[tsbulk] " + msg.Title
	// The audit log keeps what was said, and how many it was said to.
	audit, _ := json.Marshal(struct {
		Subject    string `json:"subject"`
		Body       string `json:"body"`
		Recipients int    `json:"recipients"`
	}{subject, msg.Body, len(m.to)})
	d.Request = string(audit)
	data, err := m.compose(subject, msg)
	if err != nil {
		return d, fmt.Errorf("email: %w", err)
	}
	if err := m.session(ctx, data); err != nil {
		return d, fmt.Errorf("email via %s: %w", m.addr, err)
	}
	d.Response = "250 accepted"
	return d, nil
}

func (m *mailer) session(ctx context.Context, data []byte) error {
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", m.addr)
	if err != nil {
		return err
	}
	// Deadline and cancellation both end the session: a server that
	// accepts and then says nothing must not hold the activity.
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	if m.cfg.TLS == "implicit" {
		tc := tls.Client(conn, m.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return fmt.Errorf("TLS: %w", err)
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, m.cfg.Host)
	if err != nil {
		_ = conn.Close()
		return err
	}
	defer c.Close()
	if err := c.Hello("tsbulk"); err != nil {
		return err
	}
	if m.cfg.TLS != "implicit" {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return errors.New("the server does not offer STARTTLS: nothing is sent in clear")
		}
		if err := c.StartTLS(m.tls); err != nil {
			return fmt.Errorf("STARTTLS: %w", err)
		}
	}
	if m.cfg.Username != "" {
		if err := c.Auth(plainAuth{username: m.cfg.Username, password: m.cfg.Password.Reveal()}); err != nil {
			return fmt.Errorf("AUTH PLAIN as %s: %w", m.cfg.Username, err)
		}
	}
	if err := c.Mail(m.from.Address); err != nil {
		return fmt.Errorf("MAIL FROM: %w", err)
	}
	for _, to := range m.to {
		if err := c.Rcpt(to.Address); err != nil {
			return fmt.Errorf("RCPT TO (recipient %s): %w", to.Address, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(data); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	// The server took the message with the answer to DATA's end: a
	// failed QUIT does not undo it.
	_ = c.Quit()
	return nil
}

// compose writes the message: plain text, quoted-printable, the subject
// encoded when not ASCII. Its Message-ID comes from the event id, so the
// copies an at-least-once retry may bring share it.
func (m *mailer) compose(subject string, msg message) ([]byte, error) {
	var b bytes.Buffer
	to := make([]string, len(m.to))
	for i, a := range m.to {
		to[i] = a.String()
	}
	sum := sha256.Sum256([]byte(msg.ID))
	domain := "tsbulk.invalid"
	if _, d, ok := strings.Cut(m.from.Address, "@"); ok {
		domain = d
	}
	header := [][2]string{
		{"From", m.from.String()},
		{"To", strings.Join(to, ", ")},
		{"Subject", mime.QEncoding.Encode("utf-8", subject)},
		{"Date", msg.At.Format(time.RFC1123Z)},
		{"Message-ID", "<" + hex.EncodeToString(sum[:16]) + "@" + domain + ">"},
		{"MIME-Version", "1.0"},
		{"Content-Type", "text/plain; charset=utf-8"},
		{"Content-Transfer-Encoding", "quoted-printable"},
		{"Auto-Submitted", "auto-generated"},
	}
	for _, h := range header {
		b.WriteString(h[0] + ": " + h[1] + "\r\n")
	}
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write([]byte(strings.ReplaceAll(msg.Body, "\n", "\r\n"))); err != nil {
		return nil, err
	}
	if err := qp.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// plainAuth is AUTH PLAIN that refuses to run outside TLS, whatever the
// server's name (net/smtp's PlainAuth lets localhost have it in clear).
type plainAuth struct{ username, password string }

func (a plainAuth) Start(server *smtp.ServerInfo) (string, []byte, error) {
	if !server.TLS {
		return "", nil, errors.New("refusing AUTH PLAIN outside TLS")
	}
	return "PLAIN", []byte("\x00" + a.username + "\x00" + a.password), nil
}

func (a plainAuth) Next(_ []byte, more bool) ([]byte, error) {
	if more {
		return nil, errors.New("unexpected server challenge after AUTH PLAIN")
	}
	return nil, nil
}
