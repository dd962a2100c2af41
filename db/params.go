package db

// ChangeParams are the request-level fields of a device change, stored as
// JSON in device_changes.params. Changes batched into one ThingSpace request
// share them.
type ChangeParams struct {
	ServicePlan string `json:"servicePlan,omitempty"`
	MdnZipCode  string `json:"mdnZipCode,omitempty"`
	// SkuNumber is the activation's skuNumber: the 4G device type's SKU,
	// which ThingSpace takes in lieu of the IMEI.
	SkuNumber  string `json:"skuNumber,omitempty"`
	ReasonCode string `json:"reasonCode,omitempty"`
	EtfWaiver  bool   `json:"etfWaiver,omitempty"`
	// DeleteAfterDeactivation is the file's delete_after_deactivation, as
	// given: nil (unset) leaves the choice to the worker that sends the
	// request (thingspace.delete_after_deactivation), never to the process
	// that submitted the file.
	DeleteAfterDeactivation *bool `json:"deleteAfterDeactivation,omitempty"`
}

// DeleteAfter is the deleteAfterDeactivation value to send: the file's
// choice, else the worker's setting.
func (p ChangeParams) DeleteAfter(setting bool) bool {
	if p.DeleteAfterDeactivation != nil {
		return *p.DeleteAfterDeactivation
	}
	return setting
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
