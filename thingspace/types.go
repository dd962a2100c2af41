package thingspace

import (
	"encoding/json"
	"strings"

	"github.com/iot-ops/tsbulk/change"
)

// Device identifier kinds used in requests. ThingSpace answers with other
// casings too ("Iccid", "ESN"), so compare kinds with strings.EqualFold.
const (
	KindICCID  = "iccid"
	KindIMEI   = "imei"
	KindMDN    = "mdn"
	KindMSISDN = "msisdn"
	KindMIN    = "min"
	KindESN    = "esn"
	KindMEID   = "meid"
	KindEID    = "eid"
)

// CarrierServiceCallback is the callback service that reports every
// state-changing action (activate, suspend, restore, deactivate, PPU update).
const CarrierServiceCallback = "CarrierService"

// DeactivateReasonGeneral is the only documented reasonCode ("General
// Admin/Maintenance").
const DeactivateReasonGeneral = "FF"

// DeviceID names one device by one of its identifiers.
type DeviceID struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
}

// DeviceRef is one device of a request (AccountDeviceList). One identifier is
// enough; ICCID plus IMEI is what activation usually sends.
type DeviceRef struct {
	DeviceIDs []DeviceID `json:"deviceIds"`
	IPAddress string     `json:"ipAddress,omitempty"`
}

// ICCIDRef is a convenience for the common case of naming a device by ICCID
// (and IMEI when known).
func ICCIDRef(iccid, imei string) DeviceRef {
	ids := []DeviceID{{ID: iccid, Kind: KindICCID}}
	if imei != "" {
		ids = append(ids, DeviceID{ID: imei, Kind: KindIMEI})
	}
	return DeviceRef{DeviceIDs: ids}
}

// CustomField is one of CustomField1..CustomField5.
type CustomField struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// CustomerName is the customer part of a Primary Place of Use.
type CustomerName struct {
	Title      string `json:"title,omitempty"`
	FirstName  string `json:"firstName"`
	MiddleName string `json:"middleName,omitempty"`
	LastName   string `json:"lastName"`
	Suffix     string `json:"suffix,omitempty"`
}

// Address is the address part of a Primary Place of Use (E911 address).
type Address struct {
	AddressLine1 string `json:"addressLine1"`
	AddressLine2 string `json:"addressLine2,omitempty"`
	City         string `json:"city"`
	State        string `json:"state"`
	Zip          string `json:"zip"`
	Zip4         string `json:"zip4,omitempty"`
	Country      string `json:"country"`
	Phone        string `json:"phone,omitempty"`
	PhoneType    string `json:"phoneType,omitempty"`
	EmailAddress string `json:"emailAddress,omitempty"`
}

// PlaceOfUse is the Primary Place of Use (PPU). It is personal data: it must
// never be logged or written to the audit log.
type PlaceOfUse struct {
	CustomerName CustomerName `json:"customerName"`
	Address      Address      `json:"address"`
}

// ActivateRequest is the body of POST /devices/actions/activate. SkuNumber,
// the 4G device type's SKU, stands in for the IMEI of devices named by
// their ICCID alone.
type ActivateRequest struct {
	Devices           []DeviceRef   `json:"devices"`
	AccountName       string        `json:"accountName,omitempty"`
	ServicePlan       string        `json:"servicePlan"`
	MdnZipCode        string        `json:"mdnZipCode"`
	CarrierName       string        `json:"carrierName,omitempty"`
	CostCenterCode    string        `json:"costCenterCode,omitempty"`
	GroupName         string        `json:"groupName,omitempty"`
	SkuNumber         string        `json:"skuNumber,omitempty"`
	CustomFields      []CustomField `json:"customFields,omitempty"`
	PrimaryPlaceOfUse *PlaceOfUse   `json:"primaryPlaceOfUse,omitempty"`
}

// ActionRequest is the body of POST /devices/actions/suspend and /restore.
type ActionRequest struct {
	Devices     []DeviceRef `json:"devices"`
	AccountName string      `json:"accountName,omitempty"`
}

// DeactivateRequest is the body of POST /devices/actions/deactivate.
type DeactivateRequest struct {
	Devices     []DeviceRef `json:"devices"`
	AccountName string      `json:"accountName"`
	ReasonCode  string      `json:"reasonCode"`
	EtfWaiver   bool        `json:"etfWaiver"`
	// DeleteAfterDeactivation asks ThingSpace to remove each device from
	// the account's inventory once deactivated (the device list no longer
	// shows it). Always sent, false included: the product decides it
	// (thingspace.delete_after_deactivation), never ThingSpace's default.
	DeleteAfterDeactivation bool `json:"deleteAfterDeactivation"`
}

// AddRequest is the body of POST /devices/actions/add (to inventory,
// pre-active). At most MaxDevicesPerAdd devices.
type AddRequest struct {
	DevicesToAdd []DeviceRef   `json:"devicesToAdd"`
	AccountName  string        `json:"accountName,omitempty"`
	State        string        `json:"state"` // always "preactive"; Client.AddDevices fills it in
	GroupName    string        `json:"groupName,omitempty"`
	SkuNumber    string        `json:"skuNumber,omitempty"`
	CustomFields []CustomField `json:"customFields,omitempty"`
}

// AddResult is the synchronous per-device answer of /add.
type AddResult struct {
	DeviceIDs []DeviceID `json:"deviceIds"`
	Response  string     `json:"response"` // "Success" or an error text
}

// Succeeded reports whether ThingSpace accepted this device into inventory.
func (r AddResult) Succeeded() bool { return strings.EqualFold(r.Response, "Success") }

// ContactInfoRequest is the body of PUT /devices/actions/contactInfo, which
// updates the Primary Place of Use of devices that are already active.
type ContactInfoRequest struct {
	Devices           []DeviceRef `json:"devices"`
	AccountName       string      `json:"accountName,omitempty"`
	PrimaryPlaceOfUse PlaceOfUse  `json:"primaryPlaceOfUse"`
}

// DeviceIdentifierFilter narrows a device list by identifier text.
type DeviceIdentifierFilter struct {
	Kind       string `json:"kind"`
	Contains   string `json:"contains,omitempty"`
	StartsWith string `json:"startswith,omitempty"`
	EndsWith   string `json:"endswith,omitempty"`
}

// DeviceFilter is the "filter" member of a device list request.
type DeviceFilter struct {
	DeviceIdentifierFilters []DeviceIdentifierFilter `json:"deviceIdentifierFilters,omitempty"`
}

// ListRequest is the body of POST /devices/actions/list: either a single
// DeviceID, or filters (ANDed).
type ListRequest struct {
	AccountName         string        `json:"accountName,omitempty"`
	DeviceID            *DeviceID     `json:"deviceId,omitempty"`
	Filter              *DeviceFilter `json:"filter,omitempty"`
	CurrentState        string        `json:"currentState,omitempty"`
	CustomFields        []CustomField `json:"customFields,omitempty"`
	Earliest            string        `json:"earliest,omitempty"`
	Latest              string        `json:"latest,omitempty"`
	GroupName           string        `json:"groupName,omitempty"`
	ServicePlan         string        `json:"servicePlan,omitempty"`
	MaxNumberOfDevices  int           `json:"maxNumberOfDevices,omitempty"`
	LargestDeviceIDSeen *int64        `json:"largestDeviceIdSeen,omitempty"`
}

// ListResponse is one page of a device list. ThingSpace answers 202 when
// HasMoreData is true; both 200 and 202 are success.
type ListResponse struct {
	HasMoreData bool     `json:"hasMoreData"`
	Devices     []Device `json:"devices"`
	// LargestDeviceIDSeen is the paging cursor to send back for the next
	// page, when the answer has one. The published answer model
	// (AccountDeviceListResult: devices, hasMoreData) has no such member;
	// ListDevicePage pages by "earliest" unless its caller starts with a
	// cursor.
	LargestDeviceIDSeen *int64 `json:"largestDeviceIdSeen,omitempty"`
}

// CarrierInformation is one carrier entry of a device ("carrierInformations").
type CarrierInformation struct {
	CarrierName string `json:"carrierName"`
	ServicePlan string `json:"servicePlan"`
	State       string `json:"state"`
}

// KeyValue is a generic key/value pair (extendedAttributes). Value may be
// absent.
type KeyValue struct {
	Key   string `json:"key"`
	Value string `json:"value,omitempty"`
}

// Device is one entry of a device list.
type Device struct {
	AccountName         string               `json:"accountName"`
	BillingCycleEndDate string               `json:"billingCycleEndDate,omitempty"`
	CarrierInformations []CarrierInformation `json:"carrierInformations"`
	Connected           bool                 `json:"connected"`
	CreatedAt           string               `json:"createdAt"`
	CustomFields        []CustomField        `json:"customFields,omitempty"`
	DeviceIDs           []DeviceID           `json:"deviceIds"`
	ExtendedAttributes  []KeyValue           `json:"extendedAttributes,omitempty"`
	GroupNames          []string             `json:"groupNames,omitempty"`
	IPAddress           string               `json:"ipAddress,omitempty"`
	LastActivationBy    string               `json:"lastActivationBy,omitempty"`
	LastActivationDate  string               `json:"lastActivationDate,omitempty"`
	LastConnectionDate  string               `json:"lastConnectionDate,omitempty"`
}

// ID returns the device's identifier of the given kind (case-insensitive), or
// "" when it has none.
func (d Device) ID(kind string) string { return findID(d.DeviceIDs, kind) }

// State is the device's carrier state, in the product's spelling.
func (d Device) State() change.State {
	if len(d.CarrierInformations) == 0 {
		return change.StateUnknown
	}
	return ParseState(d.CarrierInformations[0].State)
}

// MSISDN returns the device's MSISDN, falling back to its MDN (3G devices
// have an MDN instead).
func (d Device) MSISDN() string {
	if v := d.ID(KindMSISDN); v != "" {
		return v
	}
	return d.ID(KindMDN)
}

func findID(ids []DeviceID, kind string) string {
	for _, id := range ids {
		if strings.EqualFold(id.Kind, kind) {
			return id.ID
		}
	}
	return ""
}

// ParseState maps a state name as ThingSpace spells it ("Pre-active",
// "active", "Deactive", "suspend", "pending activation", ...) to the
// product's (package change): the one place the wire's names are read.
// Casing in the live API is unconfirmed, so matching ignores case, spaces,
// '-' and '_'.
func ParseState(s string) change.State {
	k := strings.NewReplacer(" ", "", "-", "", "_", "").Replace(strings.ToLower(strings.TrimSpace(s)))
	switch k {
	case "preactive", "inventory":
		return change.StatePreActive
	case "active", "activate", "activated":
		return change.StateActive
	case "suspend", "suspended":
		return change.StateSuspended
	case "deactive", "deactivated", "deactivate", "inactive":
		return change.StateDeactive
	case "pendingactivation", "pendingactive", "pendingactivate":
		return change.StatePendingActivation
	case "pendingsuspend", "pendingsuspension":
		return change.StatePendingSuspend
	case "pendingresume", "pendingrestore":
		return change.StatePendingResume
	case "pendingdeactivation", "pendingdeactive", "pendingdeactivate":
		return change.StatePendingDeactivation
	case "pendingpreactive":
		return change.StatePendingPreActive
	case "":
		return change.StateUnknown
	}
	if strings.HasPrefix(k, "pending") {
		return change.StatePendingOther
	}
	return change.StateUnknown
}

// RequestStatus is the answer of GET /accounts/{account}/requests/{id}/status.
// It only works for single-device requests.
type RequestStatus struct {
	RequestID string `json:"requestId"`
	Status    string `json:"status"` // Pending | Success | Failure
}

// Request status values.
const (
	RequestPending = "Pending"
	RequestSuccess = "Success"
	RequestFailure = "Failure"
)

// CallbackRegistration is the body of POST /callbacks/{account}.
type CallbackRegistration struct {
	Name     string `json:"name"`
	URL      string `json:"url"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

// CallbackListener is one registered listener (GET /callbacks/{account}).
// Password is deliberately not exposed by the client: it is a secret.
type CallbackListener struct {
	AccountName string `json:"accountName"`
	ServiceName string `json:"serviceName"`
	URL         string `json:"url"`
	Username    string `json:"username"`
}

// Fault is the faultResponse of a failed callback.
type Fault struct {
	FaultCode   string `json:"faultcode"`
	FaultString string `json:"faultstring"`
}

// CallbackMessage is what ThingSpace POSTs to a registered listener: one
// message per device. Username and Password are the registered listener
// credentials echoed in the body; they are secrets.
type CallbackMessage struct {
	Username             string                     `json:"username"`
	Password             string                     `json:"password"`
	RequestID            string                     `json:"requestId"`
	DeviceIDs            []DeviceID                 `json:"deviceIds"`
	DeviceResponse       map[string]json.RawMessage `json:"deviceResponse,omitempty"`
	FaultResponse        *Fault                     `json:"faultResponse,omitempty"`
	Status               string                     `json:"status"`
	CallbackCount        int                        `json:"callbackCount"`
	MaxCallbackThreshold int                        `json:"maxCallbackThreshold"`
	Comment              string                     `json:"comment,omitempty"`
}

// ICCID returns the device's ICCID from the message.
func (m CallbackMessage) ICCID() string { return findID(m.DeviceIDs, KindICCID) }

// Succeeded reports a successful change. A message with a fault is a failure
// whatever its status says.
func (m CallbackMessage) Succeeded() bool {
	return m.FaultResponse == nil && strings.EqualFold(m.Status, "Success")
}

// ShortFaultCode is the fault code without its service-name prefix, or "".
func (m CallbackMessage) ShortFaultCode() string {
	if m.FaultResponse == nil {
		return ""
	}
	return change.ShortCode(m.FaultResponse.FaultCode)
}

// ResponseDeviceIDs collects the device identifiers found in deviceResponse.
// The key inside deviceResponse ("activateResponse", ...) and its contents are
// unconfirmed for state changes, so every member is searched for a
// "deviceIds" array.
func (m CallbackMessage) ResponseDeviceIDs() []DeviceID {
	var out []DeviceID
	for _, raw := range m.DeviceResponse {
		var inner struct {
			DeviceIDs []DeviceID `json:"deviceIds"`
		}
		if json.Unmarshal(raw, &inner) == nil {
			out = append(out, inner.DeviceIDs...)
		}
	}
	return out
}

// MSISDN returns the MSISDN (else MDN) assigned by an activation, from the
// response payload or the envelope's device ids, or "" when the callback does
// not carry one.
func (m CallbackMessage) MSISDN() string {
	ids := append(m.ResponseDeviceIDs(), m.DeviceIDs...)
	if v := findID(ids, KindMSISDN); v != "" {
		return v
	}
	return findID(ids, KindMDN)
}

// FaultText is a fault's message without the category ThingSpace repeats
// at its start ("REQUEST_FAILED. Device not found" → "Device not found"),
// so that code and message read once each: "REQUEST_FAILED.DeviceNotFound:
// Device not found".
func FaultText(message string) string {
	msg := strings.TrimSpace(message)
	for _, category := range []string{"REQUEST_FAILED", "INPUT_INVALID", "SYSTEM_ERROR"} {
		rest, ok := strings.CutPrefix(msg, category)
		if !ok {
			continue
		}
		rest = strings.TrimLeft(rest, ".: ")
		if rest != "" {
			return rest
		}
	}
	return msg
}
