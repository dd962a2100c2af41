package thingspace

import (
	"context"
	"errors"
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

// ErrStopListing, returned by ForEachDevice's callback, ends the listing
// early without error: a caller that has seen every device it wanted stops
// paying for the pages that follow.
var ErrStopListing = errors.New("thingspace: stop listing")

// ListCursor is where paging through a device list stands; the zero value
// is the start of the list. It is plain JSON so that a caller can store it
// and resume after a restart: the `earliest` position with the devices
// already delivered at that instant (`earliest` is inclusive), or, for a
// caller that pages by ThingSpace's largestDeviceIdSeen, that cursor.
type ListCursor struct {
	LargestDeviceIDSeen *int64   `json:"largestDeviceIdSeen,omitempty"`
	Earliest            string   `json:"earliest,omitempty"`
	SeenAtEarliest      []string `json:"seenAtEarliest,omitempty"`
}

// IsStart reports whether the cursor is at the start of the list.
func (c ListCursor) IsStart() bool {
	return (c.LargestDeviceIDSeen == nil || *c.LargestDeviceIDSeen == 0) && c.Earliest == ""
}

// Reached reports whether paging has got to or past position o (both
// cursors of the same kind); cursors of different kinds never compare. At
// the same instant, c has reached o when it has delivered every device o
// had delivered at that instant.
func (c ListCursor) Reached(o ListCursor) bool {
	switch {
	case o.IsStart():
		return true
	case c.LargestDeviceIDSeen != nil && o.LargestDeviceIDSeen != nil:
		return *c.LargestDeviceIDSeen >= *o.LargestDeviceIDSeen
	case c.Earliest != "" && o.Earliest != "":
		if !sameInstant(c.Earliest, o.Earliest) {
			tc, okc := parseTimestamp(c.Earliest)
			to, oko := parseTimestamp(o.Earliest)
			if okc && oko {
				return tc.After(to)
			}
			return c.Earliest > o.Earliest
		}
		seen := make(map[string]bool, len(c.SeenAtEarliest))
		for _, k := range c.SeenAtEarliest {
			seen[k] = true
		}
		for _, k := range o.SeenAtEarliest {
			if !seen[k] {
				return false
			}
		}
		return true
	}
	return false
}

// DevicePage is one page of a device list read by ListDevicePage.
type DevicePage struct {
	// Devices are the page's devices not delivered before (the boundary
	// device that `earliest` paging repeats is left out).
	Devices []Device
	// Next is where the following page starts; the zero cursor when More
	// is false.
	Next ListCursor
	More bool
}

// ListDevicePage reads the page of the devices matching r that starts at
// cur (r's own paging fields are ignored).
//
// From the start (the zero cursor) it pages by `earliest`, ThingSpace's
// date-added paging and the only one its published answer ({devices,
// hasMoreData}) allows: the next page starts at the newest createdAt of
// this one, inclusive, and the devices already delivered at that instant
// are skipped, so devices added at the same instant across a page boundary
// are neither lost nor repeated. (Whether `earliest` is inclusive and how
// ThingSpace orders devices added at one instant are unconfirmed; an
// exclusive `earliest` would lose such ties.) More devices than a page
// added at one instant cannot be paged past: that, like any page that
// delivers nothing new, is an error rather than an endless loop. A
// largestDeviceIdSeen in an answer to such a page is ignored: the page was
// in date-added order, and where an id falls in that order is unknown.
//
// A caller that starts with a largestDeviceIdSeen cursor pages by it, and
// needs every answer that has more data to carry the next one: ThingSpace
// orders such pages by device ID (S-list), so moving `earliest` from one
// could skip devices.
func (c *Client) ListDevicePage(ctx context.Context, r ListRequest, cur ListCursor) (*DevicePage, error) {
	req := r
	req.LargestDeviceIDSeen, req.Earliest = cur.LargestDeviceIDSeen, cur.Earliest
	resp, err := c.ListDevices(ctx, req)
	if err != nil {
		return nil, err
	}
	if cur.LargestDeviceIDSeen != nil {
		return cursorPage(cur, resp)
	}
	seen := make(map[string]bool, len(cur.SeenAtEarliest))
	for _, k := range cur.SeenAtEarliest {
		seen[k] = true
	}
	page := &DevicePage{Devices: make([]Device, 0, len(resp.Devices)), More: resp.HasMoreData}
	for _, d := range resp.Devices {
		if cur.Earliest != "" && sameInstant(d.CreatedAt, cur.Earliest) {
			k := deviceKey(d)
			if seen[k] {
				continue
			}
			seen[k] = true
		}
		page.Devices = append(page.Devices, d)
	}
	if !resp.HasMoreData {
		return page, nil
	}

	newest := newestCreatedAt(resp.Devices)
	if newest == "" {
		return nil, &Error{Op: OpList, Kind: KindTemporary, Sent: true,
			Message: "a page says hasMoreData but its devices carry no createdAt to page on by earliest"}
	}
	if len(page.Devices) == 0 {
		return nil, &Error{Op: OpList, Kind: KindTemporary, Sent: true,
			Message: fmt.Sprintf(
				"paging by earliest made no progress at %s (more than a page of devices share it)",
				newest,
			)}
	}
	next := ListCursor{Earliest: newest}
	if cur.Earliest != "" && sameInstant(newest, cur.Earliest) {
		// Still at the same instant: everything delivered at it so far.
		for k := range seen {
			next.SeenAtEarliest = append(next.SeenAtEarliest, k)
		}
	} else {
		for _, d := range resp.Devices {
			if sameInstant(d.CreatedAt, newest) {
				next.SeenAtEarliest = append(next.SeenAtEarliest, deviceKey(d))
			}
		}
	}
	sort.Strings(next.SeenAtEarliest)
	page.Next = next
	return page, nil
}

// cursorPage is a page read by largestDeviceIdSeen.
func cursorPage(cur ListCursor, resp *ListResponse) (*DevicePage, error) {
	page := &DevicePage{Devices: resp.Devices, More: resp.HasMoreData}
	if !resp.HasMoreData {
		return page, nil
	}
	next := resp.LargestDeviceIDSeen
	switch {
	case next == nil:
		return nil, &Error{Op: OpList, Kind: KindPermanent, Sent: true,
			Message: "paging by largestDeviceIdSeen, but the answer carries none (the published answer has no " +
				"such member); page by earliest instead, from a cursor without largestDeviceIdSeen"}
	case *next <= *cur.LargestDeviceIDSeen:
		return nil, &Error{Op: OpList, Kind: KindTemporary, Sent: true,
			Message: fmt.Sprintf("device list cursor did not advance (largestDeviceIdSeen %d)", *next)}
	}
	v := *next
	page.Next = ListCursor{LargestDeviceIDSeen: &v}
	return page, nil
}

// ForEachDevice pages through every device matching r and calls fn for each
// (starting at r's earliest when set; by r's largestDeviceIdSeen when set,
// see ListDevicePage). It stops at
// fn's first error, which is returned as is, except ErrStopListing, which
// ends the listing without error.
func (c *Client) ForEachDevice(ctx context.Context, r ListRequest, fn func(Device) error) error {
	cur := ListCursor{LargestDeviceIDSeen: r.LargestDeviceIDSeen, Earliest: r.Earliest}
	for pageNo := 1; ; pageNo++ {
		page, err := c.ListDevicePage(ctx, r, cur)
		if err != nil {
			return fmt.Errorf("thingspace: listing devices, page %d: %w", pageNo, err)
		}
		for _, d := range page.Devices {
			if err := fn(d); err != nil {
				if errors.Is(err, ErrStopListing) {
					return nil
				}
				return err
			}
		}
		if !page.More {
			return nil
		}
		cur = page.Next
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
