package thingspacesim

// Error and fault codes the simulator answers with. Codes come from the
// reference digest (S-syncerr, S-cberr and the AE capture of them) where one
// exists; the ones marked "simulator choice" have no published source and
// are listed in the package documentation.
const (
	CodeDeviceNotFound       = "UnifiedWebService.REQUEST_FAILED.DeviceNotFound"
	CodeDeviceAlreadyActive  = "UnifiedWebService.REQUEST_FAILED.DeviceAlreadyActive"
	CodeDeviceStateInvalid   = "UnifiedWebService.INPUT_INVALID.DeviceState.Invalid"
	CodeDeviceKindInvalid    = "UnifiedWebService.INPUT_INVALID.Device.Kind.Invalid"
	CodeDeviceIDInvalid      = "UnifiedWebService.INPUT_INVALID.Device.Identifier.Invalid"
	CodeDeviceAccountInvalid = "UnifiedWebService.INPUT_INVALID.Device.Account.Invalid" // S-cberr
	CodeMaxRequestsExceeded  = "UnifiedWebService.INPUT_INVALID.MaxRequestsExceeded"
	CodeNumberOfDevices      = "UnifiedWebService.INPUT_INVALID.NumberofDevices"
	CodeAccountNotFound      = "UnifiedWebService.REQUEST_FAILED.AccountNotFound"
	CodeAccountNotDefined    = "UnifiedWebService.INPUT_INVALID.Account.NotDefined"
	CodeSessionExpired       = "UnifiedWebService.REQUEST_FAILED.SessionToken.Expired"
	CodeSessionFormat        = "UnifiedWebService.REQUEST_FAILED.SessionToken.Format"
	CodeSessionInvalid       = "UnifiedWebService.INPUT_INVALID.SessionToken.Invalid"
	CodeCustomFieldName      = "UnifiedWebService.INPUT_INVALID.CustomField.InvalidName"
	CodeCustomFieldTooLong   = "UnifiedWebService.INPUT_INVALID.CustomField.TooLong"
	CodeRequestUndefined     = "UnifiedWebService.INPUT_INVALID.RequestUndefined"
	CodeInvalidCharacter     = "UnifiedWebService.INPUT_INVALID.Request.InvalidCharacter"
	CodeUnexpectedError      = "UnifiedWebService.REQUEST_FAILED.UnexpectedError"
	CodeInvalidCredentials   = "UnifiedWebService.REQUEST_FAILED.InvalidCredentials"        // simulator choice
	CodeAccountLocked        = "UnifiedWebService.REQUEST_FAILED.AccountLocked"             // simulator choice
	CodeMaxActionsPerDay     = "UnifiedWebService.REQUEST_FAILED.MaxActionsPerDay"          // simulator choice
	CodeRequestNotFound      = "UnifiedWebService.REQUEST_FAILED.RequestNotFound"           // simulator choice
	CodeStatusNotSupported   = "UnifiedWebService.REQUEST_FAILED.RequestStatusNotSupported" // simulator choice
	CodeCallbackNotFound     = "UnifiedWebService.REQUEST_FAILED.CallbackNotFound"          // simulator choice
)

// Codes of the API gateway (WSO2), in front of the M2M API.
const (
	GatewayInvalidCredential = "900901" // wrong or expired Bearer
	GatewayMissingCredential = "900902" // no Authorization header
	GatewayUnknownResource   = "900906" // no such path/method
	GatewayThrottled         = "900800" // simulator choice (WSO2 code)
	GatewayBackendError      = "101503" // simulator choice (WSO2 code), 503 fault
)

// Device states as they appear in carrierInformations[].state and in
// DeviceSnapshot.State. The casing follows the legacy GetDeviceInformation
// list (L-gdi) with the lowercase "active" of the REST examples.
const (
	StatePreActive           = "pre-active"
	StateActive              = "active"
	StateSuspend             = "suspend"
	StateDeactive            = "deactive"
	StatePendingActivation   = "pending activation"
	StatePendingSuspend      = "pending suspend"
	StatePendingResume       = "pending resume"
	StatePendingDeactivation = "pending deactivation"
)

// Actions, as used in Stats.AcceptedChanges and the callback payload keys
// ("<action>Response").
const (
	ActionActivate    = "activate"
	ActionSuspend     = "suspend"
	ActionRestore     = "restore"
	ActionDeactivate  = "deactivate"
	ActionAdd         = "add"
	ActionContactInfo = "contactInfo"
)

// CarrierService is the callback service that reports state changes.
const CarrierService = "CarrierService"

// serviceNames are the callback service names accepted by POST /callbacks
// (the 23 names of the SDK-rs ServiceName enum). Only CarrierService
// messages are ever sent by the simulator.
var serviceNames = map[string]bool{
	"AlertService": true, "CarrierService": true, "DevicePRLInformation": true,
	"DeviceProfileService": true, "DevicePromoUsage": true, "DeviceService": true,
	"DeviceSuspensionStatus": true, "DeviceUsage": true, "DiagnosticsService": true,
	"EnhancedConnectivityService": true, "ExtendedEnhancedConnectivityService": true,
	"ExternalProvisioningChanges": true, "IntelligenceService": true,
	"NetworkEventService": true, "NiddService": true, "PromoChanges": true,
	"PwnService": true, "QoS": true, "ResumeTrackingNotification": true,
	"SMSDeliveryConfirmation": true, "StateService": true,
	"SubscriptionNotificationService": true, "VIPCallbackService": true,
}
