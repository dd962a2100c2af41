// Command callback-receiver serves the endpoint ThingSpace posts its
// CarrierService callbacks to, one per tenant, and manages the listeners'
// registration.
//
//	callback-receiver [--config FILE]                          serve callbacks
//	callback-receiver [--config FILE] register [--tenant ID]   register the tenant's callback URL with ThingSpace
//	callback-receiver [--config FILE] list [--tenant ID]       show the listeners of the tenant's accounts
//	callback-receiver [--config FILE] unregister [--tenant ID] remove the CarrierService listener of its accounts
//
// register registers, for each of the tenant's accounts and with the
// tenant's ThingSpace credentials, the tenant's callback URL
// (callbacks.CallbackURL: callbacks.public_url for the default tenant,
// callbacks.public_url + "/" + id for a named one, the receiver serving it
// at callbacks.path + "/" + id) with the tenant's listener credentials.
// Without --tenant, register, list and unregister act on every tenant.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/iot-ops/tsbulk/callbacks"
	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/process"
	"github.com/iot-ops/tsbulk/setup"
	"github.com/iot-ops/tsbulk/thingspace"
)

func main() {
	setup.ExitIfVersionRequested("callback-receiver")
	path := config.FileFlag(flag.CommandLine)
	flag.Parse()
	cfg, err := config.Load(*path)
	if err != nil {
		fail(2, err)
	}
	ctx, stop := setup.OnSignal()
	defer stop()
	switch cmd := flag.Arg(0); cmd {
	case "", "serve":
		if err := cfg.ValidateReceiver(); err != nil {
			fail(2, err)
		}
		if err := process.RunReceiver(ctx, cfg, cfg.Logger()); err != nil {
			fail(1, fmt.Errorf("%s", setup.Explain(err)))
		}
	case "register", "list", "unregister":
		tenants, err := selectTenants(cfg, cmd, flag.Args()[1:])
		if err != nil {
			fail(2, err)
		}
		if err := cfg.ValidateRegistration(); err != nil && cmd == "register" {
			fail(2, err)
		}
		if err := manage(ctx, cfg, cmd, tenants, os.Stdout); err != nil {
			fail(1, err)
		}
	default:
		fail(2, fmt.Errorf("unknown command %q (serve, register, list, unregister)", cmd))
	}
}

// selectTenants reads a management command's arguments: --tenant ID names
// one tenant, none means every tenant.
func selectTenants(cfg *config.Config, cmd string, args []string) ([]config.Tenant, error) {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	id := fs.String("tenant", "", "the tenant (default: every tenant)")
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("%s: %w (usage: %s [--tenant ID])", cmd, err, cmd)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%s: unexpected argument %q (usage: %s [--tenant ID])", cmd, fs.Arg(0), cmd)
	}
	if *id == "" {
		return cfg.AllTenants(), nil
	}
	t, err := cfg.Tenant(*id)
	if err != nil {
		return nil, fmt.Errorf("--tenant: %w", err)
	}
	return []config.Tenant{t}, nil
}

// manage runs cmd for each account of each tenant, with the tenant's
// ThingSpace credentials. A failure does not stop the other tenants and
// accounts: all failures are returned together.
func manage(ctx context.Context, cfg *config.Config, cmd string, tenants []config.Tenant, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var latches thingspace.Latches
	if cfg.Database.URL != "" {
		// The workers' credential latch: logging in here with credentials
		// they found refused would count towards the account's lock.
		store, err := setup.Store(ctx, cfg)
		if err != nil {
			return err
		}
		defer store.Close()
		latches = store.CredentialLatches()
	}
	var errs []error
	for _, t := range tenants {
		if err := manageTenant(ctx, cfg, cmd, t, latches, out); err != nil {
			errs = append(errs, fmt.Errorf("tenant %s: %w", t.ID, err))
		}
	}
	return errors.Join(errs...)
}

func manageTenant(
	ctx context.Context,
	cfg *config.Config,
	cmd string,
	t config.Tenant,
	latches thingspace.Latches,
	out io.Writer,
) error {
	if len(t.ThingSpace.Accounts) == 0 {
		return errors.New("no ThingSpace account configured (thingspace.account or thingspace.accounts)")
	}
	ts, err := thingspace.New(thingSpaceConfig(t, latches))
	if err != nil {
		return err
	}
	var reg thingspace.CallbackRegistration
	if cmd == "register" {
		u, err := callbacks.CallbackURL(cfg.Callbacks.PublicURL, t.ID)
		if err != nil {
			return err
		}
		if t.Callbacks.Username == "" || t.Callbacks.Password == "" {
			return errors.New("the tenant has no listener credentials (callbacks.username and callbacks.password)")
		}
		reg = thingspace.CallbackRegistration{Name: thingspace.CarrierServiceCallback, URL: u,
			Username: t.Callbacks.Username, Password: t.Callbacks.Password.Reveal()}
	}
	var errs []error
	for _, account := range t.ThingSpace.Accounts {
		if err := manageAccount(ctx, ts, cmd, t, account, reg, out); err != nil {
			errs = append(errs, fmt.Errorf("account %s: %w", account, err))
		}
	}
	return errors.Join(errs...)
}

func manageAccount(
	ctx context.Context,
	ts *thingspace.Client,
	cmd string,
	t config.Tenant,
	account string,
	reg thingspace.CallbackRegistration,
	out io.Writer,
) error {
	switch cmd {
	case "register":
		if err := ts.RegisterCallback(ctx, account, reg); err != nil {
			return err
		}
		_, err := fmt.Fprintf(out, "tenant %s: registered %s listener %s for account %s\n",
			t.ID, reg.Name, reg.URL, account)
		return err
	case "list":
		ls, err := ts.ListCallbacks(ctx, account)
		if err != nil {
			return err
		}
		for _, l := range ls {
			if _, err := fmt.Fprintf(out, "%s\t%s\t%s\t%s\tuser=%s\n", t.ID, l.AccountName, l.ServiceName, l.URL,
				l.Username); err != nil {
				return err
			}
		}
		return nil
	default:
		if err := ts.DeleteCallback(ctx, account, thingspace.CarrierServiceCallback); err != nil {
			return err
		}
		_, err := fmt.Fprintf(out, "tenant %s: removed the %s listener of account %s\n",
			t.ID, thingspace.CarrierServiceCallback, account)
		return err
	}
}

// thingSpaceConfig is the ThingSpace client of a tenant: its own
// credentials, its default account.
func thingSpaceConfig(t config.Tenant, latches thingspace.Latches) thingspace.Config {
	return thingspace.Config{
		BaseURL:      t.ThingSpace.BaseURL,
		ClientID:     t.ThingSpace.ClientID,
		ClientSecret: t.ThingSpace.ClientSecret.Reveal(),
		Username:     t.ThingSpace.Username,
		Password:     t.ThingSpace.Password.Reveal(),
		AccountName:  t.DefaultAccount(),
		HTTPTimeout:  t.ThingSpace.HTTPTimeout,
		Latches:      latches,
	}
}

func fail(code int, err error) {
	fmt.Fprintln(os.Stderr, "callback-receiver:", err)
	os.Exit(code)
}
