package db

// ChangeParams are the request-level fields of a device change, stored as
// JSON in device_changes.params. Changes batched into one ThingSpace request
// share them.
type ChangeParams struct {
	ServicePlan string `json:"servicePlan,omitempty"`
	MdnZipCode  string `json:"mdnZipCode,omitempty"`
	ReasonCode  string `json:"reasonCode,omitempty"`
	EtfWaiver   bool   `json:"etfWaiver,omitempty"`
}

// BillingData is the Rev.io service to create after a successful
// activation, stored as JSON in device_changes.billing. Rev.io requires
// ProviderID; it is 0 only in rows written before the file asked for
// rev_provider_id, and their Rev.io step fails at once (the client refuses
// to create a service without a provider).
type BillingData struct {
	CustomerID    int64    `json:"customerId"`
	ServiceTypeID int64    `json:"serviceTypeId"`
	ProviderID    int64    `json:"providerId,omitempty"`
	ProductIDs    []int64  `json:"productIds,omitempty"`
	Rates         []string `json:"rates,omitempty"`
}
