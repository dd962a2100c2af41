package db

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/thingspace"
)

// Callback is a stored ThingSpace callback: the callback as received, and
// what storing it found.
type Callback struct {
	ID         int64
	ReceivedAt time.Time
	NewCallback
	Copies         int
	DeviceChangeID *int64
	BulkChangeID   string // of the matched device change
	SignalResult   string
}

// NewCallback is a callback as received, listener credentials already
// removed from Payload.
type NewCallback struct {
	// Tenant is the tenant whose endpoint received the callback, its
	// listener credentials checked ("" = the default tenant). Callbacks
	// stored before tenants have none: they are the default tenant's.
	Tenant        string
	RequestID     string
	ICCID         string
	Status        string
	FaultCode     string
	FaultString   string
	MSISDN        string
	CallbackCount int
	Payload       json.RawMessage
}

const callbackColumns = `c.id, c.received_at, coalesce(c.tenant, '` + change.DefaultTenant + `'), c.request_id, c.iccid, c.status, coalesce(c.fault_code, ''), coalesce(c.fault_string, ''),
	coalesce(c.msisdn, ''), coalesce(c.callback_count, 0), c.copies, c.payload, c.device_change_id,
	coalesce(dc.bulk_change_id::text, ''), coalesce(c.signal_result, '')`

func scanCallback(row pgx.Row) (*Callback, error) {
	var c Callback
	return scanned(&c, row.Scan(&c.ID, &c.ReceivedAt, &c.Tenant, &c.RequestID, &c.ICCID, &c.Status, &c.FaultCode, &c.FaultString,
		&c.MSISDN, &c.CallbackCount, &c.Copies, &c.Payload, &c.DeviceChangeID, &c.BulkChangeID, &c.SignalResult))
}

// ErrOtherTenant refuses a callback received at one tenant's endpoint for
// another tenant's request: its requestId is one of another tenant's
// requests, or the same callback (requestId and ICCID) is stored as another
// tenant's. Listener credentials are the tenant's, so such a callback comes
// from a misconfigured registration or from someone holding one tenant's
// credentials and trying to decide another tenant's changes.
var ErrOtherTenant = errors.New("callback of another tenant's request")

// StoreCallback stores a callback and matches it to its device change. A
// copy of a callback already stored (ThingSpace redelivers until it sees a
// 2xx) only bumps the copy counter; first reports whether this was the
// first copy.
//
// The requestId decides first: a callback of a request we know belongs to
// the device change that request carried (its batch or sub-request, or its
// PPU update), even when a later change of the same ICCID is in flight, so
// that an old request's redelivered callback never decides a newer change.
// Only a requestId no request of ours holds (ThingSpace's answer lost, or
// the callback outrunning the answer) falls back to the ICCID's change in
// flight whose own requestId is not known yet; a change whose requestId is
// known never takes a callback of another request.
//
// Tenants: a callback whose requestId is another tenant's request, or that
// is stored already as another tenant's, is refused with ErrOtherTenant,
// nothing stored; the fallback by ICCID considers the receiving tenant's
// bulk changes only.
func (s *Store) StoreCallback(ctx context.Context, n NewCallback) (cb *Callback, first bool, err error) {
	if n.Tenant == "" {
		n.Tenant = change.DefaultTenant
	}
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		// The requests and the device change (of this ICCID) that carry
		// the requestId: the ones the match below would take. A requestId
		// is ThingSpace's answer to one request of one account, which is
		// one tenant's; no other tenant's request gets it afterwards.
		var owner string
		err := tx.QueryRow(ctx, `
			SELECT b.tenant FROM thingspace_requests r JOIN bulk_changes b ON b.id = r.bulk_change_id
			WHERE r.request_id = $1 AND b.tenant <> $3
			UNION ALL
			SELECT b.tenant FROM device_changes dc JOIN bulk_changes b ON b.id = dc.bulk_change_id
			WHERE dc.iccid = $2 AND dc.request_id = $1 AND b.tenant <> $3
			LIMIT 1`, n.RequestID, n.ICCID, n.Tenant).Scan(&owner)
		switch {
		case err == nil:
			return fmt.Errorf("%w: request %s is tenant %s's, received at tenant %s's endpoint",
				ErrOtherTenant, n.RequestID, owner, n.Tenant)
		case !errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("store callback: tenant of request %s: %w", n.RequestID, err)
		}
		var id int64
		var inserted bool
		err = tx.QueryRow(
			ctx,
			`
			INSERT INTO callbacks (request_id, iccid, status, fault_code, fault_string, msisdn, callback_count, payload,
				tenant, device_change_id)
			VALUES ($1, $2, $3, nullif($4, ''), nullif($5, ''), nullif($6, ''), $7, $8, $9,
				coalesce(
					(SELECT dc.id FROM device_changes dc JOIN bulk_changes b ON b.id = dc.bulk_change_id AND b.tenant = $9
					 WHERE dc.iccid = $2 AND (dc.request_id = $1 OR EXISTS (
						SELECT 1 FROM thingspace_requests r WHERE r.request_id = $1
						AND (r.id = dc.request_pk OR (r.bulk_change_id = dc.bulk_change_id AND r.request_key = 'ppu:' || dc.id))))
					 ORDER BY dc.id DESC LIMIT 1),
					(SELECT dc.id FROM device_changes dc JOIN bulk_changes b ON b.id = dc.bulk_change_id AND b.tenant = $9
					 WHERE dc.iccid = $2 AND dc.status IN ('SUBMITTING', 'SUBMITTED')
					 AND dc.request_id IS NULL
					 AND NOT EXISTS (SELECT 1 FROM thingspace_requests r WHERE r.request_id = $1))))
			ON CONFLICT (request_id, iccid) DO UPDATE SET copies = callbacks.copies + 1, last_received_at = now()
				WHERE coalesce(callbacks.tenant, '`+change.DefaultTenant+`') = $9
			RETURNING id, (xmax = 0)`,
			n.RequestID,
			n.ICCID,
			n.Status,
			n.FaultCode,
			n.FaultString,
			n.MSISDN,
			n.CallbackCount,
			n.Payload,
			n.Tenant,
		).Scan(&id, &inserted)
		if errors.Is(err, pgx.ErrNoRows) {
			// The conflict's row is another tenant's: not updated, not
			// returned (and its matched change must not be signalled).
			return fmt.Errorf("%w: callback of request %s is stored as another tenant's, received at tenant %s's endpoint",
				ErrOtherTenant, n.RequestID, n.Tenant)
		}
		if err != nil {
			return fmt.Errorf("store callback: %w", err)
		}
		first = inserted
		if inserted {
			if err := scrubCallbackPPU(ctx, tx, id); err != nil {
				return err
			}
		}
		cb, err = scanCallback(tx.QueryRow(ctx, `SELECT `+callbackColumns+` FROM callbacks c
			LEFT JOIN device_changes dc ON dc.id = c.device_change_id WHERE c.id = $1`, id))
		return err
	})
	return cb, first, err
}

// scrubCallbackPPU replaces, in a callback's fault text and stored body,
// the PPU values of the device change it was matched to: ThingSpace may
// echo an address it refuses, and the text is signalled to the workflow
// (its history) and recorded as the change's error message.
func scrubCallbackPPU(ctx context.Context, tx pgx.Tx, callbackID int64) error {
	var faultString string
	var payload json.RawMessage
	var ppu []byte
	err := tx.QueryRow(ctx, `SELECT coalesce(c.fault_string, ''), c.payload, dc.ppu FROM callbacks c
		JOIN device_changes dc ON dc.id = c.device_change_id WHERE c.id = $1 AND dc.ppu IS NOT NULL`, callbackID).
		Scan(&faultString, &payload, &ppu)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the PPU of callback %d's device change: %w", callbackID, err)
	}
	values := ppuValues(ppu)
	if len(values) == 0 {
		return nil
	}
	scrubbed, err := scrubJSONStrings(payload, values)
	if err != nil {
		return fmt.Errorf("scrub callback %d: %w", callbackID, err)
	}
	_, err = tx.Exec(ctx, `UPDATE callbacks SET fault_string = nullif($2, ''), payload = $3 WHERE id = $1`,
		callbackID, thingspace.ScrubPersonal(faultString, values), scrubbed)
	return err
}

// ppuValues are the free-text values of a stored PPU (nil when unreadable:
// nothing to scrub is better than failing to store a callback).
func ppuValues(raw []byte) []string {
	var p thingspace.PlaceOfUse
	if len(raw) == 0 || json.Unmarshal(raw, &p) != nil {
		return nil
	}
	return thingspace.PersonalValues(&p)
}

// scrubJSONStrings replaces the values in every string of a JSON document.
func scrubJSONStrings(doc json.RawMessage, values []string) (json.RawMessage, error) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(scrubValue(v, values))
}

func scrubValue(v any, values []string) any {
	switch t := v.(type) {
	case string:
		return thingspace.ScrubPersonal(t, values)
	case []any:
		for i := range t {
			t[i] = scrubValue(t[i], values)
		}
	case map[string]any:
		for k, e := range t {
			t[k] = scrubValue(e, values)
		}
	}
	return v
}

// SetCallbackSignalResult records what happened when the device's workflow
// was signalled.
func (s *Store) SetCallbackSignalResult(ctx context.Context, id int64, result string) error {
	_, err := s.Pool.Exec(ctx, `UPDATE callbacks SET signal_result = $2 WHERE id = $1`, id, result)
	return err
}

// StoredCallbacks returns the callbacks matched to a device change, oldest
// first. A child workflow reads them when it starts waiting, so a callback
// that arrived before the workflow existed is not lost.
func (s *Store) StoredCallbacks(ctx context.Context, deviceChangeID int64) ([]Callback, error) {
	rows, err := s.Pool.Query(ctx, `SELECT `+callbackColumns+` FROM callbacks c
		LEFT JOIN device_changes dc ON dc.id = c.device_change_id
		WHERE c.device_change_id = $1 ORDER BY c.received_at, c.id`, deviceChangeID)
	if err != nil {
		return nil, fmt.Errorf("stored callbacks: %w", err)
	}
	return scanRows(rows, value(scanCallback))
}

// CallbackStats counts stored callbacks for a bulk change.
func (s *Store) CallbackStats(ctx context.Context, bulkID string) (stored, copies int, err error) {
	err = s.Pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(c.copies), 0) FROM callbacks c
		JOIN device_changes dc ON dc.id = c.device_change_id WHERE dc.bulk_change_id = $1`, bulkID).Scan(&stored, &copies)
	return stored, copies, err
}

// CallbacksToSignal returns callbacks of device changes still in flight
// whose signal failed (Temporal unreachable) or was never attempted (the
// receiver stopped between storing and signalling), last received more than
// settle ago (a request still being answered signals its own), oldest
// first, at most limit. The receiver delivers them again; a change that
// ended no longer needs its callback.
func (s *Store) CallbacksToSignal(ctx context.Context, settle time.Duration, limit int) ([]Callback, error) {
	rows, err := s.Pool.Query(ctx, `SELECT `+callbackColumns+` FROM device_changes dc
		JOIN callbacks c ON c.device_change_id = dc.id
		WHERE dc.status IN ('SUBMITTING', 'SUBMITTED')
		  AND (c.signal_result IS NULL OR c.signal_result = 'signal_failed')
		  AND c.last_received_at < now() - make_interval(secs => $1)
		ORDER BY c.received_at, c.id LIMIT $2`, settle.Seconds(), limit)
	if err != nil {
		return nil, fmt.Errorf("callbacks to signal: %w", err)
	}
	return scanRows(rows, value(scanCallback))
}
