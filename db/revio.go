package db

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// RevioService is the Rev.io service line of an activated device change.
type RevioService struct {
	DeviceChangeID int64
	ICCID          string
	Number         string
	CustomerID     int64
	ServiceID      int64
	FoundBy        string
}

// RevioProduct is one service product of a service line.
type RevioProduct struct {
	DeviceChangeID   int64
	Idx              int
	ProductID        int64
	Rate             string
	ServiceProductID int64
	FoundBy          string
}

const revioServiceColumns = `device_change_id, iccid, number, customer_id, service_id, found_by`

func scanRevioService(row pgx.Row) (*RevioService, error) {
	var r RevioService
	return scanned(&r, row.Scan(&r.DeviceChangeID, &r.ICCID, &r.Number, &r.CustomerID, &r.ServiceID, &r.FoundBy))
}

// RevioServiceOf returns the stored service of a device change.
func (s *Store) RevioServiceOf(ctx context.Context, deviceChangeID int64) (*RevioService, error) {
	return scanRevioService(s.Pool.QueryRow(ctx, `SELECT `+revioServiceColumns+`
		FROM revio_services WHERE device_change_id = $1`, deviceChangeID))
}

// SaveRevioService stores a service id the moment Rev.io returned it. A
// service already stored for the device change wins (and is returned).
func (s *Store) SaveRevioService(ctx context.Context, r RevioService) (*RevioService, error) {
	_, err := s.Pool.Exec(ctx, `
		INSERT INTO revio_services (device_change_id, iccid, number, customer_id, service_id, found_by)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (device_change_id) DO NOTHING`,
		r.DeviceChangeID, r.ICCID, r.Number, r.CustomerID, r.ServiceID, r.FoundBy)
	if err != nil {
		return nil, fmt.Errorf("save Rev.io service: %w", err)
	}
	return s.RevioServiceOf(ctx, r.DeviceChangeID)
}

// RevioProducts lists the stored service products of a device change.
func (s *Store) RevioProducts(ctx context.Context, deviceChangeID int64) ([]RevioProduct, error) {
	rows, err := s.Pool.Query(ctx, `SELECT device_change_id, idx, product_id, rate, service_product_id, found_by
		FROM revio_service_products WHERE device_change_id = $1 ORDER BY idx`, deviceChangeID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (RevioProduct, error) {
		var p RevioProduct
		err := r.Scan(&p.DeviceChangeID, &p.Idx, &p.ProductID, &p.Rate, &p.ServiceProductID, &p.FoundBy)
		return p, err
	})
}

// SaveRevioProduct stores a service product id (first one wins).
func (s *Store) SaveRevioProduct(ctx context.Context, p RevioProduct) error {
	_, err := s.Pool.Exec(ctx, `
		INSERT INTO revio_service_products (device_change_id, idx, product_id, rate, service_product_id, found_by)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (device_change_id, idx) DO NOTHING`,
		p.DeviceChangeID, p.Idx, p.ProductID, p.Rate, p.ServiceProductID, p.FoundBy)
	if err != nil {
		return fmt.Errorf("save Rev.io service product: %w", err)
	}
	return nil
}

// ActiveRevioServiceByICCID finds the newest Rev.io service of a device not
// yet disconnected that a bulk change of tenant created (used when the
// device is deactivated): another tenant's service of the same line is
// that tenant's customer's, in its Rev.io, and is never disconnected by
// this one's deactivation.
func (s *Store) ActiveRevioServiceByICCID(ctx context.Context, tenant, iccid string) (*RevioService, error) {
	return scanRevioService(s.Pool.QueryRow(ctx, `SELECT r.device_change_id, r.iccid, r.number, r.customer_id, r.service_id, r.found_by
		FROM revio_services r JOIN device_changes dc ON dc.id = r.device_change_id
			JOIN bulk_changes b ON b.id = dc.bulk_change_id
		WHERE r.iccid = $1 AND r.disconnected_at IS NULL AND b.tenant = $2
		ORDER BY r.created_at DESC LIMIT 1`, iccid, tenant))
}

// MarkRevioDisconnected records the disconnection of a service and its
// products.
func (s *Store) MarkRevioDisconnected(ctx context.Context, deviceChangeID int64) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE revio_service_products SET disconnected_at = coalesce(disconnected_at, now())
			WHERE device_change_id = $1`, deviceChangeID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE revio_services SET disconnected_at = coalesce(disconnected_at, now())
			WHERE device_change_id = $1`, deviceChangeID)
		return err
	})
}

// ErrBillingBusy is returned by LockBillingStep when another step of the
// same device change holds its lock.
var ErrBillingBusy = errors.New("another Rev.io step of this device change is running")

// LockBillingStep takes the lease of one device change's Rev.io step, for
// the length of the step: POST /v1/Services is not idempotent, so two steps
// of the same change (a billing retry started while another runs, an
// activity attempt overlapping the one it replaces) must not both search,
// find nothing and create. It does not wait: ErrBillingBusy while another
// step holds the lease, and the caller backs off.
//
// The lease is a token and an expiry on the device change's row, on the
// database clock, lasting until the step's deadline (ctx's) and a margin,
// or billingLeaseDefault without one. A lock held by an open transaction
// would keep a pool connection for the whole step, and steps running in
// greater number than the pool's connections would then wait for
// connections their own locks hold. A worker that dies leaves its lease
// until it expires: the next step waits that long, then searches Rev.io
// before any create, as every step does.
func (s *Store) LockBillingStep(ctx context.Context, deviceChangeID int64) (release func(), err error) {
	lease := billingLeaseDefault
	if d, ok := ctx.Deadline(); ok {
		lease = time.Until(d) + billingLeaseMargin
	}
	token := uuid.NewString()
	tag, err := s.Pool.Exec(ctx, `
		UPDATE device_changes
		SET billing_lease_token = $2,
		    billing_lease_until = clock_timestamp() + make_interval(secs => $3)
		WHERE id = $1 AND (billing_lease_until IS NULL OR billing_lease_until < clock_timestamp())`,
		deviceChangeID, token, lease.Seconds())
	if err != nil {
		return nil, fmt.Errorf("lock Rev.io step of device change %d: %w", deviceChangeID, err)
	}
	if tag.RowsAffected() == 0 {
		if _, err := s.GetDeviceChange(ctx, deviceChangeID); err != nil {
			return nil, fmt.Errorf("lock Rev.io step of device change %d: %w", deviceChangeID, err)
		}
		return nil, fmt.Errorf("device change %d: %w", deviceChangeID, ErrBillingBusy)
	}
	return func() {
		// Released even when the step's context has ended (the usual case
		// for a step that timed out); an unreleased lease expires.
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_, _ = s.Pool.Exec(c, `
			UPDATE device_changes SET billing_lease_token = NULL, billing_lease_until = NULL
			WHERE id = $1 AND billing_lease_token = $2`, deviceChangeID, token)
	}, nil
}

// Lease lengths of a Rev.io step: past its deadline by a margin (a step
// cut off at its deadline may still be finishing a call), or, for a caller
// without a deadline, long enough for a step's few calls.
const (
	billingLeaseMargin  = 30 * time.Second
	billingLeaseDefault = 15 * time.Minute
)
