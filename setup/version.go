package setup

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

// commit is the build's git commit, set by `make build` with -ldflags
// (-X github.com/iot-ops/tsbulk/setup.commit=...) for builds made without
// Go's VCS stamping (-buildvcs=false, or a source tree without .git).
var commit string

// Version says which build this is: the module version and the commit it
// was built from, for `--version` and the start-up log, so that an operator
// can tell the builds of a rolling deploy apart.
func Version() string {
	version, rev, modified := "(devel)", commit, false
	if info, ok := debug.ReadBuildInfo(); ok {
		if info.Main.Version != "" {
			version = info.Main.Version
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if rev == "" {
		rev = "unknown"
	}
	if modified {
		rev += "+modified"
	}
	return fmt.Sprintf("%s (commit %s)", version, rev)
}

// VersionRequested reports whether a command's arguments ask for its
// version: --version or -version, as the first argument.
func VersionRequested(args []string) bool {
	return len(args) > 0 && (args[0] == "--version" || args[0] == "-version")
}

// ExitIfVersionRequested is the first line of every command's main: asked
// for its version, the command prints its name and Version and exits 0
// before it reads a flag or a file, so that `--version` answers even where
// the command's configuration would not load.
func ExitIfVersionRequested(command string) {
	if printVersion(command, os.Args[1:], os.Stdout) {
		os.Exit(0)
	}
}

// printVersion writes the version line to w when args ask for it, and says
// whether they did.
func printVersion(command string, args []string, w io.Writer) bool {
	if !VersionRequested(args) {
		return false
	}
	fmt.Fprintln(w, command, Version())
	return true
}
