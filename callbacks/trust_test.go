package callbacks

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/metrics"
)

// counted is the callbacks metric's count of a result.
func counted(t *testing.T, m *metrics.Metrics, result string) float64 {
	t.Helper()
	var v dto.Metric
	require.NoError(t, m.Callbacks.WithLabelValues(result).Write(&v))
	return v.GetCounter().GetValue()
}

// countingBody records whether the handler read the body.
type countingBody struct {
	r    *strings.Reader
	read atomic.Bool
}

func (b *countingBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.r.Read(p)
}

func (b *countingBody) Close() error { return nil }

// Only the allowed networks may post callbacks, and X-Forwarded-For is
// believed only from a trusted proxy, right-most untrusted address first:
// a client cannot name itself allowed by writing the header, nor by
// prepending an allowed address to what the proxy appends. A refused
// request's body is not read.
func TestCallbackSourceAllowList(t *testing.T) {
	r, sig, st := newReceiver(t)
	inFlight(t, st)
	r.Metrics = metrics.New()
	r.AllowedSources = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")}
	r.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	good := callback("listener", "s3cret-listener", req1, "Success", "")

	for _, tc := range []struct {
		name, peer string
		xff        []string
		want       int
	}{
		{"allowed peer", "192.0.2.9:4000", nil, http.StatusOK},
		{"allowed IPv6 peer", "[2001:db8::7]:4000", nil, http.StatusOK},
		{"IPv4-mapped allowed peer", "[::ffff:192.0.2.9]:4000", nil, http.StatusOK},
		{"other peer", "198.51.100.7:4000", nil, http.StatusForbidden},
		{"other peer naming an allowed source", "198.51.100.7:4000", []string{"192.0.2.9"}, http.StatusForbidden},
		{"trusted proxy for an allowed source", "10.1.2.3:4000", []string{"192.0.2.9"}, http.StatusOK},
		{"trusted proxies for an allowed source", "10.1.2.3:4000", []string{"198.51.100.7, 192.0.2.9", "10.0.0.5"},
			http.StatusOK},
		{"allowed source prepended by the client", "10.1.2.3:4000", []string{"192.0.2.9, 198.51.100.7"},
			http.StatusForbidden},
		{"trusted proxy for another source", "10.1.2.3:4000", []string{"198.51.100.7"}, http.StatusForbidden},
		{"trusted proxy, unreadable header", "10.1.2.3:4000", []string{"192.0.2.9, not-an-address"},
			http.StatusForbidden},
		{"trusted proxy itself, not allowed", "10.1.2.3:4000", nil, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := &countingBody{r: strings.NewReader(good)}
			req := httptest.NewRequest(http.MethodPost, "/thingspace/callbacks", body)
			req.RemoteAddr = tc.peer
			for _, v := range tc.xff {
				req.Header.Add("X-Forwarded-For", v)
			}
			w := httptest.NewRecorder()
			r.Handler().ServeHTTP(w, req)
			require.Equal(t, tc.want, w.Code)
			if tc.want == http.StatusForbidden {
				require.False(t, body.read.Load(), "a refused source's body is not read")
			}
		})
	}
	require.Equal(t, 6.0, counted(t, r.Metrics, "forbidden"))
	require.Len(t, sig.signals, 5, "the allowed ones were handled")
}

// The credentials are checked before the body is parsed beyond them: a
// body with wrong credentials is refused 401 whatever the rest holds, even
// a rest the full parse refuses.
func TestWrongCredentialsRefusedBeforeTheFullParse(t *testing.T) {
	r, sig, st := newReceiver(t)
	inFlight(t, st)
	deep := strings.Repeat("[", 5000) + strings.Repeat("]", 5000)
	r.MaxBodyBytes = 1 << 16
	for _, rest := range []string{
		`"deviceIds": 5`,
		`"deviceIds": ` + deep,
		`"callbackCount": {"a": [1, 2, 3]}`,
		`"requestId": ["not", "a", "string"]`,
	} {
		for _, creds := range []string{
			`"username": "listener", "password": "wrong"`,
			`"username": "someone", "password": "s3cret-listener"`,
			`"username": 7, "password": "s3cret-listener"`,
		} {
			body := `{` + creds + `, ` + rest + `}`
			require.Equal(t, http.StatusUnauthorized, post(r, body).Code, "%.80s", body)
		}
		// With the right credentials the same body is read, and refused.
		right := `{"username": "listener", "password": "s3cret-listener", ` + rest + `}`
		require.Equal(t, http.StatusBadRequest, post(r, right).Code, "%.80s", right)
	}
	require.Equal(t, http.StatusBadRequest, post(r, `{"username": "listener", "password": `).Code, "not JSON")
	require.Empty(t, sig.signals)
}

// blockingSignaler holds each signal until released.
type blockingSignaler struct {
	entered chan struct{}
	release chan struct{}
}

func (b *blockingSignaler) SignalWorkflow(ctx context.Context, _, _, _ string, _ any) error {
	b.entered <- struct{}{}
	select {
	case <-b.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Beyond callbacks.max_concurrent callbacks in hand, more are answered
// 503 with Retry-After: 1 (ThingSpace tries again) and counted as busy.
func TestCallbacksBeyondTheConcurrencyCapAreAnsweredBusy(t *testing.T) {
	r, _, st := newReceiver(t)
	inFlight(t, st)
	sig := &blockingSignaler{entered: make(chan struct{}, 4), release: make(chan struct{})}
	r.Temporal = sig
	r.Metrics = metrics.New()
	r.MaxConcurrent = 1
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()
	body := callback("listener", "s3cret-listener", req1, "Success", "")

	first := make(chan int, 1)
	go func() {
		resp, err := http.Post(srv.URL, "application/json", strings.NewReader(body))
		if err != nil {
			first <- 0
			return
		}
		_ = resp.Body.Close()
		first <- resp.StatusCode
	}()
	select {
	case <-sig.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the first callback did not reach its signal")
	}

	resp, err := http.Post(srv.URL, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, "1", resp.Header.Get("Retry-After"))
	require.Equal(t, 1.0, counted(t, r.Metrics, "busy"))

	close(sig.release)
	require.Equal(t, http.StatusOK, <-first)
	require.Equal(t, http.StatusOK, postHTTP(t, srv.URL, body), "the slot is free again")
}

// While Temporal does not answer, the answer to ThingSpace does not wait
// for it callback after callback: after a failed signal the next callbacks
// are stored and answered without one, and Redeliver delivers them; once a
// redelivery succeeds, answers signal again.
func TestAnswersStopWaitingForTemporalAfterAFailedSignal(t *testing.T) {
	r, sig, st := newReceiver(t)
	bulkID := inFlight(t, st)
	sig.err = errors.New("temporal unavailable")
	ctx := context.Background()
	body := callback("listener", "s3cret-listener", req1, "Success", "")

	require.Equal(t, http.StatusOK, post(r, body).Code)
	require.Len(t, sig.signals, 1)
	require.Equal(t, http.StatusOK, post(r, body).Code)
	require.Equal(t, http.StatusOK, post(r, body).Code)
	require.Len(t, sig.signals, 1, "not tried again while Temporal is known down")

	sig.err = nil
	n, err := r.RedeliverOnce(ctx, 0)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	cbs, err := st.StoredCallbacks(ctx, mustChange(t, st, bulkID))
	require.NoError(t, err)
	require.Equal(t, "signalled", cbs[0].SignalResult)
	require.Equal(t, 3, cbs[0].Copies)

	require.Equal(t, http.StatusOK, post(r, body).Code)
	require.Len(t, sig.signals, 3, "Temporal answers again: the answer signals")
}
