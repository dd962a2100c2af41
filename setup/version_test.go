package setup

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestVersionRequested(t *testing.T) {
	for args, want := range map[string]bool{"--version": true, "-version": true, "": false, "replay --version": false,
		"version": false} {
		if got := VersionRequested(strings.Fields(args)); got != want {
			t.Errorf("VersionRequested(%q) = %v, want %v", args, got, want)
		}
	}
}

// Asked for its version, a command prints one line, its name first;
// otherwise nothing, and it goes on.
func TestPrintVersion(t *testing.T) {
	var out bytes.Buffer
	if printVersion("worker", []string{"migrate", "--version"}, &out) || out.Len() != 0 {
		t.Fatalf("printVersion for migrate --version: printed %q", out.String())
	}
	if !printVersion("worker", []string{"--version"}, &out) {
		t.Fatal("printVersion for --version: not asked")
	}
	if want := "worker " + Version() + "\n"; out.String() != want {
		t.Errorf("printVersion printed %q, want %q", out.String(), want)
	}
}

// Built as make build builds it, every command prints the commit it was
// built from.
func TestEveryCommandPrintsItsVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: this test builds all eight commands (most of a minute); make test runs it")
	}
	const commit = "0123456789ab"
	dir := t.TempDir()
	cmds := []string{"worker", "starter", "callback-receiver", "harness/cmd/thingspace-simulator",
		"harness/cmd/revio-simulator", "harness/cmd/bench", "harness/cmd/chaos", "harness/cmd/demo"}
	args := []string{"build", "-buildvcs=false", "-ldflags", "-X github.com/iot-ops/tsbulk/setup.commit=" + commit,
		"-o", dir + "/"}
	for _, c := range cmds {
		args = append(args, "../"+c)
	}
	build := exec.Command("go", args...)
	build.Env = append(os.Environ(), "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	for _, c := range cmds {
		out, err := exec.Command(filepath.Join(dir, filepath.Base(c)), "--version").CombinedOutput()
		if err != nil {
			t.Errorf("%s --version: %v\n%s", c, err, out)
			continue
		}
		if !strings.Contains(string(out), "commit "+commit) || !strings.HasPrefix(string(out), filepath.Base(c)+" ") {
			t.Errorf("%s --version printed %q", c, out)
		}
	}
}
