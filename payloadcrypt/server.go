package payloadcrypt

import (
	"crypto/sha256"
	"crypto/subtle"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"go.temporal.io/sdk/converter"
)

// DefaultMaxBodyBytes bounds a request to the codec server when
// Server.MaxBodyBytes is 0: a Temporal payload is at most 2 MB, and the
// Web UI sends an event's payloads at once.
const DefaultMaxBodyBytes = 16 << 20

// Server is the codec server of the Temporal Web UI and of `temporal
// --codec-endpoint`: POST .../encode and .../decode with a Payloads
// message in protobuf JSON ({"payloads": [...]}), X-Namespace naming the
// namespace (read, not needed: every namespace's payloads are handled
// with the one set of keys, plain ones passing through). GET /healthz
// answers without authentication.
type Server struct {
	Codec *Codec
	// Token must come as "Authorization: Bearer <Token>"; any other
	// request but a CORS preflight and /healthz is refused 401. Required:
	// whoever may call /decode reads every history in clear.
	Token string
	// AllowedOrigin is the Web UI's origin (scheme://host[:port]) allowed
	// to call from a browser; requests from any other origin are refused
	// 403. "" allows none: only the CLI and other non-browser clients.
	AllowedOrigin string
	// MaxBodyBytes bounds a request's body (0: DefaultMaxBodyBytes).
	MaxBodyBytes int64
	Logger       *slog.Logger
}

// Handler serves the codec. It panics without a codec or a token: a codec
// server open to anyone would undo the encryption.
func (s *Server) Handler() http.Handler {
	if s.Codec == nil || s.Token == "" {
		panic("payloadcrypt: a codec server needs a codec and a token")
	}
	logger := s.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	limit := s.MaxBodyBytes
	if limit <= 0 {
		limit = DefaultMaxBodyBytes
	}
	want := sha256.Sum256([]byte(s.Token))
	codec := converter.NewPayloadCodecHTTPHandler(s.Codec)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			_, _ = io.WriteString(w, "ok\n")
			return
		}
		origin := r.Header.Get("Origin")
		if origin != "" {
			if s.AllowedOrigin == "" || origin != s.AllowedOrigin {
				logger.Warn("codec server: request from an origin not allowed refused",
					"origin", origin, "remote", r.RemoteAddr)
				http.Error(w, "origin not allowed", http.StatusForbidden)
				return
			}
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
			h.Add("Vary", "Origin")
			if r.Method == http.MethodOptions {
				// A preflight carries no credentials: answered before the token check.
				h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
				h.Set("Access-Control-Allow-Headers", "Content-Type, X-Namespace, Authorization")
				h.Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			http.Error(w, "POST .../encode or .../decode", http.StatusMethodNotAllowed)
			return
		}
		if !strings.HasSuffix(r.URL.Path, "/encode") && !strings.HasSuffix(r.URL.Path, "/decode") {
			http.NotFound(w, r)
			return
		}
		got := sha256.Sum256([]byte(bearer(r.Header.Get("Authorization"))))
		// Hashes of equal length: the comparison leaks neither content nor length.
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			logger.Warn("codec server: request without the right bearer token refused",
				"path", r.URL.Path, "remote", r.RemoteAddr)
			w.Header().Set("WWW-Authenticate", `Bearer realm="codec"`)
			http.Error(w, http.StatusText(http.StatusUnauthorized), http.StatusUnauthorized)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		logger.Debug("codec server request", "path", r.URL.Path, "namespace", r.Header.Get("X-Namespace"),
			"remote", r.RemoteAddr)
		codec.ServeHTTP(w, r)
	})
}

// bearer is the token of an "Authorization: Bearer <token>" header, "" for
// any other.
func bearer(header string) string {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}
