// Command callback-receiver serves the endpoint ThingSpace posts its
// CarrierService callbacks to, and manages the listener's registration.
//
//	callback-receiver [--config FILE]             serve callbacks
//	callback-receiver [--config FILE] register    register callbacks.public_url with ThingSpace
//	callback-receiver [--config FILE] list        show the account's registered listeners
//	callback-receiver [--config FILE] unregister  remove the CarrierService listener
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

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
		if err := cfg.ValidateRegistration(); err != nil && cmd == "register" {
			fail(2, err)
		}
		if err := manage(ctx, cfg, cmd); err != nil {
			fail(1, err)
		}
	default:
		fail(2, fmt.Errorf("unknown command %q (serve, register, list, unregister)", cmd))
	}
}

func manage(ctx context.Context, cfg *config.Config, cmd string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	tsCfg := process.ThingSpaceConfig(cfg)
	if cfg.Database.URL != "" {
		// The workers' credential latch: logging in here with credentials
		// they found refused would count towards the account's lock.
		store, err := setup.Store(ctx, cfg)
		if err != nil {
			return err
		}
		defer store.Close()
		tsCfg.Latches = store.CredentialLatches()
	}
	ts, err := thingspace.New(tsCfg)
	if err != nil {
		return err
	}
	account := cfg.ThingSpace.Account
	switch cmd {
	case "register":
		err = ts.RegisterCallback(ctx, account, thingspace.CallbackRegistration{
			Name: thingspace.CarrierServiceCallback, URL: cfg.Callbacks.PublicURL,
			Username: cfg.Callbacks.Username, Password: cfg.Callbacks.Password.Reveal(),
		})
		if err == nil {
			fmt.Printf(
				"registered %s listener %s for account %s\n",
				thingspace.CarrierServiceCallback,
				cfg.Callbacks.PublicURL,
				account,
			)
		}
		return err
	case "list":
		ls, err := ts.ListCallbacks(ctx, account)
		if err != nil {
			return err
		}
		for _, l := range ls {
			fmt.Printf("%s\t%s\t%s\tuser=%s\n", l.AccountName, l.ServiceName, l.URL, l.Username)
		}
		return nil
	default:
		err = ts.DeleteCallback(ctx, account, thingspace.CarrierServiceCallback)
		if err == nil {
			fmt.Printf("removed the %s listener of account %s\n", thingspace.CarrierServiceCallback, account)
		}
		return err
	}
}

func fail(code int, err error) {
	fmt.Fprintln(os.Stderr, "callback-receiver:", err)
	os.Exit(code)
}
