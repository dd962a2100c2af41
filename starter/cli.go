package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"

	"go.temporal.io/sdk/client"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/setup"
)

type cli struct {
	cfg    *config.Config
	out    io.Writer
	errOut io.Writer
	store  *db.Store
	tc     client.Client
}

func (c *cli) close() {
	if c.tc != nil {
		c.tc.Close()
	}
	if c.store != nil {
		c.store.Close()
	}
}

func (c *cli) db(ctx context.Context) (*db.Store, error) {
	if c.store == nil {
		s, err := setup.Store(ctx, c.cfg)
		if err != nil {
			return nil, err
		}
		c.store = s
	}
	return c.store, nil
}

func (c *cli) temporal(ctx context.Context) (client.Client, error) {
	if c.tc == nil {
		quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
		tc, err := setup.Temporal(ctx, c.cfg, nil, quiet)
		if err != nil {
			return nil, err
		}
		c.tc = tc
	}
	return c.tc, nil
}

// bulkChange reads a bulk change, or says clearly that there is none.
func (c *cli) bulkChange(ctx context.Context, id string) (*db.BulkChange, error) {
	store, err := c.db(ctx)
	if err != nil {
		return nil, err
	}
	b, err := store.GetBulkChange(ctx, id)
	if errors.Is(err, db.ErrNotFound) {
		return nil, &exitError{1, fmt.Errorf("no bulk change %s", id)}
	}
	return b, err
}

func sortedKeys[K ~string](m map[K]int) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func bulkView(b *db.BulkChange) map[string]any {
	return map[string]any{
		"id":         b.ID,
		"status":     b.Status,
		"tenant":     b.Tenant,
		"account":    b.AccountName,
		"total":      b.Total,
		"processed":  b.Processed,
		"errors":     b.Errors,
		"error":      b.ErrorMessage,
		"createdAt":  b.CreatedAt,
		"finishedAt": b.FinishedAt,
		"workflowId": b.WorkflowID,
	}
}
