// Command starter submits bulk changes and reports on them.
//
//	starter [--config FILE] submit --file FILE [--operation OP] [--account NAME] [--idempotency-key KEY]
//	        [--dry-run] [--wait] [--json] [--callback-timeout D] [--no-callbacks] [--batch-size N]
//	starter [--config FILE] status ID [--json]
//	starter [--config FILE] results ID [--csv|--json]
//	starter [--config FILE] list
//	starter [--config FILE] billing-retry ID [--wait]
//	starter [--config FILE] resume-failed ID [--wait]
//	starter [--config FILE] pause|resume|cancel|approve|reject ID [--reason TEXT] [--as NAME]
//	starter [--config FILE] redrive ID [--codes CODE,...]
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

	"github.com/iot-ops/tsbulk/changefile"
	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/connect"
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
	case "pause", "resume", "cancel", "approve", "reject":
		err = c.operatorRequest(ctx, cmd, rest)
	case "redrive":
		err = c.redrive(ctx, rest)
	default:
		err = &exitError{2, fmt.Errorf("unknown command %q", cmd)}
	}
	return exitCode(err, stderr)
}

// commands lists the subcommands for the usage text.
var commands = [][2]string{
	{"submit --file FILE [...]", "validate a file, write the bulk change and start it (--dry-run: validate only)"},
	{"status ID", "live progress, waits and failures of a bulk change"},
	{"results ID [--csv|--json]", "one line per device change"},
	{"list", "recent bulk changes"},
	{"billing-retry ID", "run the owed Rev.io steps again (failed, or stranded)"},
	{"resume-failed ID", "continue a bulk change whose workflow failed or was terminated"},
	{"pause ID [--reason R]", "send nothing new; changes already sent are still awaited"},
	{"resume ID [--reason R]", "carry on a paused bulk change"},
	{"cancel ID [--reason R]", "cancel what was not sent (CANCELLED); what was sent finishes"},
	{"approve ID [--as NAME]", "approve a bulk change awaiting approval (not your own)"},
	{"reject ID [--reason R]", "refuse a bulk change awaiting approval (it is cancelled)"},
	{"redrive ID [--codes C,...]", "a new bulk change of the failed device changes"},
}

func usage(w io.Writer, global *flag.FlagSet) {
	fmt.Fprintln(w, "usage: starter [--config FILE] COMMAND [flags]   (starter COMMAND --help for its flags)")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-28s %s\n", c[0], c[1])
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
	fmt.Fprintln(stderr, "starter:", connect.Explain(err))
	return 1
}
