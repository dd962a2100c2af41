package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"

	"go.temporal.io/sdk/client"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/connect"
	"github.com/iot-ops/tsbulk/db"
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
		s, err := connect.Store(ctx, c.cfg)
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
		tc, err := connect.Temporal(ctx, c.cfg, nil, quiet)
		if err != nil {
			return nil, err
		}
		c.tc = tc
	}
	return c.tc, nil
}

// flags is a subcommand's flag set, reporting its errors on errOut.
func (c *cli) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.errOut)
	return fs
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

// What a subcommand about one bulk change needs opened before it acts.
const (
	needBulkChange = 1 << iota // read the bulk change (opens the store): an unknown id is exit status 1
	needTemporal               // connect to Temporal
)

// target is the bulk change a subcommand acts on, with what it asked for.
type target struct {
	id    string
	b     *db.BulkChange // with needBulkChange
	store *db.Store      // with needBulkChange
	tc    client.Client  // with needTemporal
}

// open is a subcommand's preamble: it parses the flags declared on fs and
// the bulk change id, then reads the bulk change and connects to Temporal,
// in that order, as needs asks.
func (c *cli) open(ctx context.Context, fs *flag.FlagSet, args []string, needs int) (*target, error) {
	id, err := parseID(fs, args)
	if err != nil {
		return nil, err
	}
	t := &target{id: id}
	if needs&needBulkChange != 0 {
		if t.b, err = c.bulkChange(ctx, id); err != nil {
			return nil, err
		}
		t.store = c.store // opened by bulkChange
	}
	if needs&needTemporal != 0 {
		if t.tc, err = c.temporal(ctx); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// parseID parses flags that may come before or after the bulk change id.
func parseID(fs *flag.FlagSet, args []string) (string, error) {
	var id string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return "", flagError(err)
		}
		args = fs.Args()
		if len(args) > 0 {
			if id != "" {
				return "", &exitError{2, fmt.Errorf("%s: one bulk change id expected", fs.Name())}
			}
			id, args = args[0], args[1:]
		}
	}
	if id == "" {
		return "", &exitError{2, fmt.Errorf("%s: the bulk change id is required", fs.Name())}
	}
	return id, nil
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

// flagError is the exit of a subcommand whose flags did not parse (the flag
// package has said why): 0 after --help, 2 otherwise.
func flagError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return &exitError{0, errors.New("")}
	}
	return &exitError{2, errors.New("")}
}

// wantsHelp reports whether the arguments ask for help: then the command
// prints its usage without needing a valid configuration.
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "-h", "-help", "--help", "help":
			return true
		}
	}
	return false
}
