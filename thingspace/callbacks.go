package thingspace

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

func callbacksPath(account string) string {
	return "/api/m2m/v1/callbacks/" + url.PathEscape(account)
}

// RegisterCallback registers (or replaces) the account's listener for one
// callback service. An empty account means the client's default.
func (c *Client) RegisterCallback(ctx context.Context, account string, r CallbackRegistration) error {
	account = c.account(account)
	if account == "" || r.Name == "" || r.URL == "" {
		return invalidInput(OpCallbacks, "account, service name and URL are required")
	}
	_, err := c.do(ctx, OpCallbacks, http.MethodPost, callbacksPath(account), r, nil)
	return err
}

// ListCallbacks returns the account's registered listeners. Their passwords
// are not returned.
func (c *Client) ListCallbacks(ctx context.Context, account string) ([]CallbackListener, error) {
	account = c.account(account)
	if account == "" {
		return nil, invalidInput(OpCallbacks, "account is required")
	}
	return fetchArray[CallbackListener](ctx, c, OpCallbacks, http.MethodGet, callbacksPath(account), nil)
}

// DeleteCallback deregisters the account's listener for serviceName.
func (c *Client) DeleteCallback(ctx context.Context, account, serviceName string) error {
	account = c.account(account)
	if account == "" || serviceName == "" {
		return invalidInput(OpCallbacks, "account and service name are required")
	}
	path := callbacksPath(account) + "/name/" + url.PathEscape(serviceName)
	_, err := c.do(ctx, OpCallbacks, http.MethodDelete, path, nil, nil)
	return err
}

// ParseCallbackMessage decodes a body POSTed by ThingSpace to a listener.
// It is tolerant where the format is unconfirmed: counts may be numbers or
// strings, deviceResponse that is not an object is ignored, and an empty or
// null faultResponse counts as no fault. Member names match in any case.
// The returned message holds the listener credentials echoed by ThingSpace;
// use RedactJSON on the raw body before storing it.
func ParseCallbackMessage(body []byte) (*CallbackMessage, error) {
	var w struct {
		Username             string          `json:"username"`
		Password             string          `json:"password"`
		RequestID            string          `json:"requestId"`
		DeviceIDs            []DeviceID      `json:"deviceIds"`
		DeviceResponse       json.RawMessage `json:"deviceResponse"`
		FaultResponse        json.RawMessage `json:"faultResponse"`
		Status               string          `json:"status"`
		CallbackCount        flexInt64       `json:"callbackCount"`
		MaxCallbackThreshold flexInt64       `json:"maxCallbackThreshold"`
		Comment              string          `json:"comment"`
	}
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, fmt.Errorf("thingspace: decoding callback message: %w", err)
	}
	m := &CallbackMessage{
		Username:             w.Username,
		Password:             w.Password,
		RequestID:            w.RequestID,
		DeviceIDs:            w.DeviceIDs,
		Status:               w.Status,
		CallbackCount:        int(w.CallbackCount.v),
		MaxCallbackThreshold: int(w.MaxCallbackThreshold.v),
		Comment:              w.Comment,
	}
	if dr := bytes.TrimSpace(w.DeviceResponse); len(dr) > 0 && dr[0] == '{' {
		var resp map[string]json.RawMessage
		if json.Unmarshal(dr, &resp) == nil && len(resp) > 0 {
			m.DeviceResponse = resp
		}
	}
	if fr := bytes.TrimSpace(w.FaultResponse); len(fr) > 0 && fr[0] == '{' {
		var f Fault
		if err := json.Unmarshal(fr, &f); err == nil &&
			(strings.TrimSpace(f.FaultCode) != "" || strings.TrimSpace(f.FaultString) != "") {
			m.FaultResponse = &f
		}
	}
	return m, nil
}
