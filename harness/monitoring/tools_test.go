package monitoring

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	toolsOnce                sync.Once
	promtoolPath, amtoolPath string
	toolsErr                 error
	toolsOutput              string
)

// prometheusTools returns promtool and amtool at the releases
// docker-compose.yml runs, installed by scripts/ensure-prometheus-tools.sh
// (go install, pinned) when missing. The test is skipped, saying why, only
// when they cannot be installed (no module proxy reachable, no Go
// toolchain), or with -short when they are not installed yet.
func prometheusTools(t *testing.T) (promtool, amtool string) {
	t.Helper()
	toolsOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer cancel()
		var args []string
		if testing.Short() {
			// The unit tests alone (make test-unit) use the tools when
			// they are there, and do not spend minutes building them.
			args = append(args, "--check")
		}
		cmd := exec.CommandContext(ctx, filepath.Join(repoRoot(t), "scripts", "ensure-prometheus-tools.sh"), args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		toolsErr = cmd.Run()
		toolsOutput = stderr.String()
		paths := strings.Fields(stdout.String())
		if toolsErr == nil && len(paths) == 2 {
			promtoolPath, amtoolPath = paths[0], paths[1]
		} else if toolsErr == nil {
			toolsErr = errUnexpected(stdout.String())
		}
	})
	if toolsErr != nil && testing.Short() {
		t.Skipf("with -short promtool and amtool are used only when installed: %s", toolsOutput)
	}
	if toolsErr != nil {
		t.Skipf("promtool and amtool cannot be installed here, so the Prometheus and Alertmanager files are not "+
			"checked: scripts/ensure-prometheus-tools.sh failed (%v):\n%s", toolsErr, toolsOutput)
	}
	return promtoolPath, amtoolPath
}

type errUnexpected string

func (e errUnexpected) Error() string {
	return "unexpected output of scripts/ensure-prometheus-tools.sh: " + string(e)
}

// run runs a tool in the repository's root and returns its output; a
// failure fails the test with that output.
func run(t *testing.T, tool string, args ...string) string {
	t.Helper()
	cmd := exec.Command(tool, args...)
	cmd.Dir = repoRoot(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(tool), strings.Join(args, " "), err, out)
	}
	return string(out)
}
