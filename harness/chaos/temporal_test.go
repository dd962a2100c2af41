package chaos

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/harness/stack"
)

// A dev server that exits before serving (a port of its internal services
// taken at its start) is started again rather than waited for until the
// timeout, and given up after a few starts with the reason and its log.
func TestDevServerExitingAtStartIsRetried(t *testing.T) {
	port, err := stack.FreePort()
	require.NoError(t, err)
	log := filepath.Join(t.TempDir(), "temporal.log")
	d := &devServer{addr: "127.0.0.1:" + strconv.Itoa(port), proc: &stack.Proc{Name: "temporal-dev-server", Path: "/bin/sh",
		Args: []string{"-c", "exit 2"}, Log: log}}
	started := time.Now()
	err = d.start(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "exited at each of 3 starts")
	assert.Contains(t, err.Error(), log)
	assert.Equal(t, devServerStarts, d.proc.UnexpectedExits())
	assert.Less(t, time.Since(started), 30*time.Second, "no start waited out the 2-minute timeout")
}
