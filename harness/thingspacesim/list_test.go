package thingspacesim

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

func (h *harness) list(body map[string]any) (int, listResponse) {
	h.t.Helper()
	status, data := h.m2m(http.MethodPost, "/devices/actions/list", body)
	if status != http.StatusOK && status != http.StatusAccepted {
		h.t.Fatalf("list: %d %s", status, data)
	}
	return status, decodeAs[listResponse](h.t, data)
}

func entryICCID(d listDevice) string {
	for _, id := range d.DeviceIDs {
		if id.Kind == "iccid" {
			return id.ID
		}
	}
	return ""
}

// By default the answer is the published AccountDeviceListResult,
// {devices, hasMoreData}: no largestDeviceIdSeen member, whether the
// request carried one or not. With ListCursorPaging it has one when asked.
func TestListAnswerHasNoCursorByDefault(t *testing.T) {
	for _, cursorMode := range []bool{false, true} {
		cfg := fastConfig()
		cfg.ListCursorPaging = cursorMode
		h := newHarness(t, cfg)
		h.seed(5, "active")
		for _, body := range []map[string]any{
			{"accountName": DefaultAccount},
			{"accountName": DefaultAccount, "largestDeviceIdSeen": 0},
			{"accountName": DefaultAccount, "largestDeviceIdSeen": 0, "maxNumberOfDevices": 2},
		} {
			status, data := h.m2m(http.MethodPost, "/devices/actions/list", body)
			if status != http.StatusOK && status != http.StatusAccepted {
				t.Fatalf("list %v: %d %s", body, status, data)
			}
			members := decodeAs[map[string]json.RawMessage](t, data)
			_, has := members["largestDeviceIdSeen"]
			_, asked := body["largestDeviceIdSeen"]
			if want := cursorMode && asked; has != want {
				t.Fatalf("cursor mode %v, request %v: largestDeviceIdSeen member present %v, want %v (%s)",
					cursorMode, body, has, want, data)
			}
			for name := range members {
				if name != "devices" && name != "hasMoreData" && name != "largestDeviceIdSeen" {
					t.Fatalf("member %q is not in AccountDeviceListResult", name)
				}
			}
		}
	}
}

func TestListPagingByCursor(t *testing.T) {
	cfg := fastConfig()
	cfg.ListCursorPaging = true
	h := newHarness(t, cfg)
	devs := h.seed(4500, "active")
	var cursor int64
	var seen []string
	wantSizes := []int{2000, 2000, 500}
	for page, want := range wantSizes {
		status, resp := h.list(map[string]any{"accountName": DefaultAccount, "largestDeviceIdSeen": cursor})
		more := page < len(wantSizes)-1
		if len(resp.Devices) != want || resp.HasMoreData != more {
			t.Fatalf("page %d: %d devices, hasMoreData %v", page, len(resp.Devices), resp.HasMoreData)
		}
		if wantStatus := map[bool]int{true: 202, false: 200}[more]; status != wantStatus {
			t.Fatalf("page %d: status %d, want %d", page, status, wantStatus)
		}
		if resp.LargestDeviceIDSeen == nil || *resp.LargestDeviceIDSeen <= cursor {
			t.Fatalf("page %d: cursor did not advance: %v", page, resp.LargestDeviceIDSeen)
		}
		cursor = *resp.LargestDeviceIDSeen
		for _, d := range resp.Devices {
			seen = append(seen, entryICCID(d))
		}
	}
	if strings.Join(seen, ",") != strings.Join(devs, ",") {
		t.Fatal("cursor paging did not return every device exactly once in id order")
	}
	// Past the end: empty page, cursor echoed.
	status, resp := h.list(map[string]any{"largestDeviceIdSeen": cursor})
	if status != 200 || len(resp.Devices) != 0 || resp.HasMoreData || resp.LargestDeviceIDSeen == nil ||
		*resp.LargestDeviceIDSeen != cursor {
		t.Fatalf("past the end: %d %+v", status, resp)
	}
}

func TestListPagingByEarliest(t *testing.T) {
	h := newHarness(t, fastConfig())
	devs := h.seed(4100, "preactive")
	got := map[string]bool{}
	var order []string
	body := map[string]any{"accountName": DefaultAccount}
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging by earliest does not terminate")
		}
		status, resp := h.list(body)
		if resp.LargestDeviceIDSeen != nil {
			t.Fatal("largestDeviceIdSeen returned although not sent")
		}
		for _, d := range resp.Devices {
			if id := entryICCID(d); !got[id] {
				got[id] = true
				order = append(order, id)
			}
		}
		if !resp.HasMoreData {
			if status != http.StatusOK {
				t.Fatalf("last page status %d", status)
			}
			break
		}
		if status != http.StatusAccepted || len(resp.Devices) != maxListPage {
			t.Fatalf("page %d: status %d, %d devices", pages, status, len(resp.Devices))
		}
		last := resp.Devices[len(resp.Devices)-1].CreatedAt
		if _, ok := parseWireTime(last); !ok || !strings.Contains(last, ".") {
			t.Fatalf("createdAt %q lacks milliseconds or an offset", last)
		}
		body["earliest"] = last
	}
	if strings.Join(order, ",") != strings.Join(devs, ",") {
		t.Fatalf("earliest paging returned %d unique devices, want %d in date order", len(order), len(devs))
	}
}

// Devices added at the same instant are listed in the order added, and an
// inclusive earliest at that instant gives them all again: paging by
// earliest and skipping the devices already seen at that instant neither
// loses nor repeats one, wherever the page boundaries fall among the ties.
// (The client's side of this is thingspace.ListDevicePage.)
func TestListPagingByEarliestWithTies(t *testing.T) {
	h := newHarness(t, fastConfig())
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	// Instants of 13 devices: groups of 1, 3, 2, 4, 1, 2 devices.
	groups := []int{1, 3, 2, 4, 1, 2}
	var seeds []DeviceSeed
	all := GenerateDevices(13, "8914800777", "active")
	for g, size := range groups {
		for range size {
			sd := all[len(seeds)]
			sd.AddedAt = base.Add(time.Duration(g) * time.Second)
			seeds = append(seeds, sd)
		}
	}
	if err := h.sim.Seed(seeds...); err != nil {
		t.Fatal(err)
	}
	// The whole list: creation order, equal createdAt within a group.
	_, resp := h.list(map[string]any{"accountName": DefaultAccount})
	for i, d := range resp.Devices {
		if entryICCID(d) != seeds[i].ICCID {
			t.Fatalf("position %d: %s, want %s (order added)", i, entryICCID(d), seeds[i].ICCID)
		}
		at, _ := parseWireTime(d.CreatedAt)
		if !at.Equal(seeds[i].AddedAt) {
			t.Fatalf("%s: createdAt %s, want %s", seeds[i].ICCID, d.CreatedAt, seeds[i].AddedAt)
		}
	}
	// Pages larger than the largest group (a page of one instant's devices
	// only could not be paged past), with boundaries inside groups.
	for _, pageSize := range []int{5, 6, 7} {
		var order []string
		var earliest string
		seenAt := map[string]bool{} // devices delivered at `earliest`
		for page := 0; ; page++ {
			if page > len(seeds) {
				t.Fatalf("page size %d: paging does not end", pageSize)
			}
			body := map[string]any{"accountName": DefaultAccount, "maxNumberOfDevices": pageSize}
			if earliest != "" {
				body["earliest"] = earliest
			}
			_, resp := h.list(body)
			newest := resp.Devices[len(resp.Devices)-1].CreatedAt
			next := map[string]bool{}
			if newest == earliest {
				next = seenAt
			}
			for _, d := range resp.Devices {
				id := entryICCID(d)
				if d.CreatedAt == earliest && seenAt[id] {
					continue
				}
				order = append(order, id)
				if d.CreatedAt == newest {
					next[id] = true
				}
			}
			if !resp.HasMoreData {
				break
			}
			earliest, seenAt = newest, next
		}
		want := make([]string, len(seeds))
		for i, sd := range seeds {
			want[i] = sd.ICCID
		}
		if strings.Join(order, ",") != strings.Join(want, ",") {
			t.Fatalf("page size %d: got %v, want every device once in order %v", pageSize, order, want)
		}
	}
}

func TestSeedAddedAt(t *testing.T) {
	sim := New(fastConfig())
	defer sim.Close()
	at := time.Now().Add(-time.Minute)
	devs := GenerateDevices(4, "8914800778", "")
	devs[0].AddedAt, devs[1].AddedAt = at, at
	if err := sim.Seed(devs[:3]...); err != nil {
		t.Fatal(err)
	}
	// Earlier than the newest device: refused, nothing added.
	devs[3].AddedAt = at
	if err := sim.Seed(devs[3]); err == nil || !strings.Contains(err.Error(), "added_at") {
		t.Fatalf("an added_at before the newest device's: %v", err)
	}
	if len(sim.Devices()) != 3 {
		t.Fatal("a refused seed was added")
	}
}

func TestListMaxNumberOfDevices(t *testing.T) {
	h := newHarness(t, fastConfig())
	h.seed(25, "active")
	status, resp := h.list(map[string]any{"maxNumberOfDevices": 10})
	if status != http.StatusAccepted || len(resp.Devices) != 10 || !resp.HasMoreData {
		t.Fatalf("maxNumberOfDevices: %d, %d devices", status, len(resp.Devices))
	}
}

func TestListFilters(t *testing.T) {
	cfg := fastConfig()
	cfg.Accounts = []string{DefaultAccount, "0000222222-00001"}
	h := newHarness(t, cfg)
	active := h.seed(3, "active")
	pre := h.seed(2, "preactive")
	if err := h.sim.Seed(DeviceSeed{ICCID: "89148000000000000035", Account: "0000222222-00001"}); err != nil {
		t.Fatal(err)
	}
	count := func(body map[string]any) int {
		_, resp := h.list(body)
		return len(resp.Devices)
	}
	if n := count(nil); n != 6 {
		t.Fatalf("empty body: %d devices, want 6", n)
	}
	if n := count(map[string]any{"accountName": "0000222222-00001"}); n != 1 {
		t.Fatalf("by account: %d", n)
	}
	for _, st := range []string{"active", "Active", "ACTIVE"} {
		if n := count(map[string]any{"currentState": st}); n != 3 {
			t.Fatalf("currentState %s: %d", st, n)
		}
	}
	if n := count(map[string]any{"currentState": "Pre-active"}); n != 3 {
		t.Fatalf("currentState pre-active: %d", n)
	}
	suffix := active[1][15:]
	f := func(k, v string) map[string]any {
		return map[string]any{
			"filter": map[string]any{"deviceIdentifierFilters": []map[string]string{{"kind": "iccid", k: v}}},
		}
	}
	if _, resp := h.list(f("endswith", suffix)); len(resp.Devices) != 1 || entryICCID(resp.Devices[0]) != active[1] {
		t.Fatalf("endswith: %+v", resp.Devices)
	}
	if n := count(f("startswith", active[0][:12])); n != 3 {
		t.Fatalf("startswith: %d", n)
	}
	if n := count(f("contains", pre[0][8:16])); n < 1 {
		t.Fatalf("contains: %d", n)
	}
	// earliest/latest bracket a device.
	_, one := h.list(map[string]any{"deviceId": deviceID{ID: pre[0], Kind: "iccid"}})
	at := one.Devices[0].CreatedAt
	if n := count(map[string]any{"earliest": at, "latest": at}); n != 1 {
		t.Fatalf("earliest=latest=createdAt: %d", n)
	}
	status, body := h.m2m(http.MethodPost, "/devices/actions/list", map[string]any{"currentState": "sleeping"})
	wantError(t, status, body, CodeUnexpectedError)
	status, body = h.m2m(http.MethodPost, "/devices/actions/list", map[string]any{
		"filter": map[string]any{"deviceIdentifierFilters": []map[string]string{{"kind": "bogus", "contains": "1"}}}})
	wantError(t, status, body, CodeDeviceKindInvalid)
}

func TestListSingleDevice(t *testing.T) {
	h := newHarness(t, fastConfig())
	dev := h.seed(1, "active")[0]
	status, resp := h.list(map[string]any{"deviceId": deviceID{ID: dev, Kind: "ICCID"}})
	if status != http.StatusOK || len(resp.Devices) != 1 || resp.HasMoreData {
		t.Fatalf("single lookup: %d %+v", status, resp)
	}
	d := resp.Devices[0]
	if d.AccountName != DefaultAccount || len(d.CarrierInformations) != 1 ||
		d.CarrierInformations[0].CarrierName != "Verizon Wireless" || d.CarrierInformations[0].State != "active" ||
		d.CarrierInformations[0].ServicePlan == "" {
		t.Fatalf("entry %+v", d)
	}
	kinds := map[string]bool{}
	for _, id := range d.DeviceIDs {
		kinds[id.Kind] = true
	}
	for _, k := range []string{"iccid", "imei", "mdn", "msisdn", "min"} {
		if !kinds[k] {
			t.Fatalf("active device lacks %s: %+v", k, d.DeviceIDs)
		}
	}
	if _, ok := parseWireTime(d.CreatedAt); !ok {
		t.Fatalf("createdAt %q", d.CreatedAt)
	}
	if _, ok := parseWireTime(d.LastActivationDate); !ok {
		t.Fatalf("lastActivationDate %q", d.LastActivationDate)
	}
	status, body := h.m2m(
		http.MethodPost,
		"/devices/actions/list",
		map[string]any{"deviceId": deviceID{ID: "89148000000000000043", Kind: "iccid"}},
	)
	wantError(t, status, body, CodeDeviceNotFound)
}

func TestListShowsPendingStates(t *testing.T) {
	cfg := fastConfig()
	cfg.CompletionDelay = 500 * time.Millisecond
	h := newHarness(t, cfg)
	devs := h.seed(4, "active")
	h.accepted(h.action(ActionSuspend, nil, devs[0]))
	h.accepted(h.action(ActionDeactivate, nil, devs[1]))
	pre := h.seed(1, "preactive")[0]
	h.accepted(h.action(ActionActivate, nil, pre))
	want := map[string]string{
		devs[0]: "pending suspend",
		devs[1]: "pending deactivation",
		pre:     "pending activation",
		devs[2]: "active",
	}
	_, resp := h.list(nil)
	for _, d := range resp.Devices {
		if w, ok := want[entryICCID(d)]; ok && d.CarrierInformations[0].State != w {
			t.Fatalf("%s: state %q, want %q", entryICCID(d), d.CarrierInformations[0].State, w)
		}
	}
}
