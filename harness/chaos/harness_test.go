package chaos

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	revsim "github.com/iot-ops/tsbulk/harness/reviosim"
	"github.com/iot-ops/tsbulk/harness/stack"
	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
)

// A killed process is not an unexpected exit; one that ends by itself is,
// so that the supervisor restarts it and the report counts it.
func TestProcKillAndUnexpectedExit(t *testing.T) {
	dir := t.TempDir()
	p := &stack.Proc{Name: "sleeper", Path: "/bin/sleep", Args: []string{"30"}, Log: filepath.Join(dir, "sleeper.log")}
	require.NoError(t, p.Start())
	require.True(t, p.Running())
	require.Error(t, p.Start(), "one process at a time")
	p.Kill()
	assert.False(t, p.Running())
	assert.Zero(t, p.UnexpectedExits())

	q := &stack.Proc{Name: "quitter", Path: "/bin/sh", Args: []string{"-c", "exit 3"}, Log: filepath.Join(dir, "quitter.log")}
	require.NoError(t, q.Start())
	require.Eventually(t, func() bool { return !q.Running() }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, 1, q.UnexpectedExits())
}

// A fault window stays open until the product's traffic has met it, then
// closes by itself; clear turns everything off.
func TestFaultWindowLastsUntilSeen(t *testing.T) {
	ts := tssim.New(tssim.Config{Seed: 1})
	t.Cleanup(ts.Close)
	tsSrv := httptest.NewServer(ts.Handler())
	t.Cleanup(tsSrv.Close)
	rv := revsim.New(revsim.Config{Login: "L", ClientCode: "C", Password: "p", SubscriptionKey: "k", Seed: 1})
	t.Cleanup(rv.Close)
	rvSrv := httptest.NewServer(rv.Handler())
	t.Cleanup(rvSrv.Close)
	f := &faultControl{
		ts: admin{
			base: tsSrv.URL,
			hc:   tsSrv.Client(),
		},
		revio: admin{
			base: rvSrv.URL,
			hc:   rvSrv.Client(),
		},
		stallFor: time.Second,
		base:     tssim.Faults{DropCallbackRate: 0.5},
	}
	ctx := context.Background()

	require.NoError(t, f.window(ctx, Revio429, 20*time.Millisecond))
	time.Sleep(300 * time.Millisecond)
	assert.InDelta(t, revioThrottleRate, rv.CurrentFaults().RateLimitRate, 1e-9, "no call met the window yet: still open")
	var got tssim.Faults
	require.NoError(t, f.ts.do(ctx, http.MethodGet, "/admin/faults", nil, &got))
	assert.InDelta(t, 0.5, got.DropCallbackRate, 1e-9, "ThingSpace keeps the whole-run faults")
	assert.Zero(t, got.ErrorRate, "and no window of its own")

	// Calls until one is refused; the window then closes.
	require.Eventually(t, func() bool {
		req, _ := http.NewRequest(http.MethodGet, rvSrv.URL+"/v1/Services?customer_id=1", nil)
		req.Header.Set("Ocp-Apim-Subscription-Key", "k")
		req.SetBasicAuth("L@C", "p")
		if resp, err := rvSrv.Client().Do(req); err == nil {
			resp.Body.Close()
		}
		return rv.Stats().RateLimited > 0
	}, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return rv.CurrentFaults().RateLimitRate == 0 }, 10*time.Second, 50*time.Millisecond,
		"the window closes once the fault was seen")

	require.NoError(t, f.window(ctx, TS5xx, time.Hour))
	require.NoError(t, f.window(ctx, TSGatewayAfterApply, time.Hour))
	require.NoError(t, f.window(ctx, RevioLateCreates, time.Hour))
	assert.Equal(t, revioLateCreate, rv.CurrentFaults().StallCreateService)
	require.NoError(t, f.ts.do(ctx, http.MethodGet, "/admin/faults", nil, &got))
	assert.InDelta(t, tsGatewayRate, got.GatewayAfterApplyRate, 1e-9, "sent through the simulator's own Faults")
	require.NoError(t, f.clear(ctx))
	assert.Zero(t, rv.CurrentFaults().StallCreateService)
	require.NoError(t, f.ts.do(ctx, http.MethodGet, "/admin/faults", nil, &got))
	assert.Zero(t, got.ErrorRate)
	assert.Zero(t, got.GatewayAfterApplyRate)
	assert.Zero(t, got.DropCallbackRate, "clear also ends the whole-run callback faults")
}
