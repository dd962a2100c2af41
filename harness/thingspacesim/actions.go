package thingspacesim

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// autoResumeAfter is how far ahead a suspension's auto-resume date lies.
// The contract maximum is account-specific and unpublished; the simulator
// reports the date but never auto-resumes.
const autoResumeAfter = 180 * 24 * time.Hour

// request is one accepted asynchronous action.
type request struct {
	id           string
	account      string // where callbacks for unknown devices go
	action       string
	devices      int
	completed    int
	failed       int
	servicePlan  string
	groupName    string
	customFields []customField
	ppu          *placeOfUse
	// deleteAfter: deactivate with deleteAfterDeactivation true; each
	// device leaves the account's inventory once deactivated.
	deleteAfter bool
}

// status is the GET .../requests/{id}/status value.
func (r *request) status() string {
	switch {
	case r.completed < r.devices:
		return "Pending"
	case r.failed > 0:
		return "Failure"
	}
	return "Success"
}

// devicePlan is the decision for one device of a request.
type devicePlan struct {
	ref   deviceRef
	dev   *device
	fault *faultResponse
}

func (s *Simulator) actionHandler(action string) apiHandler {
	return func(c *call) reply { return s.handleAction(c, action) }
}

// handleAction serves activate, suspend, restore, deactivate and
// contactInfo: validate, decide per device, answer {requestId} at once and
// schedule each device's completion and callback.
func (s *Simulator) handleAction(c *call, action string) reply {
	var req actionRequest
	if rep := decodeStrict(c.body, &req); rep != nil {
		return *rep
	}
	if rep := s.validateAction(action, &req); rep != nil {
		return *rep
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.RefuseWholeRequest && len(req.Devices) > 1 {
		if fault := s.firstRefusalLocked(req.Devices, req.AccountName, action, c.now); fault != nil {
			return uwsError(fault.FaultCode, "%s", fault.FaultString)
		}
	}
	id := newUUID()
	plans := make([]devicePlan, len(req.Devices))
	for i, ref := range req.Devices {
		d, t, fault := s.decideLocked(ref, req.AccountName, action, c.now)
		if fault != nil && len(req.Devices) == 1 {
			// A lone device's refusal is known before answering, so it is
			// answered synchronously (400) and no callback follows.
			return uwsError(fault.FaultCode, "%s", fault.FaultString)
		}
		plans[i] = devicePlan{ref: ref, dev: d, fault: fault}
		if fault == nil {
			// Applied now, so a second mention of the device in this
			// request (or any later request) sees it pending.
			if t.pending != d.state {
				d.state = t.pending
				d.pendingReq = id
			}
			if countsTowardDailyLimit(action) {
				d.actions = append(d.actions, c.now)
			}
			d.updatedAt = c.now
		}
	}
	account := req.AccountName
	if account == "" {
		account = s.defaultAccount()
	}
	r := &request{id: id, account: account, action: action, devices: len(plans),
		servicePlan: req.ServicePlan, groupName: req.GroupName, customFields: req.CustomFields, ppu: req.PrimaryPlaceOfUse,
		deleteAfter: req.DeleteAfterDeactivation != nil && *req.DeleteAfterDeactivation}
	s.requests[id] = r
	for _, p := range plans {
		s.stats.acceptLocked(planKey(p), action)
		if p.fault == nil {
			s.stats.appliedLocked(planKey(p), action)
		}
	}
	order := make([]int, len(plans))
	for i := range order {
		order[i] = i
	}
	if s.faults.ReorderCallbacks {
		s.rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	}
	for _, i := range order {
		p := plans[i]
		due := c.now.Add(s.cfg.CompletionDelay + s.rng.Jitter(s.cfg.CompletionJitter))
		if d, ok := s.cfg.CompletionDelayFor[planKey(p)]; ok {
			due = c.now.Add(d)
		}
		s.scheduleLocked(due, func(now time.Time) { s.completeLocked(r, p, now) })
	}
	s.log.Info("action accepted", "action", action, "requestId", id, "devices", len(plans))
	return s.appliedAnswerLocked(okReply(requestIDResponse{RequestID: id}))
}

// decideLocked finds the device a request entry names and whether action
// may start on it now. A device of another account than the request's is
// refused before anything else is checked, and is returned as nil: the
// request's account learns nothing about it, and its callback goes to the
// request's account, as for an unknown device.
func (s *Simulator) decideLocked(
	ref deviceRef,
	account, action string,
	now time.Time,
) (*device, transition, *faultResponse) {
	d, foreign := s.store.resolveLocked(ref, account)
	if foreign {
		return nil, transition{}, deviceFault(
			CodeDeviceAccountInvalid,
			"INPUT_INVALID. The device was not a part of the account specified",
		)
	}
	t, fault := s.checkLocked(d, action, now)
	return d, t, fault
}

// firstRefusalLocked returns the refusal of the first device of the request
// that would be refused, or nil, changing nothing (Config.RefuseWholeRequest).
// A device named twice would find itself pending at its second mention, as
// in an accepted request, so the second mention is refused the same way.
func (s *Simulator) firstRefusalLocked(refs []deviceRef, account, action string, now time.Time) *faultResponse {
	seen := make(map[*device]bool, len(refs))
	for _, ref := range refs {
		d, _, fault := s.decideLocked(ref, account, action, now)
		if d != nil && seen[d] && action != ActionContactInfo {
			return deviceFault(
				CodeDeviceStateInvalid,
				"INPUT_INVALID. Device has a pending request (named twice in this request)",
			)
		}
		if fault != nil {
			return fault
		}
		if d != nil {
			seen[d] = true
		}
	}
	return nil
}

// planKey names a device in Stats.AcceptedChanges: its ICCID, or the first
// identifier of the request entry when the device is unknown.
func planKey(p devicePlan) string {
	if p.dev != nil {
		return p.dev.iccid
	}
	return p.ref.DeviceIDs[0].ID
}

// completeLocked applies an accepted device change (or reports its refusal)
// and dispatches the device's callback.
func (s *Simulator) completeLocked(r *request, p devicePlan, now time.Time) {
	r.completed++
	msg := callbackMessage{RequestID: r.id}
	account := r.account
	iccid := planKey(p)
	if p.dev != nil {
		account = p.dev.account
		msg.DeviceIDs = p.dev.envelopeIDs()
	} else {
		msg.DeviceIDs = lowercaseKinds(p.ref.DeviceIDs)
	}
	if p.fault != nil {
		r.failed++
		msg.FaultResponse = p.fault
		msg.Status = "Failed"
		s.dispatchLocked(account, iccid, msg, now)
		return
	}
	d := p.dev
	resp := actionResponse{}
	switch r.action {
	case ActionActivate:
		d.state = StateActive
		s.store.assignMSISDNLocked(d)
		d.servicePlan = r.servicePlan
		d.activatedAt = now
		d.activatedBy = s.cfg.Username
		if r.groupName != "" {
			d.groupName = r.groupName
		}
		if len(r.customFields) > 0 {
			d.customFields = r.customFields
		}
		if r.ppu != nil {
			d.ppu = r.ppu
		}
		resp.ServicePlan = d.servicePlan
	case ActionSuspend:
		d.state = StateSuspend
		resp.AutoResumeDate = s.formatTime(now.Add(autoResumeAfter))
	case ActionRestore:
		d.state = StateActive
	case ActionDeactivate:
		d.state = StateDeactive
		s.store.releaseMSISDNLocked(d)
		d.servicePlan = ""
	case ActionContactInfo:
		d.ppu = r.ppu
	}
	if d.pendingReq == r.id {
		d.pendingReq = ""
	}
	d.updatedAt = now
	resp.DeviceIDs = d.wireIDs()
	msg.DeviceResponse = map[string]actionResponse{r.action + "Response": resp}
	msg.Status = "Success"
	if r.action == ActionDeactivate && r.deleteAfter {
		// Gone from the account once deactivated; the callback still
		// reports the deactivation (its listener is the account's).
		s.store.removeLocked(d)
	}
	s.dispatchLocked(account, iccid, msg, now)
}

func lowercaseKinds(ids []deviceID) []deviceID {
	out := make([]deviceID, len(ids))
	for i, id := range ids {
		out[i] = deviceID{ID: id.ID, Kind: strings.ToLower(id.Kind)}
	}
	return out
}

var (
	zip5          = regexp.MustCompile(`^[0-9]{5}$`)
	customFieldRe = regexp.MustCompile(`^CustomField[1-5]$`)
	poBoxRe       = regexp.MustCompile(`(?i)\bp\.?\s*o\.?\s*box\b`)
)

// actionFields lists the body members each action accepts (S-activate,
// S-suspend, S-restore, S-deact, SDK-js); others are refused so that a
// client sending, say, reasonCode on a suspend learns about it.
var actionFields = map[string][]string{
	ActionActivate: {"devices", "accountName", "groupName", "servicePlan", "customFields", "primaryPlaceOfUse",
		"mdnZipCode", "carrierName", "carrierIpPoolName", "costCenterCode", "leadId", "publicIpRestriction", "skuNumber"},
	ActionSuspend: {"devices", "accountName", "groupName", "servicePlan", "customFields", "withBilling"},
	ActionRestore: {"devices", "accountName", "groupName", "servicePlan", "customFields", "withBilling"},
	ActionDeactivate: {
		"devices",
		"accountName",
		"groupName",
		"servicePlan",
		"customFields",
		"reasonCode",
		"etfWaiver",
		"deleteAfterDeactivation",
	},
	ActionContactInfo: {"devices", "accountName", "primaryPlaceOfUse"},
}

// present names the members of req that were sent with a value.
func (req *actionRequest) present() map[string]bool {
	return map[string]bool{
		"devices": len(req.Devices) > 0, "accountName": req.AccountName != "", "groupName": req.GroupName != "",
		"servicePlan": req.ServicePlan != "", "customFields": len(req.CustomFields) > 0,
		"primaryPlaceOfUse": req.PrimaryPlaceOfUse != nil, "mdnZipCode": req.MdnZipCode != "",
		"carrierName": req.CarrierName != "", "carrierIpPoolName": req.CarrierIPPoolName != "",
		"costCenterCode": req.CostCenterCode != "", "leadId": req.LeadID != "",
		"publicIpRestriction": req.PublicIPRestriction != "", "skuNumber": req.SkuNumber != "",
		"withBilling": req.WithBilling != nil, "reasonCode": req.ReasonCode != "", "etfWaiver": req.EtfWaiver != nil,
		"deleteAfterDeactivation": req.DeleteAfterDeactivation != nil,
	}
}

// validateAction checks the request as a whole; device-level problems are
// decided per device later.
func (s *Simulator) validateAction(action string, req *actionRequest) *reply {
	fail := func(code, format string, args ...any) *reply {
		r := uwsError(code, format, args...)
		return &r
	}
	present := req.present()
	allowed := map[string]bool{}
	for _, f := range actionFields[action] {
		allowed[f] = true
	}
	for f, sent := range present {
		if sent && !allowed[f] {
			return fail(CodeUnexpectedError, "REQUEST_FAILED. Field %s is not valid for %s", f, action)
		}
	}
	if req.AccountName != "" && !s.accountExists(req.AccountName) {
		return fail(CodeAccountNotFound, "REQUEST_FAILED. Account %s not found", req.AccountName)
	}
	if action == ActionDeactivate && req.AccountName == "" {
		return fail(CodeAccountNotDefined, "INPUT_INVALID. accountName is required")
	}
	// For suspend/restore/deactivate, groupName, servicePlan and
	// customFields select devices; the docs forbid combining them with an
	// explicit list, and the simulator supports only explicit lists.
	selecting := action != ActionActivate && (req.GroupName != "" || req.ServicePlan != "" || len(req.CustomFields) > 0)
	switch {
	case len(req.Devices) == 0 && selecting:
		return fail(
			CodeUnexpectedError,
			"REQUEST_FAILED. Selecting devices by group, service plan or custom fields "+
				"is not supported by the simulator; list the devices",
		)
	case len(req.Devices) == 0:
		return fail(CodeUnexpectedError, "REQUEST_FAILED. devices is required")
	case selecting:
		return fail(
			CodeUnexpectedError,
			"REQUEST_FAILED. Do not combine devices with group, service plan or custom-field selection",
		)
	}
	if limit := s.currentLimits().MaxDevicesPerRequest; len(req.Devices) > limit {
		return fail(CodeMaxRequestsExceeded, "INPUT_INVALID. More than %d devices in one request", limit)
	}
	if rep := validateDeviceRefs(req.Devices); rep != nil {
		return rep
	}
	switch action {
	case ActionActivate:
		if strings.TrimSpace(req.ServicePlan) == "" {
			return fail(CodeUnexpectedError, "REQUEST_FAILED. servicePlan is required")
		}
		if !zip5.MatchString(req.MdnZipCode) {
			return fail(CodeUnexpectedError, "REQUEST_FAILED. mdnZipCode must be a 5-digit ZIP code")
		}
		if rep := validateCustomFields(req.CustomFields); rep != nil {
			return rep
		}
		if req.PrimaryPlaceOfUse != nil {
			if rep := ppuCharacters(req.PrimaryPlaceOfUse); rep != nil {
				return rep
			}
			if msg := validatePPU(req.PrimaryPlaceOfUse); msg != "" {
				return fail(CodeUnexpectedError, "REQUEST_FAILED. primaryPlaceOfUse: %s", msg)
			}
		}
		if strings.TrimSpace(req.SkuNumber) == "" {
			for i, ref := range req.Devices {
				if !namesHardware(ref) {
					return fail(
						CodeUnexpectedError,
						"REQUEST_FAILED. devices[%d] has no IMEI: skuNumber is required to activate a 4G device "+
							"by its ICCID",
						i,
					)
				}
			}
		}
	case ActionDeactivate:
		if strings.TrimSpace(req.ReasonCode) == "" {
			return fail(CodeUnexpectedError, "REQUEST_FAILED. reasonCode is required")
		}
	case ActionContactInfo:
		if req.PrimaryPlaceOfUse == nil {
			return fail(CodeUnexpectedError, "REQUEST_FAILED. primaryPlaceOfUse is required")
		}
		if rep := ppuCharacters(req.PrimaryPlaceOfUse); rep != nil {
			return rep
		}
		if msg := validatePPU(req.PrimaryPlaceOfUse); msg != "" {
			return fail(CodeUnexpectedError, "REQUEST_FAILED. primaryPlaceOfUse: %s", msg)
		}
	}
	return nil
}

// namesHardware reports whether a request entry names the device itself
// (IMEI, or ESN/MEID for 3G), not only its SIM or line: a 4G device named
// by its ICCID alone is activated with the request's skuNumber instead of
// its IMEI (CarrierActivateRequest.skuNumber).
func namesHardware(ref deviceRef) bool {
	for _, id := range ref.DeviceIDs {
		switch strings.ToLower(strings.TrimSpace(id.Kind)) {
		case kindIMEI, kindESN, kindMEID:
			return true
		}
	}
	return false
}

func validateCustomFields(fields []customField) *reply {
	for _, f := range fields {
		if !customFieldRe.MatchString(f.Key) {
			r := uwsError(
				CodeCustomFieldName,
				"INPUT_INVALID. Custom field name %q is not CustomField1..CustomField5",
				f.Key,
			)
			return &r
		}
		if len([]rune(f.Value)) > 50 {
			r := uwsError(CodeCustomFieldTooLong, "INPUT_INVALID. Custom field %s is longer than 50 characters", f.Key)
			return &r
		}
	}
	return nil
}

// ppuMember is one member of a place of use, named by its path in a
// request.
type ppuMember struct {
	path     string
	value    string
	required bool // as SDK-js marks it
}

// ppuMembers lists p's members in the order validatePPU reports them.
func ppuMembers(p *placeOfUse) []ppuMember {
	return []ppuMember{
		{"customerName.firstName", p.CustomerName.FirstName, true},
		{"customerName.lastName", p.CustomerName.LastName, true},
		{"address.addressLine1", p.Address.AddressLine1, true},
		{"address.addressLine2", p.Address.AddressLine2, false},
		{"address.city", p.Address.City, true},
		{"address.state", p.Address.State, true},
		{"address.zip", p.Address.Zip, true},
		{"address.country", p.Address.Country, true},
	}
}

// validatePPU checks the required members and the US address rules; it
// returns "" when the place of use is acceptable.
func validatePPU(p *placeOfUse) string {
	for _, m := range ppuMembers(p) {
		if m.required && strings.TrimSpace(m.value) == "" {
			return m.path + " is required"
		}
	}
	if poBoxRe.MatchString(p.Address.AddressLine1) {
		return "address.addressLine1 must not be a PO box"
	}
	if c := strings.ToUpper(strings.TrimSpace(p.Address.Country)); c != "US" && c != "USA" {
		return fmt.Sprintf("address.country must be US or USA, not %q", p.Address.Country)
	}
	return ""
}

// refusedCharacters are the characters of ThingSpace's
// INPUT_INVALID.Request.InvalidCharacter ("illegal characters in the
// request: apostrophe, <, backslash"), with the names the refusal uses.
var refusedCharacters = []struct {
	char rune
	name string
}{{'\'', "apostrophe"}, {'<', "<"}, {'\\', "backslash"}}

// ppuCharacters refuses a place of use with a character ThingSpace does not
// accept in any of its text members (those the simulator models). The
// answer names the member and the character, never the value: it is
// personal data.
func ppuCharacters(p *placeOfUse) *reply {
	members := []ppuMember{
		{path: "customerName.title", value: p.CustomerName.Title},
		{path: "customerName.middleName", value: p.CustomerName.MiddleName},
		{path: "customerName.suffix", value: p.CustomerName.Suffix},
		{path: "address.zip4", value: p.Address.Zip4},
		{path: "address.phone", value: p.Address.Phone},
		{path: "address.phoneType", value: p.Address.PhoneType},
		{path: "address.emailAddress", value: p.Address.EmailAddress},
	}
	for _, m := range append(ppuMembers(p), members...) {
		for _, c := range refusedCharacters {
			if strings.ContainsRune(m.value, c.char) {
				r := uwsError(
					CodeInvalidCharacter,
					"INPUT_INVALID. primaryPlaceOfUse.%s contains a character that is not allowed (%s)",
					m.path,
					c.name,
				)
				return &r
			}
		}
	}
	return nil
}
