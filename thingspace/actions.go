package thingspace

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

const (
	pathActivate    = "/api/m2m/v1/devices/actions/activate"
	pathSuspend     = "/api/m2m/v1/devices/actions/suspend"
	pathRestore     = "/api/m2m/v1/devices/actions/restore"
	pathDeactivate  = "/api/m2m/v1/devices/actions/deactivate"
	pathContactInfo = "/api/m2m/v1/devices/actions/contactInfo"
	pathAdd         = "/api/m2m/v1/devices/actions/add"
)

// AddStatePreActive is the only state /devices/actions/add accepts.
const AddStatePreActive = "preactive"

// checkDevices refuses device lists that are empty (ThingSpace would then
// select by account or group: an empty list must never suspend a whole
// account), too long, or contain a device without an identifier.
func checkDevices(op string, refs []DeviceRef, limit int) error {
	if len(refs) == 0 {
		return invalidInput(op, "no devices given")
	}
	if len(refs) > limit {
		return invalidInput(op, fmt.Sprintf("%d devices; at most %d per request", len(refs), limit))
	}
	for i, r := range refs {
		if len(r.DeviceIDs) == 0 {
			return invalidInput(op, fmt.Sprintf("device %d has no identifier", i))
		}
		for _, id := range r.DeviceIDs {
			if strings.TrimSpace(id.ID) == "" || strings.TrimSpace(id.Kind) == "" {
				return invalidInput(op, fmt.Sprintf("device %d has an empty identifier or kind", i))
			}
		}
	}
	return nil
}

func (c *Client) account(name string) string {
	if name == "" {
		return c.cfg.AccountName
	}
	return name
}

// action sends an asynchronous state change and returns its requestId.
func (c *Client) action(ctx context.Context, op, method, path string, body any) (string, error) {
	var out struct {
		RequestID string `json:"requestId"`
	}
	status, err := c.do(ctx, op, method, path, body, &out)
	if err != nil {
		return "", err
	}
	if out.RequestID == "" {
		// Accepted, but without the id the outcome cannot be followed: the
		// caller must reconcile, as after a timeout.
		return "", &Error{Op: op, HTTPStatus: status, Kind: KindTemporary, Sent: true,
			Message: "answer carries no requestId"}
	}
	return out.RequestID, nil
}

// checkedAction is action behind checkDevices: no state change leaves with
// a device list ThingSpace would read as "the whole account".
func (c *Client) checkedAction(
	ctx context.Context,
	op, method, path string,
	devs []DeviceRef,
	body any,
) (string, error) {
	if err := checkDevices(op, devs, MaxDevicesPerRequest); err != nil {
		return "", err
	}
	return c.action(ctx, op, method, path, body)
}

// fetchArray sends a request whose answer is a list (maybe wrapped, see
// decodeArray); an answer that does not decode may still mean the request
// took effect, hence Sent and KindTemporary.
func fetchArray[T any](ctx context.Context, c *Client, op, method, path string, body any) ([]T, error) {
	var raw json.RawMessage
	status, err := c.do(ctx, op, method, path, body, &raw)
	if err != nil {
		return nil, err
	}
	var out []T
	if err := decodeArray(raw, &out); err != nil {
		return nil, &Error{
			Op:         op,
			HTTPStatus: status,
			Kind:       KindTemporary,
			Sent:       true,
			Message:    "unreadable answer",
			Err:        err,
		}
	}
	return out, nil
}

// Activate starts activation of the devices. The outcome arrives per device
// as a CarrierService callback.
func (c *Client) Activate(ctx context.Context, r ActivateRequest) (requestID string, err error) {
	r.AccountName = c.account(r.AccountName)
	return c.checkedAction(ctx, OpActivate, http.MethodPost, pathActivate, r.Devices, r)
}

// Suspend starts suspension of active devices.
func (c *Client) Suspend(ctx context.Context, r ActionRequest) (string, error) {
	r.AccountName = c.account(r.AccountName)
	return c.checkedAction(ctx, OpSuspend, http.MethodPost, pathSuspend, r.Devices, r)
}

// Restore starts restoring suspended devices to active.
func (c *Client) Restore(ctx context.Context, r ActionRequest) (string, error) {
	r.AccountName = c.account(r.AccountName)
	return c.checkedAction(ctx, OpRestore, http.MethodPost, pathRestore, r.Devices, r)
}

// Deactivate starts deactivation. accountName is required by ThingSpace;
// an empty ReasonCode becomes DeactivateReasonGeneral, the only documented
// value.
func (c *Client) Deactivate(ctx context.Context, r DeactivateRequest) (string, error) {
	r.AccountName = c.account(r.AccountName)
	if r.AccountName == "" {
		return "", invalidInput(OpDeactivate, "accountName is required")
	}
	if r.ReasonCode == "" {
		r.ReasonCode = DeactivateReasonGeneral
	}
	return c.checkedAction(ctx, OpDeactivate, http.MethodPost, pathDeactivate, r.Devices, r)
}

// UpdateContactInfo changes the Primary Place of Use of active devices
// (PUT /devices/actions/contactInfo).
func (c *Client) UpdateContactInfo(ctx context.Context, r ContactInfoRequest) (string, error) {
	r.AccountName = c.account(r.AccountName)
	return c.checkedAction(ctx, OpContactInfo, http.MethodPut, pathContactInfo, r.Devices, r)
}

// AddDevices adds devices to the account's inventory as pre-active. It is
// synchronous: the answer has one result per device. More than
// MaxDevicesPerAdd devices are refused locally.
func (c *Client) AddDevices(ctx context.Context, r AddRequest) ([]AddResult, error) {
	r.AccountName = c.account(r.AccountName)
	r.State = AddStatePreActive
	if err := checkDevices(OpAdd, r.DevicesToAdd, MaxDevicesPerAdd); err != nil {
		return nil, err
	}
	return fetchArray[AddResult](ctx, c, OpAdd, http.MethodPost, pathAdd, r)
}

// decodeArray decodes a JSON array, or an object with exactly one array
// member (wrapping is unconfirmed for several answers).
func decodeArray(raw json.RawMessage, out any) error {
	trimmed := strings.TrimSpace(string(raw))
	if trimmed == "" || trimmed == "null" {
		return nil
	}
	if strings.HasPrefix(trimmed, "[") {
		return json.Unmarshal(raw, out)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return err
	}
	var found json.RawMessage
	for _, v := range obj {
		if s := strings.TrimSpace(string(v)); strings.HasPrefix(s, "[") {
			if found != nil {
				return fmt.Errorf("answer object has several arrays")
			}
			found = v
		}
	}
	if found == nil {
		return fmt.Errorf("answer is neither an array nor an object holding one")
	}
	return json.Unmarshal(found, out)
}
