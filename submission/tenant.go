package submission

// Tenants: a bulk change is submitted for one tenant, with the tenant's
// account, options, limits, approval rule and Rev.io mappings.

import (
	"fmt"
	"slices"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/changefile"
	"github.com/iot-ops/tsbulk/config"
)

// ForTenant is a Request for a bulk change of tenant tenantID ("" = the
// default tenant) in account ("" = the tenant's default account:
// thingspace.account for the default tenant): the tenant's options (billing,
// default site), per-line limit, approval rule and Rev.io mappings, and the
// deployment's batch size and file bound. The caller adds the file, who
// submits, the idempotency key and the default operation, and may narrow
// the options (timings, no callbacks, a schedule). An unknown tenant, or an
// account of another tenant, is an error of the caller's input.
func ForTenant(cfg *config.Config, tenantID, account string) (Request, error) {
	t, err := cfg.Tenant(tenantID)
	if err != nil {
		return Request{}, err
	}
	if account == "" {
		account = t.DefaultAccount()
	}
	if account != "" {
		if err := cfg.CheckAccount(t, account); err != nil {
			return Request{}, err
		}
	}
	req := Request{
		Tenant:               t.ID,
		Account:              account,
		BatchSize:            cfg.Bulk.BatchSize,
		Options:              cfg.BulkChangeOptionsFor(t),
		ActionsPerLinePerDay: t.Limits.ActionsPerLinePerDay,
		Approval:             NewApprovalRule(t.Approval.Operations, t.Approval.MinDevices, t.Approval.ExpiresAfter),
		MaxFileBytes:         cfg.Submission.MaxFileBytes,
	}
	if t.Revio.Mapped() {
		req.Mappings = &BillingMappings{Tenant: t.ID, Customers: t.Revio.Customers, Plans: t.Revio.Plans}
	}
	return req, nil
}

// BillingMappings bill a tenant's activations without rev_* columns on
// every row: the Rev.io customer of the bulk change's account, and the
// service of each row's service plan.
type BillingMappings struct {
	Tenant    string
	Customers []config.CustomerMapping
	Plans     []config.PlanMapping
}

// resolveBilling gives every activation without rev_* columns the Rev.io
// service the mappings say, exactly as if the row had carried it, so that
// the worker bills it as any other. A row with rev_* columns keeps them.
// With mappings every activation must be billable: a row that is not is a
// problem of its row and field, and every such problem is reported at once.
// Nothing to do without mappings (nil): only rows with rev_* are billed.
func resolveBilling(m *BillingMappings, account string, devs []changefile.DeviceRequest) error {
	if m == nil {
		return nil
	}
	if account == "" {
		for _, d := range devs {
			if d.Operation == change.Activate && d.Billing == nil {
				return &changefile.ValidationError{Errors: []changefile.FieldError{{Message: fmt.Sprintf(
					"the ThingSpace account is required: tenant %s bills activations by the Rev.io customer of their account",
					m.Tenant)}}}
			}
		}
		return nil
	}
	revio := config.TenantRevio{Customers: m.Customers, Plans: m.Plans}
	customer := revio.Customer(account)
	var problems []changefile.FieldError
	for i := range devs {
		d := &devs[i]
		if d.Operation != change.Activate || d.Billing != nil {
			continue
		}
		plan, planned := revio.Plan(d.ServicePlan)
		if !planned {
			problems = append(problems, changefile.FieldError{Row: d.Row, Field: "service_plan", Message: fmt.Sprintf(
				"service plan %q has no Rev.io plan mapping in tenant %s, and the row has no rev_* columns "+
					"(map the plan in revio.plans, or give rev_customer_id, rev_service_type_id and rev_provider_id)",
				d.ServicePlan, m.Tenant)})
		}
		if customer == 0 {
			problems = append(problems, changefile.FieldError{Row: d.Row, Field: "rev_customer_id", Message: fmt.Sprintf(
				"no Rev.io customer is mapped for account %s of tenant %s, and the row has no rev_customer_id "+
					"(map the account in revio.customers, or give the rev_* columns)", account, m.Tenant)})
		}
		if customer == 0 || !planned {
			continue
		}
		d.Billing = &changefile.Billing{
			CustomerID:    customer,
			ServiceTypeID: plan.ServiceTypeID,
			ProviderID:    plan.ProviderID,
			ProductIDs:    slices.Clone(plan.ProductIDs),
			Rates:         slices.Clone(plan.Rates),
		}
	}
	if len(problems) > 0 {
		return &changefile.ValidationError{Errors: problems}
	}
	return nil
}

// OtherTenantError refuses to act, for one tenant, on a bulk change of
// another: nothing is done.
type OtherTenantError struct {
	BulkChangeID string
	// Tenant is the bulk change's, Want the one asked for.
	Tenant, Want string
}

func (e *OtherTenantError) Error() string {
	return fmt.Sprintf("bulk change %s belongs to tenant %s, not %s: nothing was done", e.BulkChangeID, e.Tenant, e.Want)
}

// CheckTenant refuses a bulk change of tenant has when the caller acts for
// tenant want ("" = any tenant).
func CheckTenant(bulkChangeID, has, want string) error {
	if want != "" && has != want {
		return &OtherTenantError{BulkChangeID: bulkChangeID, Tenant: has, Want: want}
	}
	return nil
}
