package db

import (
	"context"
	"errors"
	"fmt"
	"time"

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
// yet disconnected (used when the device is deactivated).
func (s *Store) ActiveRevioServiceByICCID(ctx context.Context, iccid string) (*RevioService, error) {
	return scanRevioService(s.Pool.QueryRow(ctx, `SELECT `+revioServiceColumns+`
		FROM revio_services WHERE iccid = $1 AND disconnected_at IS NULL ORDER BY created_at DESC LIMIT 1`, iccid))
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

// LockBillingStep takes the lock of one device change's Rev.io step, for
// the length of the step: POST /v1/Services is not idempotent, so two steps
// of the same change (a billing retry started while another runs, an
// activity attempt overlapping the one it replaces) must not both search,
// find nothing and create. It does not wait: ErrBillingBusy when the lock
// is held, and the caller backs off.
//
// The lock is a transaction-scoped advisory lock on a transaction kept
// open until release is called: it blocks no row (the step updates its
// device change through other connections meanwhile), and PostgreSQL drops
// it with the session if the worker dies. A worker that is paused keeps it,
// which is what keeps a second step out.
func (s *Store) LockBillingStep(ctx context.Context, deviceChangeID int64) (release func(), err error) {
	tx, err := s.Pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("lock Rev.io step of device change %d: %w", deviceChangeID, err)
	}
	var ok bool
	if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock(hashtextextended('tsbulk billing step ' || $1::bigint, 0))`,
		deviceChangeID).Scan(&ok); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("lock Rev.io step of device change %d: %w", deviceChangeID, err)
	}
	if !ok {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("device change %d: %w", deviceChangeID, ErrBillingBusy)
	}
	return func() {
		// Released even when the step's context has ended (the usual case
		// for a step that timed out); a dead connection ends it anyway.
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = tx.Rollback(c)
	}, nil
}
