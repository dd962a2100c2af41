// Package notifytest runs the receivers of the notification tests: a real
// SMTP server (go-smtp) speaking STARTTLS or implicit TLS with a test
// certificate, and a real HTTPS webhook receiver. Both keep what they
// received. Nothing here is for production.
package notifytest

import (
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/iot-ops/tsbulk/harness/testcerts"
)

// Certs writes a CA and a server certificate for 127.0.0.1 and localhost
// in a temporary directory: the receivers serve the certificate, the
// clients under test trust the CA (its file is Files.CA).
func Certs(t testing.TB) testcerts.Files {
	t.Helper()
	f, err := testcerts.Write(t.TempDir())
	if err != nil {
		t.Fatalf("test certificates: %v", err)
	}
	return f
}

func serverTLS(t testing.TB, certs testcerts.Files) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certs.ServerCert, certs.ServerKey)
	if err != nil {
		t.Fatalf("load the test server certificate: %v", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// SMTP TLS modes.
const (
	StartTLS = "starttls"
	Implicit = "implicit"
	// NoTLS offers no STARTTLS and would take AUTH in clear: a client
	// must refuse it.
	NoTLS = "none"
)

// Mail is one message the SMTP server accepted.
type Mail struct {
	From string
	To   []string
	Data []byte
	// TLS: the session was encrypted when the message was sent.
	TLS bool
}

// Auth is one AUTH the SMTP server received.
type Auth struct {
	Mechanism, Username, Password string
	// TLS: the session was encrypted when the credentials came.
	TLS bool
}

// SMTPServer is a running SMTP server.
type SMTPServer struct {
	Host string
	Port int

	username, password string
	mu                 sync.Mutex
	mails              []Mail
	auths              []Auth
}

// StartSMTP starts an SMTP server on 127.0.0.1 in mode (StartTLS,
// Implicit, NoTLS) with the certificate of certs; with a username, it
// requires AUTH PLAIN with it and password before MAIL. It stops when the
// test ends.
func StartSMTP(t testing.TB, mode string, certs testcerts.Files, username, password string) *SMTPServer {
	t.Helper()
	s := &SMTPServer{username: username, password: password}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{server: s, conn: c}, nil
	}))
	srv.Domain = "localhost"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	srv.ErrorLog = log.New(io.Discard, "", 0)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("SMTP server: %v", err)
	}
	switch mode {
	case StartTLS:
		srv.TLSConfig = serverTLS(t, certs)
	case Implicit:
		l = tls.NewListener(l, serverTLS(t, certs))
	case NoTLS:
		srv.AllowInsecureAuth = true
	default:
		t.Fatalf("SMTP mode %q", mode)
	}
	addr := l.Addr().(*net.TCPAddr)
	s.Host, s.Port = "localhost", addr.Port
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

// Addr is host:port.
func (s *SMTPServer) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// Mails are the messages accepted so far.
func (s *SMTPServer) Mails() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.mails...)
}

// Auths are the AUTH commands received so far.
func (s *SMTPServer) Auths() []Auth {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Auth(nil), s.auths...)
}

type session struct {
	server *SMTPServer
	conn   *smtp.Conn
	authed bool
	from   string
	to     []string
}

func (s *session) tls() bool {
	_, ok := s.conn.TLSConnectionState()
	return ok
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *session) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, username, password string) error {
		s.server.mu.Lock()
		s.server.auths = append(s.server.auths, Auth{Mechanism: mech, Username: username, Password: password, TLS: s.tls()})
		s.server.mu.Unlock()
		if username != s.server.username || password != s.server.password {
			return errors.New("invalid username or password")
		}
		s.authed = true
		return nil
	}), nil
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if s.server.username != "" && !s.authed {
		return smtp.ErrAuthRequired
	}
	s.from = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.server.mu.Lock()
	s.server.mails = append(s.server.mails, Mail{From: s.from, To: s.to, Data: b, TLS: s.tls()})
	s.server.mu.Unlock()
	return nil
}

func (s *session) Reset() { s.from, s.to = "", nil }

func (s *session) Logout() error { return nil }

// Request is one request the webhook receiver got.
type Request struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
}

// Webhook is a running HTTPS webhook receiver. It answers 200 "ok" unless
// told to hang (answer nothing until the client gives up) or to answer
// another status.
type Webhook struct {
	// URL is the receiver's base URL; any path is taken.
	URL string

	srv      *httptest.Server
	mu       sync.Mutex
	requests []Request
	hang     atomic.Bool
	hangNext atomic.Int32
	status   atomic.Int32
}

// StartWebhook starts a receiver on 127.0.0.1 serving the certificate of
// certs. It stops when the test ends.
func StartWebhook(t testing.TB, certs testcerts.Files) *Webhook {
	t.Helper()
	w := &Webhook{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(w.serve))
	srv.TLS = serverTLS(t, certs)
	// Refused handshakes are what some tests check: not worth a log line.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	w.URL, w.srv = srv.URL, srv
	return w
}

// Close stops the receiver: its port refuses connections.
func (w *Webhook) Close() { w.srv.Close() }

func (w *Webhook) serve(rw http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if w.hang.Load() || w.hangNext.Add(-1) >= 0 {
		// Until the client gives up (its timeout closes the connection).
		<-r.Context().Done()
		return
	}
	w.mu.Lock()
	w.requests = append(w.requests, Request{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
	w.mu.Unlock()
	if code := int(w.status.Load()); code != 0 {
		rw.WriteHeader(code)
		return
	}
	_, _ = io.WriteString(rw, "ok")
}

// Hang makes the receiver take requests and never answer (true), or
// answer again (false). Requests it hangs on are not kept.
func (w *Webhook) Hang(on bool) { w.hang.Store(on) }

// HangNext makes the receiver hang on its next n requests only.
func (w *Webhook) HangNext(n int) { w.hangNext.Store(int32(n)) }

// AnswerStatus makes the receiver answer code (0: 200 "ok").
func (w *Webhook) AnswerStatus(code int) { w.status.Store(int32(code)) }

// Requests are the requests answered so far.
func (w *Webhook) Requests() []Request {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Request(nil), w.requests...)
}
