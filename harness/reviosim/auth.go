package reviosim

// Authentication: the gateway's subscription key, then Rev.io's Basic
// credentials (login@clientcode:password).

import (
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strings"
)

// subscriptionOK answers 401 as the gateway (APIM) does when the
// Ocp-Apim-Subscription-Key header is missing or wrong.
func (s *Simulator) subscriptionOK(w http.ResponseWriter, r *http.Request) bool {
	key := r.Header.Get("Ocp-Apim-Subscription-Key")
	var msg string
	switch {
	case key == "":
		msg = "Access denied due to missing subscription key. " +
			"Make sure to include subscription key when making requests to an API."
	case !secretEqual(key, s.cfg.SubscriptionKey):
		msg = "Access denied due to invalid subscription key. " +
			"Make sure to provide a valid key for an active subscription."
	default:
		return true
	}
	writeJSON(w, http.StatusUnauthorized, apimError{StatusCode: 401, Message: msg})
	return false
}

func secretEqual(got, want string) bool {
	if want == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// basicOK checks "Basic base64(login@clientcode:password)".
func (s *Simulator) basicOK(h string) bool {
	scheme, cred, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return false
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok || s.cfg.Login == "" || s.cfg.ClientCode == "" {
		return false
	}
	wantUser := s.cfg.Login + "@" + s.cfg.ClientCode
	return secretEqual(pass, s.cfg.Password) && strings.EqualFold(user, wantUser)
}
