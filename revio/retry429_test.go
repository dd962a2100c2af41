package revio

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A 429 with a short Retry-After is the gateway's refusal while the rolling
// window frees a slot: the client waits it out and sends the call again,
// even a POST /v1/Services (nothing was created), instead of handing each
// one to the caller's few bounded attempts. The chaos suite's run without
// faults ended four billed activations in billing errors that way: two
// workers' pacing together over Rev.io's limit, 429 "try again in 1
// second", eight attempts used up in eight seconds.
func TestShort429RetriedEvenForPOST(t *testing.T) {
	var limited atomic.Int32
	limited.Store(1)
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if limited.Add(-1) >= 0 {
			w.Header().Set("Retry-After", "1")
			writeJSONBody(w, 429, `{"statusCode":429,"message":"Rate limit is exceeded. Try again in 1 seconds."}`)
			return
		}
		writeJSONBody(w, 201, `{"ok":true,"id":1001}`)
	})
	c := newTestClient(t, f.URL)
	id, err := c.CreateService(context.Background(), CreateServiceRequest{CustomerID: 1, ProviderID: 5})
	require.NoError(t, err)
	assert.Equal(t, int64(1001), id)
	require.Len(t, f.requests(), 2, "the refused create sent again once")
	assert.Equal(t, http.MethodPost, f.requests()[1].Method)

	// Still refused once the call has waited its patience out (2 s here:
	// two waits of 1 s): the 429 goes to the caller, with its Retry-After,
	// and the outcome is known (nothing was created).
	c.rateLimitPatience = 2 * time.Second
	limited.Store(100)
	_, err = c.CreateService(context.Background(), CreateServiceRequest{CustomerID: 1, ProviderID: 5})
	e := asError(t, err)
	assert.Equal(t, 429, e.HTTPStatus)
	assert.False(t, e.OutcomeUnknown())
	assert.True(t, e.Retryable())
	assert.Len(t, f.requests(), 2+3)

	// A wait that would outlast the caller's deadline is not started.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err = c.CreateService(ctx, CreateServiceRequest{CustomerID: 1, ProviderID: 5})
	e = asError(t, err)
	assert.Equal(t, 429, e.HTTPStatus)
	assert.Len(t, f.requests(), 2+3+1)
}
