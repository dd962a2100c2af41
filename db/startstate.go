package db

import (
	"context"
	"fmt"
)

// DeviceChangeStates reads a page of device changes and the
// callbacks stored for each (in the order received), in two queries: what
// the parent workflow hands each child it starts, instead of one read per
// child.
func (s *Store) DeviceChangeStates(
	ctx context.Context,
	ids []int64,
) (map[int64]*DeviceChange, map[int64][]Callback, error) {
	rows, err := s.Pool.Query(ctx, `SELECT `+changeColumns+` FROM device_changes dc
		JOIN bulk_changes b ON b.id = dc.bulk_change_id WHERE dc.id = ANY($1)`, ids)
	if err != nil {
		return nil, nil, fmt.Errorf("read device changes: %w", err)
	}
	list, err := scanRows(rows, scanChange)
	if err != nil {
		return nil, nil, fmt.Errorf("read device changes: %w", err)
	}
	changes := make(map[int64]*DeviceChange, len(ids))
	for _, d := range list {
		changes[d.ID] = d
	}
	rows, err = s.Pool.Query(ctx, `SELECT `+callbackColumns+` FROM callbacks c
		LEFT JOIN device_changes dc ON dc.id = c.device_change_id
		WHERE c.device_change_id = ANY($1) ORDER BY c.received_at, c.id`, ids)
	if err != nil {
		return nil, nil, fmt.Errorf("stored callbacks: %w", err)
	}
	stored, err := scanRows(rows, value(scanCallback))
	if err != nil {
		return nil, nil, fmt.Errorf("stored callbacks: %w", err)
	}
	callbacks := map[int64][]Callback{}
	for _, c := range stored {
		callbacks[*c.DeviceChangeID] = append(callbacks[*c.DeviceChangeID], c)
	}
	return changes, callbacks, nil
}
