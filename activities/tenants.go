package activities

// Tenants: one worker fleet serves every tenant. Each bulk change belongs to
// one tenant (bulk_changes.tenant, fixed at submission) and each ThingSpace
// account to one tenant (config), so an activity finds the clients and
// settings to use from the bulk change it works for, or, for the poller,
// from the account.

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"go.temporal.io/sdk/temporal"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/ratelimit"
	"github.com/iot-ops/tsbulk/revio"
	"github.com/iot-ops/tsbulk/submission"
	"github.com/iot-ops/tsbulk/thingspace"
)

// Tenant is what the activities use on behalf of one tenant.
type Tenant struct {
	ID         string
	ThingSpace *thingspace.Client
	// Revio is nil when the tenant's billing is switched off.
	Revio *revio.Client
	// Limiter is the tenant's ThingSpace request limits (nil: none); its
	// ledger rows are per account, and an account is one tenant's.
	Limiter *ratelimit.Limiter
	// Approval is the tenant's four-eyes rule (nil: none).
	Approval *submission.ApprovalRule
	// Limits are checked when device changes are claimed for a request.
	Limits db.ClaimLimits
	// DeleteAfterDeactivation is the tenant's
	// thingspace.delete_after_deactivation.
	DeleteAfterDeactivation bool
}

// Tenants gives the activities each tenant's clients and settings. The
// worker's implementation builds them from its configuration and rebuilds
// them when that is reloaded.
type Tenants interface {
	// Tenant is the tenant of id ("" = the default tenant), or a
	// *TenantNotConfiguredError.
	Tenant(ctx context.Context, id string) (*Tenant, error)
	// AccountTenant is the tenant a ThingSpace account belongs to, or a
	// *TenantNotConfiguredError.
	AccountTenant(ctx context.Context, account string) (*Tenant, error)
	// CheckAccount is nil when a bulk change of tenant id may use account:
	// an account is one tenant's, as the worker's configuration says.
	CheckAccount(ctx context.Context, id, account string) error
}

// TenantNotConfiguredError: the worker's configuration has no such tenant
// (it was removed, or this worker's configuration is behind), or no tenant
// lists the account. Retryable: an operator may add the tenant back (a
// reload, SIGHUP, is enough), and its bulk changes then carry on.
type TenantNotConfiguredError struct {
	// ID is the tenant asked for; Account the account whose tenant was
	// asked for (ID empty).
	ID, Account string
}

func (e *TenantNotConfiguredError) Error() string {
	if e.ID == "" {
		return fmt.Sprintf("account %s belongs to no tenant configured on this worker", e.Account)
	}
	return fmt.Sprintf("tenant %s is not configured on this worker", e.ID)
}

// ErrTypeTenantNotConfigured is the (retryable) error type of an activity
// whose tenant the worker does not know.
const ErrTypeTenantNotConfigured = "TenantNotConfigured"

// tenantError turns an error of Tenants into the activity's error.
func tenantError(err error) error {
	var nc *TenantNotConfiguredError
	if errors.As(err, &nc) {
		return temporal.NewApplicationErrorWithOptions(
			nc.Error()+": retried until it is (add it to the configuration and reload the workers with SIGHUP)",
			ErrTypeTenantNotConfigured, temporal.ApplicationErrorOptions{})
	}
	return err
}

// defaultTenant is the tenant of the Activities' own fields: every bulk
// change's when no Tenants are set (a single-tenant worker built by hand,
// the tests).
func (a *Activities) defaultTenant() *Tenant {
	return &Tenant{
		ID:                      change.DefaultTenant,
		ThingSpace:              a.ThingSpace,
		Revio:                   a.Revio,
		Limiter:                 a.Limiter,
		Approval:                a.Approval,
		Limits:                  a.Limits,
		DeleteAfterDeactivation: a.DeleteAfterDeactivation,
	}
}

// tenant is the tenant of id.
func (a *Activities) tenant(ctx context.Context, id string) (*Tenant, error) {
	if a.Tenants == nil {
		return a.defaultTenant(), nil
	}
	t, err := a.Tenants.Tenant(ctx, id)
	if err != nil {
		return nil, tenantError(err)
	}
	return t, nil
}

// bulkTenant is the tenant of a bulk change. A bulk change's tenant never
// changes, so it is read from PostgreSQL once per worker; the tenant's
// clients are asked for every time, since a reload may have replaced them.
func (a *Activities) bulkTenant(ctx context.Context, bulkID string) (*Tenant, error) {
	if a.Tenants == nil {
		return a.defaultTenant(), nil
	}
	cache := a.bulkTenants()
	id, ok := cache.Load(bulkID)
	if !ok {
		t, err := a.Store.BulkChangeTenant(ctx, bulkID)
		if errors.Is(err, db.ErrNotFound) {
			return nil, permanent(ErrTypeInvalidData, "bulk change %s does not exist", bulkID)
		}
		if err != nil {
			return nil, err
		}
		id, _ = cache.LoadOrStore(bulkID, t)
	}
	return a.tenant(ctx, id.(string))
}

// bulkTenantsInit guards the creation of every Activities' tenantOfBulk.
var bulkTenantsInit sync.Mutex

func (a *Activities) bulkTenants() *sync.Map {
	bulkTenantsInit.Lock()
	defer bulkTenantsInit.Unlock()
	if a.tenantOfBulk == nil {
		a.tenantOfBulk = &sync.Map{}
	}
	return a.tenantOfBulk
}

// deviceTenant is the tenant of a device change's bulk change: bulkID when
// the caller knows it, else read from the device change.
func (a *Activities) deviceTenant(ctx context.Context, bulkID string, deviceChangeID int64) (*Tenant, error) {
	if a.Tenants == nil {
		return a.defaultTenant(), nil
	}
	if bulkID == "" {
		dc, err := a.Store.GetDeviceChange(ctx, deviceChangeID)
		if errors.Is(err, db.ErrNotFound) {
			return nil, permanent(ErrTypeInvalidData, "device change %d does not exist", deviceChangeID)
		}
		if err != nil {
			return nil, fmt.Errorf("read device change %d: %w", deviceChangeID, err)
		}
		bulkID = dc.BulkChangeID
	}
	return a.bulkTenant(ctx, bulkID)
}

// accountTenant is the tenant an account belongs to (the poller's, which
// works for an account, not a bulk change).
func (a *Activities) accountTenant(ctx context.Context, account string) (*Tenant, error) {
	if a.Tenants == nil {
		return a.defaultTenant(), nil
	}
	t, err := a.Tenants.AccountTenant(ctx, account)
	if err != nil {
		return nil, tenantError(err)
	}
	return t, nil
}
