package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/submission"
)

// command describes a subcommand. The dispatcher parses its flags, reads
// the bulk change id and opens what needs asks for before calling run, so
// a subcommand's file holds only what the subcommand does.
type command struct {
	name  string // as typed; the operator requests' Update name too
	usage string // its line in starter's usage text
	about string
	needs int
	// flags declares the command's flags on fs, into o. A command without
	// flags and without an id (list) ignores its arguments.
	flags func(fs *flag.FlagSet, o *options, cfg *config.Config)
	run   func(c *cli, ctx context.Context, t *target) error
}

// What a subcommand needs before it acts.
const (
	needID         = 1 << iota // the bulk change id, before or after the flags
	needBulkChange             // read the bulk change (opens the store; implies needID): an unknown id is exit status 1
	needTemporal               // connect to Temporal
)

// options are the subcommands' flags. Each command declares only those it
// takes; the others keep their zero values.
type options struct {
	asJSON bool   // --json
	wait   bool   // --wait
	as     string // --as: who submits or asks
	reason string // --reason of an operator request
	asCSV  bool   // --csv of results
	codes  string // --codes of redrive
	// tenant (--tenant): the tenant a submission is for, a list is of, or
	// the bulk change must belong to ("" = the default tenant for submit,
	// any tenant otherwise).
	tenant string

	// submit
	file           string
	operation      string
	account        string
	idempotencyKey string
	dryRun         bool
	batchSize      int
	callbackWait   time.Duration
	noCallbacks    bool
	defaultSite    optionalString
	notBefore      string
}

// optionalString is a flag whose default depends on another flag (the
// tenant's): set tells whether it was given.
type optionalString struct {
	value string
	set   bool
}

func (o *optionalString) String() string { return o.value }

func (o *optionalString) Set(s string) error {
	o.value, o.set = s, true
	return nil
}

// target is what a subcommand runs with: its flags, and what its command
// asked to have opened.
type target struct {
	options
	name  string         // the subcommand as typed
	id    string         // with needID or needBulkChange
	b     *db.BulkChange // with needBulkChange
	store *db.Store      // with needBulkChange
	tc    client.Client  // with needTemporal
}

// commands are the subcommands, in the order of the usage text.
var commands = []command{
	{
		name:  "submit",
		usage: "submit --file FILE [...]",
		about: "validate a file, write the bulk change and start it (--dry-run: validate only)",
		flags: submitFlags,
		run:   (*cli).submit,
	},
	{
		name:  "status",
		usage: "status ID",
		about: "live progress, waits and failures of a bulk change",
		needs: needBulkChange | needTemporal,
		flags: func(fs *flag.FlagSet, o *options, _ *config.Config) {
			fs.BoolVar(&o.asJSON, "json", false, "print JSON")
			tenantFlag(fs, o)
		},
		run: (*cli).status,
	},
	{
		name:  "results",
		usage: "results ID [--csv|--json]",
		about: "one line per device change",
		needs: needBulkChange,
		flags: func(fs *flag.FlagSet, o *options, _ *config.Config) {
			fs.BoolVar(&o.asCSV, "csv", false, "print CSV")
			fs.BoolVar(&o.asJSON, "json", false, "print JSON")
			tenantFlag(fs, o)
		},
		run: (*cli).results,
	},
	{
		name:  "list",
		usage: "list [--tenant T]",
		about: "recent bulk changes (of one tenant)",
		flags: func(fs *flag.FlagSet, o *options, _ *config.Config) {
			fs.StringVar(&o.tenant, "tenant", "", "only this tenant's bulk changes (default: every tenant's)")
		},
		run: (*cli).list,
	},
	{
		name:  "audit",
		usage: "audit ID [--json]",
		about: "the audit log of a bulk change: operators' requests, ThingSpace and Rev.io exchanges",
		needs: needBulkChange,
		flags: func(fs *flag.FlagSet, o *options, _ *config.Config) {
			fs.BoolVar(&o.asJSON, "json", false, "print JSON")
			tenantFlag(fs, o)
		},
		run: (*cli).audit,
	},
	{
		name:  "tenants",
		usage: "tenants [--json]",
		about: "the configured tenants, without their secrets",
		flags: func(fs *flag.FlagSet, o *options, _ *config.Config) {
			fs.BoolVar(&o.asJSON, "json", false, "print JSON")
		},
		run: (*cli).tenants,
	},
	{
		name:  "billing-retry",
		usage: "billing-retry ID",
		about: "run the owed Rev.io steps again (failed, or stranded)",
		needs: needID | needTemporal,
		flags: func(fs *flag.FlagSet, o *options, _ *config.Config) {
			fs.BoolVar(&o.wait, "wait", false, "wait for the retry to end")
			tenantFlag(fs, o)
		},
		run: (*cli).billingRetry,
	},
	{
		name:  "resume-failed",
		usage: "resume-failed ID",
		about: "continue a bulk change whose workflow failed or was terminated",
		// Temporal only once the bulk change is known to be unfinished.
		needs: needBulkChange,
		flags: func(fs *flag.FlagSet, o *options, _ *config.Config) {
			fs.BoolVar(&o.wait, "wait", false, "show live progress until the bulk change ends")
			tenantFlag(fs, o)
		},
		run: (*cli).resumeFailed,
	},
	operatorCommand("pause", "pause ID [--reason R]", "send nothing new; changes already sent are still awaited"),
	operatorCommand("resume", "resume ID [--reason R]", "carry on a paused bulk change"),
	operatorCommand("cancel", "cancel ID [--reason R]", "cancel what was not sent (CANCELLED); what was sent finishes"),
	operatorCommand("approve", "approve ID [--as NAME]", "approve a bulk change awaiting approval (not your own)"),
	operatorCommand("reject", "reject ID [--reason R]", "refuse a bulk change awaiting approval (it is cancelled)"),
	{
		name:  "redrive",
		usage: "redrive ID [--codes C,...]",
		about: "a new bulk change of the failed device changes",
		needs: needBulkChange | needTemporal,
		flags: func(fs *flag.FlagSet, o *options, _ *config.Config) {
			fs.StringVar(&o.codes, "codes", "", "only device changes that failed with these codes (comma-separated)")
			fs.StringVar(&o.as, "as", operator(), "who submits the re-drive (default: the OS user)")
			fs.BoolVar(&o.asJSON, "json", false, "print JSON")
			tenantFlag(fs, o)
		},
		run: (*cli).redrive,
	},
	{
		name:  "credentials-reset",
		usage: "credentials-reset [--tenant ID] [--reason]",
		about: "let the workers try ThingSpace credentials again after a refusal (once corrected)",
		flags: func(fs *flag.FlagSet, o *options, _ *config.Config) {
			fs.StringVar(&o.reason, "reason", "", "why (recorded in the audit log)")
			fs.StringVar(&o.as, "as", operator(), "who asks (default: the OS user)")
			fs.StringVar(&o.tenant, "tenant", "", "only this tenant's credentials (default: every tenant's)")
		},
		run: (*cli).credentialsReset,
	},
}

// operatorCommand is an operator's request, sent to the bulk change's
// workflow as the Update of the same name.
func operatorCommand(name, usage, about string) command {
	return command{
		name:  name,
		usage: usage,
		about: about,
		needs: needBulkChange | needTemporal,
		flags: func(fs *flag.FlagSet, o *options, _ *config.Config) {
			fs.StringVar(&o.reason, "reason", "", "why (recorded in the audit log)")
			fs.StringVar(&o.as, "as", operator(), "who asks (default: the OS user)")
			tenantFlag(fs, o)
		},
		run: (*cli).operatorRequest,
	}
}

// tenantFlag declares --tenant of a command acting on one bulk change:
// given, a bulk change of another tenant is refused and nothing is done.
func tenantFlag(fs *flag.FlagSet, o *options) {
	fs.StringVar(&o.tenant, "tenant", "",
		"act only if the bulk change belongs to this tenant (default: any tenant)")
}

func submitFlags(fs *flag.FlagSet, o *options, cfg *config.Config) {
	fs.StringVar(&o.file, "file", "", "CSV or JSON file of device changes (required)")
	fs.StringVar(&o.operation, "operation", "",
		"operation for rows without one: activate|suspend|restore|deactivate|inventory")
	fs.StringVar(&o.tenant, "tenant", "",
		"the tenant the bulk change is for (default: the default tenant, the top-level settings; "+
			"starter tenants lists them)")
	fs.StringVar(&o.account, "account", "",
		"ThingSpace account name, one of the tenant's (default: the tenant's first; thingspace.account for the default tenant)")
	fs.StringVar(&o.idempotencyKey, "idempotency-key", "",
		"submitting again with the same key returns the existing bulk change "+
			"(default: a hash of the account and the file's rows; a key used with another file is refused)")
	fs.BoolVar(&o.dryRun, "dry-run", false, "validate and show what would happen; write and start nothing")
	fs.BoolVar(&o.wait, "wait", false,
		"show live progress until the bulk change ends, then its results; exit 1 if any device failed")
	fs.BoolVar(&o.asJSON, "json", false, "print JSON")
	fs.IntVar(&o.batchSize, "batch-size", cfg.Bulk.BatchSize,
		"devices per ThingSpace request (capped at ThingSpace's maximum per operation)")
	fs.DurationVar(&o.callbackWait, "callback-timeout", cfg.Bulk.CallbackTimeout,
		"wait for a callback this long before polling")
	fs.BoolVar(&o.noCallbacks, "no-callbacks", !cfg.Callbacks.Enabled, "confirm by polling only")
	fs.Var(&o.defaultSite, "default-site",
		"site given at the end to devices left in inventory or pending (\"\" for none; "+
			"default: the tenant's default_site while its default_site_assignment is on)")
	fs.StringVar(&o.notBefore, "not-before", "",
		"send nothing before this time (RFC 3339 with its zone, e.g. 2026-12-01T22:00:00-05:00)")
	fs.StringVar(&o.as, "as", operator(),
		"who submits (default: the OS user); a four-eyes approval must come from someone else")
}

func lookup(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

// runCommand parses the command's flags and bulk change id, then reads the
// bulk change and connects to Temporal, in that order, as its needs ask,
// and runs it.
func (c *cli) runCommand(ctx context.Context, cmd *command, args []string) error {
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	fs.SetOutput(c.errOut)
	t := &target{name: cmd.name}
	if cmd.flags != nil {
		cmd.flags(fs, &t.options, c.cfg)
	}
	var err error
	switch {
	case cmd.needs&(needID|needBulkChange) != 0:
		t.id, err = parseID(fs, args)
	case cmd.flags != nil:
		if err = fs.Parse(args); err != nil {
			err = flagError(err)
		}
	}
	if err != nil {
		return err
	}
	if cmd.needs&needBulkChange != 0 {
		if t.b, err = c.bulkChange(ctx, t.id); err != nil {
			return err
		}
		t.store = c.store // opened by bulkChange
	}
	if err := c.checkTenant(ctx, cmd, t); err != nil {
		return err
	}
	if cmd.needs&needTemporal != 0 {
		if t.tc, err = c.temporal(ctx); err != nil {
			return err
		}
	}
	return cmd.run(c, ctx, t)
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

// checkTenant refuses, before anything is done, a bulk change of another
// tenant than --tenant's, and a --tenant that is not configured (a typo
// would otherwise list nothing, or refuse everything, without saying why).
func (c *cli) checkTenant(ctx context.Context, cmd *command, t *target) error {
	if t.tenant == "" {
		return nil
	}
	if _, err := c.cfg.Tenant(t.tenant); err != nil {
		return &exitError{2, fmt.Errorf("%s: --tenant: %w", cmd.name, err)}
	}
	if cmd.needs&(needID|needBulkChange) == 0 {
		return nil
	}
	has := ""
	if t.b != nil {
		has = t.b.Tenant
	} else {
		store, err := c.db(ctx)
		if err != nil {
			return err
		}
		has, err = store.BulkChangeTenant(ctx, t.id)
		if errors.Is(err, db.ErrNotFound) {
			return &exitError{1, fmt.Errorf("no bulk change %s", t.id)}
		}
		if err != nil {
			return err
		}
	}
	if err := submission.CheckTenant(t.id, has, t.tenant); err != nil {
		return &exitError{2, fmt.Errorf("%s: %w", cmd.name, err)}
	}
	return nil
}
