package thingspace

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strings"
	"sync"
)

// Redacted replaces every secret or personal value handed to the Observer.
const Redacted = "[REDACTED]"

// sensitiveKeys are JSON member names (compared case-insensitively) whose
// values are replaced whole, whatever their type. primaryPlaceOfUse and its
// parts are personal data; the rest are credentials.
var sensitiveKeys = map[string]bool{
	"access_token":      true,
	"refresh_token":     true,
	"id_token":          true,
	"token":             true,
	"sessiontoken":      true,
	"password":          true,
	"oldpassword":       true,
	"newpassword":       true,
	"client_secret":     true,
	"clientsecret":      true,
	"authorization":     true,
	"vz-m2m-token":      true,
	"primaryplaceofuse": true,
	"placeofuse":        true,
	"customername":      true,
	"address":           true,
}

// personalAttrHints mark key/value pairs (extendedAttributes, customFields)
// whose value is personal data. extendedAttributes key names are
// unconfirmed and may carry place-of-use fields, so match loosely.
var personalAttrHints = []string{
	"placeofuse", "ppu", "firstname", "lastname", "middlename", "customername",
	"address", "email", "phone", "city", "zip",
}

// sensitiveKey matches a member name the way encoding/json matches field
// names (Unicode case folding: "paſſword" is "password"), so no spelling
// that a decoder would read as a credential escapes redaction.
func sensitiveKey(key string) bool {
	if sensitiveKeys[strings.ToLower(key)] {
		return true
	}
	for k := range sensitiveKeys {
		if strings.EqualFold(k, key) {
			return true
		}
	}
	return false
}

func personalAttr(key string) bool {
	k := strings.ToLower(key)
	for _, h := range personalAttrHints {
		if strings.Contains(k, h) {
			return true
		}
	}
	return false
}

// RedactJSON returns a copy of a JSON document with credentials and personal
// data replaced by Redacted, keeping member order. Input that is not JSON is
// returned unchanged; callers that know secret values should also scrub them
// (the Client does). Useful for storing raw callback bodies, which echo the
// listener's password.
func RedactJSON(body []byte) []byte {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || (trimmed[0] != '{' && trimmed[0] != '[') || !json.Valid(trimmed) {
		return body
	}
	var out bytes.Buffer
	if err := redactValue(&out, trimmed); err != nil {
		return body
	}
	return out.Bytes()
}

func redactValue(out *bytes.Buffer, raw []byte) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil
	}
	switch raw[0] {
	case '{':
		return redactObject(out, raw)
	case '[':
		dec := json.NewDecoder(bytes.NewReader(raw))
		if _, err := dec.Token(); err != nil {
			return err
		}
		out.WriteByte('[')
		for i := 0; dec.More(); i++ {
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				return err
			}
			if i > 0 {
				out.WriteByte(',')
			}
			if err := redactValue(out, v); err != nil {
				return err
			}
		}
		out.WriteByte(']')
		return nil
	default:
		return json.Compact(out, raw)
	}
}

func redactObject(out *bytes.Buffer, raw []byte) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		return err
	}
	type member struct {
		key string
		val json.RawMessage
	}
	var members []member
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		k, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return err
		}
		members = append(members, member{k, v})
	}
	// A {"key": ..., "value": ...} pair hides personal data behind its key.
	hideValue := false
	for _, m := range members {
		if strings.EqualFold(m.key, "key") {
			var k string
			if json.Unmarshal(m.val, &k) == nil && personalAttr(k) {
				hideValue = true
			}
		}
	}
	out.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			out.WriteByte(',')
		}
		kb, _ := json.Marshal(m.key)
		out.Write(kb)
		out.WriteByte(':')
		if sensitiveKey(m.key) || (hideValue && strings.EqualFold(m.key, "value")) {
			out.WriteString(`"` + Redacted + `"`)
			continue
		}
		if err := redactValue(out, m.val); err != nil {
			return err
		}
	}
	out.WriteByte('}')
	return nil
}

// redactForm redacts an application/x-www-form-urlencoded body.
func redactForm(body []byte) []byte {
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		return body
	}
	changed := false
	for k := range vals {
		if sensitiveKey(k) {
			vals[k] = []string{Redacted}
			changed = true
		}
	}
	if !changed {
		return body
	}
	return []byte(vals.Encode())
}

// secrets remembers the secret values this client knows, so that they can be
// scrubbed from text that is not structured (non-JSON bodies, messages).
type secrets struct {
	mu     sync.Mutex
	static []string
	tokens []string // most recent last, bounded
}

// minScrubLen keeps very short values from mangling unrelated text; real
// secrets and tokens are far longer.
const minScrubLen = 6

const maxRememberedTokens = 8

func newSecrets(vals ...string) *secrets {
	s := &secrets{}
	for _, v := range vals {
		if len(v) >= minScrubLen {
			s.static = append(s.static, v)
		}
	}
	return s
}

func (s *secrets) remember(tok string) {
	if len(tok) < minScrubLen {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tokens {
		if t == tok {
			return
		}
	}
	s.tokens = append(s.tokens, tok)
	if len(s.tokens) > maxRememberedTokens {
		s.tokens = s.tokens[len(s.tokens)-maxRememberedTokens:]
	}
}

func (s *secrets) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.static)+len(s.tokens))
	out = append(out, s.static...)
	return append(out, s.tokens...)
}

// scrubString replaces known secrets, and the call's personal values
// (extra), in free text.
func (s *secrets) scrubString(v string, extra ...string) string {
	for _, sec := range append(s.all(), extra...) {
		if sec != "" {
			v = strings.ReplaceAll(v, sec, Redacted)
		}
	}
	return v
}

func (s *secrets) scrubBytes(b []byte, extra ...string) []byte {
	for _, sec := range append(s.all(), extra...) {
		if sec != "" && bytes.Contains(b, []byte(sec)) {
			b = bytes.ReplaceAll(b, []byte(sec), []byte(Redacted))
		}
	}
	return b
}

// personalValues lists the free-text parts of a Primary Place of Use, so
// that a server echoing them (e.g. in an error message) does not get them
// into the audit log. Short or generic parts (state, country, zip) are left
// out: scrubbing them would mangle identifiers.
func personalValues(p *PlaceOfUse) []string {
	if p == nil {
		return nil
	}
	var out []string
	for _, v := range []string{
		p.CustomerName.FirstName, p.CustomerName.MiddleName, p.CustomerName.LastName,
		p.Address.AddressLine1, p.Address.AddressLine2, p.Address.City,
		p.Address.Phone, p.Address.EmailAddress,
	} {
		if v = strings.TrimSpace(v); len(v) >= 3 {
			out = append(out, v)
		}
	}
	return out
}

// observedBody prepares a body for the Observer: structural redaction, then
// scrubbing of known secret values, then truncation.
func (s *secrets) observedBody(body []byte, contentType string, extra ...string) []byte {
	if len(body) == 0 {
		return nil
	}
	var red []byte
	if strings.HasPrefix(strings.ToLower(contentType), "application/x-www-form-urlencoded") {
		red = redactForm(body)
	} else {
		red = RedactJSON(body)
	}
	// Never hand out the caller's buffer: scrubbing and truncation must not
	// alias it.
	red = s.scrubBytes(bytes.Clone(red), extra...)
	return truncateBody(red)
}

const truncatedMark = "...[truncated]"

func truncateBody(b []byte) []byte {
	if len(b) <= MaxObservedBody {
		return b
	}
	out := make([]byte, 0, MaxObservedBody)
	out = append(out, b[:MaxObservedBody-len(truncatedMark)]...)
	return append(out, truncatedMark...)
}
