package thingspacesim

import (
	"bytes"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
)

// maxListPage is the documented cap of devices per list response (S-list).
const maxListPage = 2000

const carrierName = "Verizon Wireless"

// listQuery is a validated list request.
type listQuery struct {
	account, state, group, plan string
	fields                      []customField
	idFilters                   []identifierFilter
	earliest, latest            time.Time
	pageSize                    int
	cursor                      *int64
}

// handleList: POST /devices/actions/list. Either a single deviceId lookup
// or ANDed filters, at most 2000 devices per page; 202 with hasMoreData
// when more remain.
//
// Paging: devices come in the order added (date added, then internal id
// for devices added at the same instant), and the client pages by sending
// earliest = the last createdAt it saw; earliest is inclusive, so the
// devices of that instant come again and the client skips those it has.
// A request's largestDeviceIdSeen (a published input) keeps the devices
// whose internal id is greater, which in the simulator is the same order;
// only with Config.ListCursorPaging does the answer carry the page's last
// id back as top-level largestDeviceIdSeen.
func (s *Simulator) handleList(c *call) reply {
	var req listRequest
	if len(bytes.TrimSpace(c.body)) > 0 { // an empty body lists every device
		if rep := decodeStrict(c.body, &req); rep != nil {
			return *rep
		}
	}
	if req.AccountName != "" && !s.accountExists(req.AccountName) {
		return uwsError(CodeAccountNotFound, "REQUEST_FAILED. Account %s not found", req.AccountName)
	}
	if req.DeviceID != nil {
		return s.lookupOne(*req.DeviceID, req.AccountName)
	}
	q, rep := parseListQuery(&req)
	if rep != nil {
		return *rep
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.store.list
	start := 0
	switch {
	case q.cursor != nil:
		start = sort.Search(len(list), func(i int) bool { return list[i].id > *q.cursor })
	case !q.earliest.IsZero():
		start = sort.Search(len(list), func(i int) bool { return !list[i].createdAt.Before(q.earliest) })
	}
	resp := listResponse{Devices: []listDevice{}}
	cursor := s.cfg.ListCursorPaging && q.cursor != nil
	for _, d := range list[start:] {
		if !q.matches(d) {
			continue
		}
		if len(resp.Devices) == q.pageSize {
			resp.HasMoreData = true
			break
		}
		resp.Devices = append(resp.Devices, s.listEntry(d, false))
		if cursor {
			last := d.id
			resp.LargestDeviceIDSeen = &last
		}
	}
	if cursor && resp.LargestDeviceIDSeen == nil {
		echo := *q.cursor
		resp.LargestDeviceIDSeen = &echo
	}
	status := http.StatusOK
	if resp.HasMoreData {
		status = http.StatusAccepted
	}
	return reply{status: status, body: resp}
}

func parseListQuery(req *listRequest) (listQuery, *reply) {
	fail := func(code, format string, args ...any) (listQuery, *reply) {
		r := uwsError(code, format, args...)
		return listQuery{}, &r
	}
	q := listQuery{account: req.AccountName, group: req.GroupName, plan: req.ServicePlan,
		fields: req.CustomFields, pageSize: maxListPage, cursor: req.LargestDeviceIDSeen}
	if req.CurrentState != "" {
		st, ok := normalizeState(req.CurrentState)
		if !ok {
			return fail(CodeUnexpectedError, "REQUEST_FAILED. Unknown currentState %q", req.CurrentState)
		}
		q.state = st
	}
	for name, v := range map[string]string{"earliest": req.Earliest, "latest": req.Latest} {
		if v == "" {
			continue
		}
		t, ok := parseWireTime(v)
		if !ok {
			return fail(CodeUnexpectedError, "REQUEST_FAILED. %s must be an RFC 3339 date-time", name)
		}
		if name == "earliest" {
			q.earliest = t
		} else {
			q.latest = t
		}
	}
	if req.Filter != nil {
		for _, f := range req.Filter.DeviceIdentifierFilters {
			if _, rep := validateDeviceID(deviceID{Kind: f.Kind, ID: "0"}); rep != nil && !isIDFormatError(rep) {
				return listQuery{}, rep
			}
			q.idFilters = append(q.idFilters, f)
		}
	}
	switch {
	case req.MaxNumberOfDevices < 0:
		return fail(CodeUnexpectedError, "REQUEST_FAILED. maxNumberOfDevices must not be negative")
	case req.MaxNumberOfDevices > 0 && req.MaxNumberOfDevices < maxListPage:
		q.pageSize = req.MaxNumberOfDevices
	}
	if q.cursor != nil && *q.cursor < 0 {
		return fail(CodeUnexpectedError, "REQUEST_FAILED. largestDeviceIdSeen must not be negative")
	}
	return q, nil
}

// isIDFormatError tells an identifier-format error (expected when checking
// only a filter's kind with a dummy value) from an unknown-kind error.
func isIDFormatError(rep *reply) bool {
	b, ok := rep.body.(errorBody)
	return ok && b.ErrorCode == CodeDeviceIDInvalid
}

func (q *listQuery) matches(d *device) bool {
	switch {
	case q.account != "" && d.account != q.account,
		q.state != "" && d.state != q.state,
		q.group != "" && d.groupName != q.group,
		q.plan != "" && d.servicePlan != q.plan,
		!q.earliest.IsZero() && d.createdAt.Before(q.earliest),
		!q.latest.IsZero() && d.createdAt.After(q.latest):
		return false
	}
	for _, want := range q.fields {
		found := false
		for _, have := range d.customFields {
			found = found || (have.Key == want.Key && have.Value == want.Value)
		}
		if !found {
			return false
		}
	}
	for _, f := range q.idFilters {
		v := d.identifier(f.Kind)
		if v == "" || !strings.Contains(v, f.Contains) || !strings.HasPrefix(v, f.StartsWith) ||
			!strings.HasSuffix(v, f.EndsWith) {
			return false
		}
	}
	return true
}

// identifier returns the device's identifier of a kind, or "".
func (d *device) identifier(kind string) string {
	switch strings.ToLower(kind) {
	case kindICCID:
		return d.iccid
	case kindIMEI:
		return d.imei
	case kindMDN, kindMSISDN, kindMIN:
		return d.msisdn
	}
	return ""
}

// lookupOne answers a single-device list request.
func (s *Simulator) lookupOne(id deviceID, account string) reply {
	if _, rep := validateDeviceID(id); rep != nil {
		return *rep
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Another account's device is not found here: the reference names no
	// list-specific code for it (simulator choice).
	d, _ := s.store.resolveLocked(deviceRef{DeviceIDs: []deviceID{id}}, account)
	if d == nil {
		return uwsError(CodeDeviceNotFound, "REQUEST_FAILED. Device not found")
	}
	return okReply(listResponse{Devices: []listDevice{s.listEntry(d, true)}})
}

// listEntry renders a device like the reference example. Extended
// attributes (the stored Primary Place of Use) only appear for
// single-device lookups, as SDK-js describes.
func (s *Simulator) listEntry(d *device, single bool) listDevice {
	e := listDevice{
		AccountName: d.account,
		CarrierInformations: []carrierInformation{
			{CarrierName: carrierName, ServicePlan: d.servicePlan, State: d.state},
		},
		CreatedAt:    s.formatTime(d.createdAt),
		CustomFields: d.customFields,
		DeviceIDs:    d.wireIDs(),
		GroupNames:   []string{},
	}
	if e.CustomFields == nil {
		e.CustomFields = []customField{}
	}
	if d.groupName != "" {
		e.GroupNames = []string{d.groupName}
	}
	if d.msisdn != "" {
		e.IPAddress = fmt.Sprintf("10.%d.%d.%d", d.id>>16&0xff, d.id>>8&0xff, d.id&0xff)
	}
	if !d.activatedAt.IsZero() {
		e.LastActivationDate = s.formatTime(d.activatedAt)
		e.LastActivationBy = d.activatedBy
	}
	if single && d.ppu != nil {
		e.ExtendedAttributes = ppuAttributes(d.ppu)
	}
	return e
}

// ppuAttributes flattens a place of use into extendedAttributes, leaving
// out empty members. The live key names are unconfirmed; the simulator's
// are "PrimaryPlaceOfUse" and the member's own name ("address.city" gives
// PrimaryPlaceOfUseCity).
func ppuAttributes(p *placeOfUse) []keyValue {
	var out []keyValue
	for _, m := range ppuMembers(p) {
		if m.value == "" {
			continue
		}
		_, name, _ := strings.Cut(m.path, ".")
		out = append(out, keyValue{
			Key:   "PrimaryPlaceOfUse" + strings.ToUpper(name[:1]) + name[1:],
			Value: m.value,
		})
	}
	return out
}
