// Command starter submits bulk changes and reports on them.
//
//	starter [--config FILE] submit --file FILE [--operation OP] [--account NAME] [--idempotency-key KEY]
//	        [--dry-run] [--wait] [--json] [--callback-timeout D] [--no-callbacks] [--batch-size N]
//	starter [--config FILE] status ID [--json]
//	starter [--config FILE] results ID [--csv|--json]
//	starter [--config FILE] list
//	starter [--config FILE] billing-retry ID [--wait]
//	starter [--config FILE] resume-failed ID [--wait]
//
// Exit status: 0 success; 1 a device or the bulk change failed, or an
// operational error; 2 invalid input (every problem is listed with its row
// and field, and nothing is written).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/iot-ops/tsbulk/app"
	"github.com/iot-ops/tsbulk/bulkchange"
	"github.com/iot-ops/tsbulk/config"
)

// exitError carries an exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	global := flag.NewFlagSet("starter", flag.ContinueOnError)
	global.SetOutput(stderr)
	path := global.String("config", os.Getenv("TSBULK_CONFIG"), "YAML configuration file (environment variables TSBULK_* override it)")
	global.Usage = func() {
		fmt.Fprintln(stderr, "usage: starter [--config FILE] submit|status|results|list|billing-retry|resume-failed ...")
		global.PrintDefaults()
	}
	if err := global.Parse(args); err != nil {
		return 2
	}
	if global.NArg() == 0 {
		global.Usage()
		return 2
	}
	cfg, err := config.Load(*path)
	if err == nil {
		err = cfg.ValidateStarter()
	}
	if err != nil {
		fmt.Fprintln(stderr, "starter:", err)
		return 2
	}
	cmd, rest := global.Arg(0), global.Args()[1:]
	c := &cli{cfg: cfg, out: stdout, errOut: stderr}
	defer c.close()
	switch cmd {
	case "submit":
		err = c.submit(ctx, rest)
	case "status":
		err = c.status(ctx, rest)
	case "results":
		err = c.results(ctx, rest)
	case "list":
		err = c.list(ctx, rest)
	case "billing-retry":
		err = c.billingRetry(ctx, rest)
	case "resume-failed":
		err = c.resumeFailed(ctx, rest)
	default:
		err = &exitError{2, fmt.Errorf("unknown command %q", cmd)}
	}
	return exitCode(err, stderr)
}

func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ve *bulkchange.ValidationError
	if errors.As(err, &ve) {
		fmt.Fprintln(stderr, ve.Error())
		fmt.Fprintln(stderr, "nothing was submitted")
		return 2
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(stderr, "starter:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "starter:", app.Explain(err))
	return 1
}
