package thingspace

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// concurrently makes n calls at once and returns their errors, the ith
// call's at i.
func concurrently(n int, call func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = call(i) })
	}
	wg.Wait()
	return errs
}

// newPlainServer starts a server for h and returns its URL.
func newPlainServer(t *testing.T, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// listener is a callback listener that parses what ThingSpace posts.
type listener struct {
	url  string
	mu   sync.Mutex
	msgs []*CallbackMessage
	errs []error
}

func newListener(t *testing.T) *listener {
	l := &listener{}
	l.url = newPlainServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		m, err := ParseCallbackMessage(body)
		l.mu.Lock()
		if err != nil {
			l.errs = append(l.errs, err)
		} else {
			l.msgs = append(l.msgs, m)
		}
		l.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})) + "/thingspace/callbacks"
	return l
}

// await returns the callbacks of requestID once n have arrived.
func (l *listener) await(t *testing.T, requestID string, n int) []*CallbackMessage {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.mu.Lock()
		var got []*CallbackMessage
		for _, m := range l.msgs {
			if m.RequestID == requestID {
				got = append(got, m)
			}
		}
		require.Empty(t, l.errs)
		l.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited for %d callbacks of request %s, got %d", n, requestID, len(got))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
