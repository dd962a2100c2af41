package simulator

import (
	"net/http"
	"testing"
	"time"
)

func TestRequestStatus(t *testing.T) {
	cfg := fastConfig()
	cfg.CompletionDelay = 300 * time.Millisecond
	cfg.Accounts = []string{DefaultAccount, "0000444444-00001"}
	h := newHarness(t, cfg)
	devs := h.seed(3, "active")
	status := func(account, id string) (int, []byte) {
		return h.m2m(http.MethodGet, "/accounts/"+account+"/requests/"+id+"/status", nil)
	}

	id := h.accepted(h.action(ActionSuspend, nil, devs[0]))
	code, body := status(DefaultAccount, id)
	if r := decodeAs[requestStatusResponse](t, body); code != http.StatusOK || r.RequestID != id ||
		r.Status != "Pending" {
		t.Fatalf("pending: %d %s", code, body)
	}
	h.waitState(devs[0], StateSuspend)
	code, body = status(DefaultAccount, id)
	if r := decodeAs[requestStatusResponse](t, body); code != http.StatusOK || r.Status != "Success" {
		t.Fatalf("done: %d %s", code, body)
	}

	multi := h.accepted(h.action(ActionSuspend, nil, devs[1], devs[2]))
	code, body = status(DefaultAccount, multi)
	wantError(t, code, body, CodeStatusNotSupported)

	ppu := h.accepted(h.action(ActionContactInfo, nil, h.seed(1, "active")[0]))
	code, body = status(DefaultAccount, ppu)
	wantError(t, code, body, CodeStatusNotSupported)

	code, body = status(DefaultAccount, newUUID())
	wantError(t, code, body, CodeRequestNotFound)
	code, body = status("0000444444-00001", id) // another account's request
	wantError(t, code, body, CodeRequestNotFound)
	code, body = status("0000000000-00000", id)
	wantError(t, code, body, CodeAccountNotFound)
}
