// Command starter submits bulk changes and reports on them.
//
//	starter [--config FILE] submit --file FILE [--tenant T] [--operation OP] [--account NAME] [--idempotency-key KEY]
//	        [--dry-run] [--wait] [--json] [--callback-timeout D] [--no-callbacks] [--batch-size N]
//	starter [--config FILE] status ID [--json] [--tenant T]
//	starter [--config FILE] results ID [--csv|--json] [--tenant T]
//	starter [--config FILE] list [--tenant T]
//	starter [--config FILE] audit ID [--json] [--tenant T]
//	starter [--config FILE] tenants [--json]
//	starter [--config FILE] billing-retry ID [--wait] [--tenant T]
//	starter [--config FILE] resume-failed ID [--wait] [--tenant T]
//	starter [--config FILE] pause|resume|cancel|approve|reject ID [--reason TEXT] [--as NAME] [--tenant T]
//	starter [--config FILE] redrive ID [--codes CODE,...] [--tenant T]
//
// --tenant on a command naming a bulk change refuses, doing nothing, a bulk
// change of another tenant.
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

	"github.com/iot-ops/tsbulk/changefile"
	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/setup"
)

// exitError carries an exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func main() {
	setup.ExitIfVersionRequested("starter")
	ctx, stop := setup.OnSignal()
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	global := flag.NewFlagSet("starter", flag.ContinueOnError)
	global.SetOutput(stderr)
	path := config.FileFlag(global)
	global.Usage = func() { usage(stderr, global) }
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if global.NArg() == 0 || global.Arg(0) == "help" {
		global.Usage()
		if global.NArg() == 0 {
			return 2
		}
		return 0
	}
	cmd, rest := global.Arg(0), global.Args()[1:]
	// Help needs no valid configuration (no database URL, say): the flags'
	// defaults come from whatever configuration there is.
	cfg, err := config.Load(*path)
	if err == nil && !wantsHelp(rest) {
		err = cfg.ValidateStarter()
	}
	if err != nil {
		fmt.Fprintln(stderr, "starter:", err)
		return 2
	}
	c := &cli{cfg: cfg, out: stdout, errOut: stderr}
	defer c.close()
	if command := lookup(cmd); command != nil {
		err = c.runCommand(ctx, command, rest)
	} else {
		err = &exitError{2, fmt.Errorf("unknown command %q", cmd)}
	}
	return exitCode(err, stderr)
}

func usage(w io.Writer, global *flag.FlagSet) {
	fmt.Fprintln(w, "usage: starter [--config FILE] COMMAND [flags]   (starter COMMAND --help for its flags)")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-28s %s\n", c.usage, c.about)
	}
	fmt.Fprintln(w, "\nglobal flags:")
	global.PrintDefaults()
}

func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ve *changefile.ValidationError
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
	fmt.Fprintln(stderr, "starter:", setup.Explain(err))
	return 1
}
