package thingspacesim

// JSON wire types, written from the reference digest rather than shared with
// the client package, so that contract tests between the two catch a mistake
// on either side.

type deviceID struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
}

// deviceRef is AccountDeviceList: one device of a request.
type deviceRef struct {
	DeviceIDs []deviceID `json:"deviceIds"`
	IPAddress string     `json:"ipAddress,omitempty"`
}

type customField struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type keyValue struct {
	Key   string `json:"key"`
	Value string `json:"value,omitempty"`
}

type customerName struct {
	Title      string `json:"title,omitempty"`
	FirstName  string `json:"firstName"`
	MiddleName string `json:"middleName,omitempty"`
	LastName   string `json:"lastName"`
	Suffix     string `json:"suffix,omitempty"`
}

type address struct {
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

// placeOfUse is the Primary Place of Use (PPU).
type placeOfUse struct {
	CustomerName customerName `json:"customerName"`
	Address      address      `json:"address"`
}

// errorBody is the synchronous M2M error (HTTP 400).
type errorBody struct {
	ErrorCode    string `json:"errorCode"`
	ErrorMessage string `json:"errorMessage"`
}

// gatewayFault is the WSO2 gateway error shape.
type gatewayFault struct {
	Fault gatewayFaultInner `json:"fault"`
}

type gatewayFaultInner struct {
	Code        string `json:"code"`
	Message     string `json:"message"`
	Description string `json:"description"`
}

type oauthError struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	Scope       string `json:"scope"`
}

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type sessionResponse struct {
	SessionToken string `json:"sessionToken"`
}

type requestIDResponse struct {
	RequestID string `json:"requestId"`
}

// actionRequest is the union of the activate, suspend, restore, deactivate
// and contactInfo bodies; fields not valid for an action are refused by
// validation (unknown JSON members are refused by the decoder).
type actionRequest struct {
	Devices           []deviceRef   `json:"devices"`
	AccountName       string        `json:"accountName"`
	GroupName         string        `json:"groupName"`
	ServicePlan       string        `json:"servicePlan"`
	CustomFields      []customField `json:"customFields"`
	PrimaryPlaceOfUse *placeOfUse   `json:"primaryPlaceOfUse"`
	// activate only
	MdnZipCode          string `json:"mdnZipCode"`
	CarrierName         string `json:"carrierName"`
	CarrierIPPoolName   string `json:"carrierIpPoolName"`
	CostCenterCode      string `json:"costCenterCode"`
	LeadID              string `json:"leadId"`
	PublicIPRestriction string `json:"publicIpRestriction"`
	SkuNumber           string `json:"skuNumber"`
	// suspend/restore (SDK-js only)
	WithBilling *bool `json:"withBilling"`
	// deactivate only
	ReasonCode              string `json:"reasonCode"`
	EtfWaiver               *bool  `json:"etfWaiver"`
	DeleteAfterDeactivation *bool  `json:"deleteAfterDeactivation"`
}

type addRequest struct {
	AccountName  string        `json:"accountName"`
	DevicesToAdd []deviceRef   `json:"devicesToAdd"`
	State        string        `json:"state"`
	GroupName    string        `json:"groupName"`
	CustomFields []customField `json:"customFields"`
	SkuNumber    string        `json:"skuNumber"`
	SmsrOid      string        `json:"smsrOid"`
}

type addResult struct {
	DeviceIDs []deviceID `json:"deviceIds"`
	Response  string     `json:"response"`
}

type identifierFilter struct {
	Kind       string `json:"kind"`
	Contains   string `json:"contains"`
	StartsWith string `json:"startswith"`
	EndsWith   string `json:"endswith"`
}

type listFilter struct {
	DeviceIdentifierFilters []identifierFilter `json:"deviceIdentifierFilters"`
}

type listRequest struct {
	AccountName         string        `json:"accountName"`
	DeviceID            *deviceID     `json:"deviceId"`
	Filter              *listFilter   `json:"filter"`
	CurrentState        string        `json:"currentState"`
	CustomFields        []customField `json:"customFields"`
	Earliest            string        `json:"earliest"`
	Latest              string        `json:"latest"`
	GroupName           string        `json:"groupName"`
	ServicePlan         string        `json:"servicePlan"`
	MaxNumberOfDevices  int           `json:"maxNumberOfDevices"`
	LargestDeviceIDSeen *int64        `json:"largestDeviceIdSeen"`
}

type carrierInformation struct {
	CarrierName string `json:"carrierName"`
	ServicePlan string `json:"servicePlan"`
	State       string `json:"state"`
}

type listDevice struct {
	AccountName         string               `json:"accountName"`
	BillingCycleEndDate string               `json:"billingCycleEndDate,omitempty"`
	CarrierInformations []carrierInformation `json:"carrierInformations"`
	Connected           bool                 `json:"connected"`
	CreatedAt           string               `json:"createdAt"`
	CustomFields        []customField        `json:"customFields"`
	DeviceIDs           []deviceID           `json:"deviceIds"`
	ExtendedAttributes  []keyValue           `json:"extendedAttributes,omitempty"`
	GroupNames          []string             `json:"groupNames"`
	IPAddress           string               `json:"ipAddress,omitempty"`
	LastActivationBy    string               `json:"lastActivationBy,omitempty"`
	LastActivationDate  string               `json:"lastActivationDate,omitempty"`
}

type listResponse struct {
	HasMoreData         bool         `json:"hasMoreData"`
	Devices             []listDevice `json:"devices"`
	LargestDeviceIDSeen *int64       `json:"largestDeviceIdSeen,omitempty"`
}

type requestStatusResponse struct {
	RequestID string `json:"requestId"`
	Status    string `json:"status"`
}

type callbackRegistration struct {
	Name     string `json:"name"`
	URL      string `json:"url"`
	Username string `json:"username"`
	Password string `json:"password"`
}

type callbackRegistered struct {
	AccountName string `json:"accountName"`
	ServiceName string `json:"serviceName"`
}

type callbackListenerInfo struct {
	AccountName string `json:"accountName"`
	ServiceName string `json:"serviceName"`
	URL         string `json:"url"`
	Username    string `json:"username"`
	Password    string `json:"password"`
}

type faultResponse struct {
	FaultCode   string `json:"faultcode"`
	FaultString string `json:"faultstring"`
}

// actionResponse is the value of deviceResponse.<action>Response.
type actionResponse struct {
	DeviceIDs      []deviceID `json:"deviceIds"`
	ServicePlan    string     `json:"servicePlan,omitempty"`
	AutoResumeDate string     `json:"autoResumeDate,omitempty"`
}

// callbackMessage is the CarrierService envelope, one per device.
type callbackMessage struct {
	Username             string                    `json:"username"`
	Password             string                    `json:"password"`
	RequestID            string                    `json:"requestId"`
	DeviceIDs            []deviceID                `json:"deviceIds"`
	DeviceResponse       map[string]actionResponse `json:"deviceResponse,omitempty"`
	FaultResponse        *faultResponse            `json:"faultResponse,omitempty"`
	Status               string                    `json:"status"`
	CallbackCount        int                       `json:"callbackCount"`
	MaxCallbackThreshold int                       `json:"maxCallbackThreshold"`
}
