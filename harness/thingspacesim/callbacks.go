package thingspacesim

import (
	"net/url"
	"sort"
)

// listenerKey identifies a callback registration: one per service per
// account (S-cbabout).
type listenerKey struct {
	account, service string
}

// handleRegisterCallback: POST /callbacks/{account}. Registering a service
// again replaces its URL and credentials. The documented port restriction
// (80, 443, 9001–9006, ...) is not enforced: test listeners use random
// ports.
func (s *Simulator) handleRegisterCallback(c *call) reply {
	account := c.r.PathValue("account")
	if !s.accountExists(account) {
		return uwsError(CodeAccountNotFound, "REQUEST_FAILED. Account %s not found", account)
	}
	var reg callbackRegistration
	if rep := decodeStrict(c.body, &reg); rep != nil {
		return *rep
	}
	if !serviceNames[reg.Name] {
		return uwsError(CodeUnexpectedError, "REQUEST_FAILED. Unknown callback service name %q", reg.Name)
	}
	u, err := url.Parse(reg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return uwsError(CodeUnexpectedError, "REQUEST_FAILED. url must be an absolute http or https URL")
	}
	s.mu.Lock()
	s.listeners[listenerKey{account, reg.Name}] = reg
	s.mu.Unlock()
	s.log.Info("callback listener registered", "account", account, "service", reg.Name) // not the URL's credentials
	return okReply(callbackRegistered{AccountName: account, ServiceName: reg.Name})
}

// handleListCallbacks: GET /callbacks/{account}, sorted by service name.
func (s *Simulator) handleListCallbacks(c *call) reply {
	account := c.r.PathValue("account")
	if !s.accountExists(account) {
		return uwsError(CodeAccountNotFound, "REQUEST_FAILED. Account %s not found", account)
	}
	s.mu.Lock()
	out := []callbackListenerInfo{}
	for k, reg := range s.listeners {
		if k.account == account {
			out = append(out, callbackListenerInfo{AccountName: account, ServiceName: k.service,
				URL: reg.URL, Username: reg.Username, Password: reg.Password})
		}
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ServiceName < out[j].ServiceName })
	return okReply(out)
}

// handleDeleteCallback: DELETE /callbacks/{account}/name/{serviceName}.
// Deleting a service that is not registered is an error, so that a client
// with a wrong service name finds out.
func (s *Simulator) handleDeleteCallback(c *call) reply {
	account := c.r.PathValue("account")
	service := c.r.PathValue("serviceName")
	if !s.accountExists(account) {
		return uwsError(CodeAccountNotFound, "REQUEST_FAILED. Account %s not found", account)
	}
	key := listenerKey{account, service}
	s.mu.Lock()
	_, ok := s.listeners[key]
	delete(s.listeners, key)
	s.mu.Unlock()
	if !ok {
		return uwsError(
			CodeCallbackNotFound,
			"REQUEST_FAILED. No %s listener is registered for account %s",
			service,
			account,
		)
	}
	return okReply(callbackRegistered{AccountName: account, ServiceName: service})
}
