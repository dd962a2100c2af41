package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/harness/stack"
	"github.com/iot-ops/tsbulk/workflows/api"
)

func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// sourceState names the source measured: the commit, and the files changed
// since (other work in the tree is part of what was measured).
func sourceState() string {
	head, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	st, _ := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output()
	n := len(strings.Fields(strings.ReplaceAll(string(st), "\n", " "))) / 2
	if n == 0 {
		return strings.TrimSpace(string(head))
	}
	return fmt.Sprintf("%s with %d changed files", strings.TrimSpace(string(head)), n)
}

// scratchDatabase creates the benchmark's database and returns its URL, its
// name and a function that drops it.
func scratchDatabase(ctx context.Context, adminURL string) (string, string, func(), error) {
	cfg, err := pgx.ParseConfig(adminURL)
	if err != nil {
		return "", "", nil, err
	}
	name := fmt.Sprintf("tsbulk_bench_%d", time.Now().UnixNano())
	if err := db.CreateDatabase(ctx, adminURL, name); err != nil {
		return "", "", nil, fmt.Errorf("%w; start PostgreSQL with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start", err)
	}
	url := fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, name)
	return url, name, func() { _ = db.DropDatabase(context.Background(), adminURL, name) }, nil
}

// benchOptions are the bulk change's settings: the stack's, with the
// benchmark's window, callbacks on and no billing or default site (the
// benchmark measures the state changes).
func benchOptions(s *stack.Stack, o options) api.Options {
	opts := s.Config.BulkChangeOptions()
	opts.CallbacksEnabled = true
	opts.Window = o.window
	opts.DefaultSite = ""
	opts.BillingEnabled = false
	opts.DisconnectBillingOnDeactivate = false
	return opts
}

// sortedKeys returns a map's keys in order.
func sortedKeys[K ~string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
