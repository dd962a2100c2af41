package callbacks

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/thingspace"
)

const (
	fuzzUser  = "listener"
	fuzzPass  = "s3cret-listener"
	fuzzLimit = 4096
)

// FuzzCallbackBody feeds arbitrary bodies to the callback receiver without
// a database: parseCallback decides, and the handler answers by itself
// every body it refuses. A failure is a panic, a parse that does not
// return, a body over the limit that is not refused with 413, a refusal the
// handler answers differently, an accepted callback without the listener
// credentials, a request id or an ICCID, listener credentials (in any
// spelling encoding/json matches) left in what is stored, or a callback
// the thingspace package reads as complete and authorized being refused
// although PostgreSQL could store it.
func FuzzCallbackBody(f *testing.F) {
	for _, s := range fuzzCallbackSeeds() {
		f.Add([]byte(s))
	}
	rcv := &Receiver{Username: fuzzUser, Password: fuzzPass, MaxBodyBytes: fuzzLimit,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}

	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > 4*fuzzLimit {
			return
		}
		// Over the limit: refused before anything is parsed, even a valid
		// callback padded with spaces.
		padded := append(bytes.Clone(body), bytes.Repeat([]byte(" "), fuzzLimit+1-min(len(body), fuzzLimit))...)
		if code := serveRefused(t, rcv, padded); code != http.StatusRequestEntityTooLarge {
			t.Fatalf("body of %d bytes over the %d limit answered %d", len(padded), fuzzLimit, code)
		}
		if len(body) > fuzzLimit {
			return
		}

		n, refused := parseWithin(t, rcv, body)
		if refused != nil {
			if refused.status != http.StatusBadRequest && refused.status != http.StatusUnauthorized {
				t.Fatalf("refused with status %d", refused.status)
			}
			if code := serveRefused(t, rcv, body); code != refused.status {
				t.Fatalf("parseCallback refuses with %d, the handler answers %d", refused.status, code)
			}
			// The thingspace package's reading of a callback: if it is complete
			// and carries the right credentials, the receiver must take it.
			if m, err := thingspace.ParseCallbackMessage(body); err == nil && m.Username == fuzzUser &&
				m.Password == fuzzPass &&
				thingspace.IsRequestID(m.RequestID) &&
				m.ICCID() != "" && len(m.ICCID()) <= maxICCIDLen && storable(body, m.CallbackCount) {
				t.Fatalf("complete, authorized callback refused with %d %q", refused.status, refused.text)
			}
			return
		}

		if n.Tenant != change.DefaultTenant {
			t.Fatalf("accepted at the default tenant's endpoint as tenant %q's", n.Tenant)
		}
		if !thingspace.IsRequestID(n.RequestID) || n.ICCID == "" {
			t.Fatalf("accepted a callback without a ThingSpace request id or an ICCID: %+v", n)
		}
		if len(n.FaultCode) > thingspace.MaxCodeLen || utf8.RuneCountInString(n.FaultString) > thingspace.MaxTextLen+3 ||
			utf8.RuneCountInString(n.Status) > thingspace.MaxStatusLen+3 || len(n.ICCID) > maxICCIDLen {
			t.Fatalf("accepted unbounded fields: code %d, text %d, status %d, ICCID %d bytes",
				len(n.FaultCode), len(n.FaultString), len(n.Status), len(n.ICCID))
		}
		var creds struct {
			Username string `json:"username"`
			Password string `json:"password"`
		}
		if err := json.Unmarshal(body, &creds); err != nil || creds.Username != fuzzUser || creds.Password != fuzzPass {
			t.Fatalf("accepted a callback without the listener credentials (%v)", err)
		}
		checkStoredPayload(t, n)
	})
}

// checkStoredPayload asserts the stored payload is a JSON object with no
// member encoding/json would read as the username or password.
func checkStoredPayload(t *testing.T, n *db.NewCallback) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(n.Payload))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("stored payload is not a JSON object: %s", n.Payload)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("stored payload: %v", err)
		}
		key, _ := tok.(string)
		if strings.EqualFold(key, "username") || strings.EqualFold(key, "password") {
			t.Fatalf("listener credential member %q stored: %s", key, n.Payload)
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatalf("stored payload: %v", err)
		}
	}
	var creds struct {
		Username *string `json:"username"`
		Password *string `json:"password"`
	}
	if err := json.Unmarshal(n.Payload, &creds); err != nil || creds.Username != nil || creds.Password != nil {
		t.Fatalf("stored payload still carries listener credentials (%v): %s", err, n.Payload)
	}
}

// serveRefused posts body to the handler, which has no store: only bodies
// it refuses may be given to it.
func serveRefused(t *testing.T, rcv *Receiver, body []byte) int {
	t.Helper()
	w := httptest.NewRecorder()
	rcv.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/thingspace/callbacks", bytes.NewReader(body)))
	return w.Code
}

// parseWithin bounds one parse: a hang fails the input.
func parseWithin(t *testing.T, rcv *Receiver, body []byte) (*db.NewCallback, *refusal) {
	t.Helper()
	type result struct {
		n   *db.NewCallback
		ref *refusal
	}
	done := make(chan result, 1)
	go func() {
		n, ref := rcv.parseCallback(Listener{Tenant: change.DefaultTenant, Username: rcv.Username, Password: rcv.Password}, body)
		done <- result{n, ref}
	}()
	select {
	case r := <-done:
		return r.n, r.ref
	case <-time.After(10 * time.Second):
		t.Fatalf("parseCallback did not return within 10s")
		return nil, nil
	}
}

// fuzzCallbackSeeds are callbacks as documented and as the tests send them,
// with the listener credentials of the fuzzed receiver.
func fuzzCallbackSeeds() []string {
	ok := callback(fuzzUser, fuzzPass, req1, "Success", "")
	seeds := []string{
		ok,
		callback(fuzzUser, fuzzPass, req1, "Failed", "UnifiedWebService.REQUEST_FAILED.DeviceNotFound"),
		callback(fuzzUser, "wrong", req1, "Success", ""),
		callback(fuzzUser, fuzzPass, "", "Success", ""),
		// The failure example of the ThingSpace documentation.
		`{"username": "` + fuzzUser + `", "password": "` + fuzzPass + `", "requestId": "076f7ea9-8230-49b1-9386-8dafaddc7d9e",
 "deviceIds": [{"id": "20180903000000000009", "kind": "Iccid"}, {"id": "201809030000009", "kind": "Imei"}],
 "faultResponse": {"faultcode": "UnifiedWebService.REQUEST_FAILED.DeviceAlreadyActive",
                   "faultstring": "REQUEST_FAILED. Device is already active"},
 "status": "Failed", "callbackCount": 1, "maxCallbackThreshold": 4}`,
		// An activation with its MSISDN; counts as strings.
		`{"username":"` + fuzzUser + `","password":"` + fuzzPass + `","requestId":"5a0f3c2e-8b1d-4e7a-9c6f-2d3b4a5e6f71",
 "deviceIds":[{"id":"89148000000000000001","kind":"ICCID"}],
 "deviceResponse":{"activateResponse":{"deviceIds":[{"id":"5551230000","kind":"MDN"},{"id":"15551230000","kind":"Msisdn"},{"id":"89148000000000000001","kind":"iccid"}]}},
 "status":"success","callbackCount":"2","maxCallbackThreshold":"4"}`,
		// Odd shapes: deviceResponse not an object, empty fault.
		`{"username":"` + fuzzUser + `","password":"` + fuzzPass + `","requestId":"5a0f3c2e-8b1d-4e7a-9c6f-2d3b4a5e6f72","deviceIds":[{"id":"1","kind":"iccid"}],
 "deviceResponse":"ok","faultResponse":{"faultcode":"","faultstring":""},"status":"Success","Comment":"x"}`,
		// Credentials in other spellings, twice, or escaped.
		`{"Username":"` + fuzzUser + `","PASSWORD":"` + fuzzPass + `","requestId":"5a0f3c2e-8b1d-4e7a-9c6f-2d3b4a5e6f72","deviceIds":[{"id":"1","kind":"iccid"}]}`,
		`{"username":"x","password":"y","username":"` + fuzzUser + `","password":"` + fuzzPass + `","requestId":"5a0f3c2e-8b1d-4e7a-9c6f-2d3b4a5e6f72","deviceIds":[{"id":"1","kind":"iccid"}]}`,
		`{"user\u006eame":"` + fuzzUser + `","pass\u0077ord":"` + fuzzPass + `","requestId":"5a0f3c2e-8b1d-4e7a-9c6f-2d3b4a5e6f72","deviceIds":[{"id":"1","kind":"iccid"}]}`,
		// Numbers, arrays and nulls where strings are expected.
		`{"username":"` + fuzzUser + `","password":"` + fuzzPass + `","requestId":1,"deviceIds":[{"id":1,"kind":"iccid"}]}`,
		`{"username":"` + fuzzUser + `","password":"` + fuzzPass + `","requestId":"5a0f3c2e-8b1d-4e7a-9c6f-2d3b4a5e6f72","deviceIds":[[{"id":"1","kind":"iccid"}]]}`,
		`{"username":"` + fuzzUser + `","password":"` + fuzzPass + `","requestId":null,"deviceIds":null,"status":null}`,
		// Not a ThingSpace request id; a fault code and text over their caps.
		callback(fuzzUser, fuzzPass, "req-1", "Success", ""),
		callback(fuzzUser, fuzzPass, req1, "Failed", "UnifiedWebService.REQUEST_FAILED."+strings.Repeat("Q<", 600)),
		"\uFEFF" + ok,
		`[` + ok + `]`,
		`null`,
		``,
		`{"username":"` + fuzzUser + `","password":"` + fuzzPass + `","requestId":"5a0f3c2e-8b1d-4e7a-9c6f-2d3b4a5e6f72","deviceIds":[{"id":"1","kind":"iccid"}],"comment":"` + strings.Repeat(
			"x",
			3900,
		) + `"}`,
	}
	return seeds
}
