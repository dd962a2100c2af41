package thingspacesim

// twoWayActions are the actions whose single-device requests can be polled
// with GET .../requests/{id}/status (S-reqstatus).
var twoWayActions = map[string]bool{
	ActionActivate: true, ActionSuspend: true, ActionRestore: true, ActionDeactivate: true,
}

// handleRequestStatus: GET /accounts/{account}/requests/{requestId}/status.
// A request of another account is "not found"; a multi-device request, or
// one of another action (contactInfo), is refused as unsupported.
func (s *Simulator) handleRequestStatus(c *call) reply {
	account := c.r.PathValue("account")
	id := c.r.PathValue("requestId")
	if !s.accountExists(account) {
		return uwsError(CodeAccountNotFound, "REQUEST_FAILED. Account %s not found", account)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.requests[id]
	if r == nil || r.account != account {
		return uwsError(CodeRequestNotFound, "REQUEST_FAILED. Request %s not found", id)
	}
	if r.devices != 1 || !twoWayActions[r.action] {
		return uwsError(
			CodeStatusNotSupported,
			"REQUEST_FAILED. Request status is only available for single-device "+
				"activate, suspend, restore and deactivate requests",
		)
	}
	return okReply(requestStatusResponse{RequestID: id, Status: r.status()})
}
