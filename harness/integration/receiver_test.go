package integration

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/harness/nettest"
	"github.com/iot-ops/tsbulk/harness/stack"
	"github.com/iot-ops/tsbulk/process"
	"github.com/iot-ops/tsbulk/thingspace"
)

// The stand-alone receiver's job is storing callbacks, which needs
// PostgreSQL only: started while Temporal is unreachable, it is ready,
// stores and answers what ThingSpace sends, and once Temporal answers at
// its address the device's workflow gets the callback (signalled, not read
// at its callback timeout, which is far away).
func TestReceiverStartsAndStoresWhileTemporalIsDown(t *testing.T) {
	s := newStackWithWorker(t, stack.Options{
		ThingSpace: simConfig(300*time.Millisecond, 0, 18),
		Config: func(c *config.Config) {
			c.Bulk.CallbackTimeout = 10 * time.Minute
			c.Bulk.ConfirmDeadline = 20 * time.Minute
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The receiver's Temporal is at an address nothing listens on yet.
	cfg := *s.Config
	cfg.Temporal.Address = nettest.FreeAddr(t)
	cfg.Callbacks.Listen = nettest.FreeAddr(t)
	cfg.Callbacks.AdminListen = nettest.FreeAddr(t)
	cfg.Callbacks.MaxConcurrent = 8
	require.NoError(t, cfg.ValidateReceiver())
	done := make(chan error, 1)
	go func() {
		done <- process.RunReceiver(ctx, &cfg, s.Logger)
		close(done) // for the clean-up, once waitServing has read why it ended
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	admin := "http://" + cfg.Callbacks.AdminListen
	waitServing(t, done, admin+"/healthz")
	code, body := nettest.Get(t, admin+"/readyz")
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, "temporal is not reachable", "ready, and says what it waits for")

	ts, err := s.ThingSpaceClient(nil)
	require.NoError(t, err)
	require.NoError(t, ts.RegisterCallback(ctx, s.Config.ThingSpace.Account, thingspace.CallbackRegistration{
		Name: thingspace.CarrierServiceCallback, URL: "http://" + cfg.Callbacks.Listen + cfg.Callbacks.Path,
		Username: stack.CallbackUser, Password: stack.CallbackPassword,
	}))

	_, file := suspendFile(t, s, "8914800818", 1)
	res := submit(t, s, file)
	inBulk := `SELECT count(*) FROM callbacks c JOIN device_changes dc ON dc.id = c.device_change_id
		WHERE dc.bulk_change_id = $1`
	require.Eventually(t, func() bool { return countRows(t, s, inBulk, res.ID) == 1 },
		time.Minute, 200*time.Millisecond, "the callback is stored while Temporal is unreachable")
	require.Zero(t, simStats(t, s).CallbackAttemptsFailed, "and answered 2xx at the first attempt")
	require.Equal(t, 1, countRows(t, s, `SELECT count(*) FROM device_changes
		WHERE bulk_change_id = $1 AND status = 'SUBMITTED'`, res.ID), "its workflow does not know yet")

	// Temporal comes up at the receiver's address.
	proxyTCP(t, cfg.Temporal.Address, s.Config.Temporal.Address)

	require.Eventually(t, func() bool {
		return countRows(t, s, `SELECT count(*) FROM device_changes
			WHERE bulk_change_id = $1 AND confirmed_by = 'callback'`, res.ID) == 1
	}, 2*time.Minute, time.Second, "the stored callback is delivered to the waiting workflow")
	require.Equal(t, 1, countRows(t, s, inBulk+` AND c.signal_result = 'signalled'`, res.ID))
	code, body = nettest.Get(t, admin+"/readyz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ready\n", body)
	final := waitBulk(t, s, res, time.Minute)
	require.Equal(t, 1, final.Processed)
}

// waitServing waits until url answers, failing at once if the process
// serving it (done) ended.
func waitServing(t *testing.T, done <-chan error, url string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("the receiver ended: %v", err)
		default:
		}
		if resp, err := http.Get(url); err == nil {
			_ = resp.Body.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s does not answer", url)
}

// proxyTCP forwards connections to from (which must be free) to to, until
// the test ends: a server "coming up" at from.
func proxyTCP(t *testing.T, from, to string) {
	t.Helper()
	ln, err := net.Listen("tcp", from)
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	track := func(c net.Conn) {
		mu.Lock()
		defer mu.Unlock()
		conns = append(conns, c)
	}
	wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", to)
			if err != nil {
				_ = in.Close()
				continue
			}
			track(in)
			track(out)
			wg.Go(func() { _, _ = io.Copy(out, in); _ = out.Close() })
			wg.Go(func() { _, _ = io.Copy(in, out); _ = in.Close() })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}
