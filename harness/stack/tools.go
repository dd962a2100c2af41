package stack

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// TemporalCLI finds the Temporal CLI: $TSBULK_TEMPORAL_CLI, then PATH, then
// $GOPATH/bin (where `make tools` installs it).
func TemporalCLI() (string, error) {
	if p := os.Getenv("TSBULK_TEMPORAL_CLI"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("temporal"); err == nil {
		return p, nil
	}
	gopath, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "temporal")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New(
		"the Temporal CLI is not installed: run `make tools` (go install github.com/temporalio/cli/cmd/temporal@v1.5.1)",
	)
}

// WithBinaries builds the product's commands (package paths such as
// "../worker") into a temporary directory, for tests that run them as
// processes, calls run with that directory and removes it after. It returns
// run's exit status, or 1 when the build fails.
func WithBinaries(run func(dir string) int, pkgs ...string) int {
	dir, err := os.MkdirTemp("", "tsbulk-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	build := exec.Command("go", append([]string{"build", "-o", dir + "/"}, pkgs...)...)
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "build %s: %v\n", strings.Join(pkgs, " "), err)
		return 1
	}
	return run(dir)
}
