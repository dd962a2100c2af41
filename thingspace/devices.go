package thingspace

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

const pathList = "/api/m2m/v1/devices/actions/list"

type wireListResponse struct {
	HasMoreData         *bool     `json:"hasMoreData"`
	Devices             []Device  `json:"devices"`
	LargestDeviceIDSeen flexInt64 `json:"largestDeviceIdSeen"`
}

// ListDevices returns one page. ThingSpace answers 202 when more data
// follows; both 200 and 202 are success. When hasMoreData is absent, a 202
// is taken to mean more data.
func (c *Client) ListDevices(ctx context.Context, r ListRequest) (*ListResponse, error) {
	r.AccountName = c.account(r.AccountName)
	var raw wireListResponse
	status, err := c.do(ctx, OpList, http.MethodPost, pathList, r, &raw)
	if err != nil {
		return nil, err
	}
	out := &ListResponse{Devices: raw.Devices}
	if raw.HasMoreData != nil {
		out.HasMoreData = *raw.HasMoreData
	} else {
		out.HasMoreData = status == http.StatusAccepted
	}
	if raw.LargestDeviceIDSeen.set {
		v := raw.LargestDeviceIDSeen.v
		out.LargestDeviceIDSeen = &v
	}
	return out, nil
}

// ForEachDevice pages through every device matching r and calls fn for each
// (stopping at fn's first error, which is returned as is). It follows the
// answer's largestDeviceIdSeen when present; otherwise it advances
// `earliest` to the newest createdAt of the page and skips devices already
// seen at that boundary. Paging that makes no progress is an error rather
// than an endless loop.
func (c *Client) ForEachDevice(ctx context.Context, r ListRequest, fn func(Device) error) error {
	req := r
	var lastCursor *int64
	var boundary string                 // createdAt that the current `earliest` was set to
	seenAtBoundary := map[string]bool{} // devices already delivered with createdAt == boundary
	for page := 1; ; page++ {
		resp, err := c.ListDevices(ctx, req)
		if err != nil {
			return fmt.Errorf("thingspace: listing devices, page %d: %w", page, err)
		}
		delivered := 0
		for _, d := range resp.Devices {
			if boundary != "" && sameInstant(d.CreatedAt, boundary) {
				k := deviceKey(d)
				if seenAtBoundary[k] {
					continue
				}
				seenAtBoundary[k] = true
			}
			delivered++
			if err := fn(d); err != nil {
				return err
			}
		}
		if !resp.HasMoreData {
			return nil
		}

		if cur := resp.LargestDeviceIDSeen; cur != nil {
			if lastCursor != nil && *cur <= *lastCursor {
				return &Error{Op: OpList, Kind: KindTemporary, Sent: true,
					Message: fmt.Sprintf("device list cursor did not advance (page %d, largestDeviceIdSeen %d)", page, *cur)}
			}
			v := *cur
			lastCursor = &v
			req.LargestDeviceIDSeen = &v
			boundary, seenAtBoundary = "", map[string]bool{}
			continue
		}

		newest := newestCreatedAt(resp.Devices)
		if newest == "" {
			return &Error{Op: OpList, Kind: KindTemporary, Sent: true,
				Message: fmt.Sprintf("page %d says hasMoreData but gives neither largestDeviceIdSeen nor createdAt", page)}
		}
		if delivered == 0 {
			return &Error{Op: OpList, Kind: KindTemporary, Sent: true,
				Message: fmt.Sprintf("paging by earliest made no progress at %s (more than a page of devices share it)", newest)}
		}
		if boundary == "" || !sameInstant(newest, boundary) {
			seenAtBoundary = map[string]bool{}
		}
		for _, d := range resp.Devices {
			if sameInstant(d.CreatedAt, newest) {
				seenAtBoundary[deviceKey(d)] = true
			}
		}
		boundary = newest
		req.Earliest = newest
		req.LargestDeviceIDSeen = nil
	}
}

func parseTimestamp(s string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05Z0700", "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

func sameInstant(a, b string) bool {
	ta, oka := parseTimestamp(a)
	tb, okb := parseTimestamp(b)
	if oka && okb {
		return ta.Equal(tb)
	}
	return a == b
}

// newestCreatedAt returns the latest createdAt of the page, verbatim (it is
// sent back as `earliest`), comparing parsed instants when possible.
func newestCreatedAt(devs []Device) string {
	var best string
	var bestT time.Time
	for _, d := range devs {
		if d.CreatedAt == "" {
			continue
		}
		t, ok := parseTimestamp(d.CreatedAt)
		switch {
		case best == "":
			best, bestT = d.CreatedAt, t
		case ok && t.After(bestT):
			best, bestT = d.CreatedAt, t
		case !ok && d.CreatedAt > best:
			best = d.CreatedAt
		}
	}
	return best
}

// deviceKey identifies a device across pages: its ICCID when it has one
// (other identifiers such as the MSISDN can change while paging).
func deviceKey(d Device) string {
	if v := d.ID(KindICCID); v != "" {
		return "iccid:" + v
	}
	parts := make([]string, 0, len(d.DeviceIDs))
	for _, id := range d.DeviceIDs {
		parts = append(parts, strings.ToLower(id.Kind)+":"+id.ID)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// GetDevice looks one device up by one of its identifiers. A device
// ThingSpace does not know gives KindDeviceNotFound, whether ThingSpace says
// so with an error or with an empty list.
func (c *Client) GetDevice(ctx context.Context, id DeviceID) (*Device, error) {
	if strings.TrimSpace(id.ID) == "" || strings.TrimSpace(id.Kind) == "" {
		return nil, invalidInput(OpList, "device identifier and kind are required")
	}
	resp, err := c.ListDevices(ctx, ListRequest{DeviceID: &id})
	if err != nil {
		return nil, err
	}
	for i, d := range resp.Devices {
		if strings.EqualFold(d.ID(id.Kind), id.ID) {
			return &resp.Devices[i], nil
		}
	}
	if len(resp.Devices) == 1 {
		// Queried by an identifier the answer lists under another kind
		// (mdn vs msisdn): still the one device asked for.
		return &resp.Devices[0], nil
	}
	return nil, &Error{Op: OpList, HTTPStatus: http.StatusOK, Kind: KindDeviceNotFound,
		Message: fmt.Sprintf("no device with %s %s", strings.ToLower(id.Kind), id.ID)}
}

// RequestStatus polls the outcome of a single-device request (ThingSpace
// does not support it for multi-device requests). An empty account means
// the client's default.
func (c *Client) RequestStatus(ctx context.Context, account, requestID string) (*RequestStatus, error) {
	account = c.account(account)
	if account == "" || requestID == "" {
		return nil, invalidInput(OpRequestStatus, "account and requestID are required")
	}
	path := "/api/m2m/v1/accounts/" + url.PathEscape(account) + "/requests/" + url.PathEscape(requestID) + "/status"
	var out RequestStatus
	if _, err := c.do(ctx, OpRequestStatus, http.MethodGet, path, nil, &out); err != nil {
		return nil, err
	}
	if out.RequestID == "" {
		out.RequestID = requestID
	}
	return &out, nil
}
