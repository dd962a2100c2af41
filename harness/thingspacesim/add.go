package thingspacesim

import (
	"net/http"
	"strings"
)

// addSuccess is /add's response text for a device it added.
const addSuccess = "Success"

// handleAdd: POST /devices/actions/add puts devices into an account's
// inventory in pre-active state. It is synchronous: one result per device,
// no callback.
func (s *Simulator) handleAdd(c *call) reply {
	var req addRequest
	if rep := decodeStrict(c.body, &req); rep != nil {
		return *rep
	}
	if req.State != "preactive" {
		return uwsError(CodeUnexpectedError, "REQUEST_FAILED. state must be \"preactive\"")
	}
	if req.AccountName != "" && !s.accountExists(req.AccountName) {
		return uwsError(CodeAccountNotFound, "REQUEST_FAILED. Account %s not found", req.AccountName)
	}
	if len(req.DevicesToAdd) == 0 {
		return uwsError(CodeUnexpectedError, "REQUEST_FAILED. devicesToAdd is required")
	}
	if limit := s.currentLimits().MaxDevicesPerAdd; len(req.DevicesToAdd) > limit {
		return uwsError(CodeNumberOfDevices, "INPUT_INVALID. More than %d devices in one add request", limit)
	}
	if rep := validateDeviceRefs(req.DevicesToAdd); rep != nil {
		return *rep
	}
	if rep := validateCustomFields(req.CustomFields); rep != nil {
		return *rep
	}
	account := req.AccountName
	if account == "" {
		account = s.defaultAccount()
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	results := make([]addResult, 0, len(req.DevicesToAdd))
	for _, ref := range req.DevicesToAdd {
		text, key := s.addOneLocked(ref, account, &req, c)
		results = append(results, addResult{DeviceIDs: lowercaseKinds(ref.DeviceIDs), Response: text})
		s.stats.acceptLocked(key, ActionAdd)
		if text == addSuccess {
			s.stats.appliedLocked(key, ActionAdd)
		}
	}
	return s.appliedAnswerLocked(reply{status: http.StatusOK, body: results})
}

// addOneLocked adds one device and returns its response text and the key
// it is counted under in Stats.AcceptedChanges.
func (s *Simulator) addOneLocked(ref deviceRef, account string, req *addRequest, c *call) (string, string) {
	var iccid, imei string
	for _, id := range ref.DeviceIDs {
		switch strings.ToLower(id.Kind) {
		case kindICCID:
			iccid = id.ID
		case kindIMEI:
			imei = id.ID
		}
	}
	if iccid == "" {
		// The simulator keys devices by ICCID; ESN/MEID-only (3G) devices
		// are out of scope.
		return "Device must be identified by an ICCID", ref.DeviceIDs[0].ID
	}
	if d := s.store.byICCID[iccid]; d != nil {
		if d.account == account {
			return "Device already exists in the account", iccid
		}
		return "Device belongs to another account", iccid
	}
	if imei != "" && s.store.byIMEI[imei] != nil {
		return "Device IMEI is already in use by another device", iccid
	}
	d := &device{iccid: iccid, imei: imei, account: account, state: StatePreActive,
		groupName: req.GroupName, customFields: req.CustomFields, updatedAt: c.now}
	s.store.insertLocked(d, c.now)
	return addSuccess, iccid
}
