package simulator

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStalledCreatesCounted: a chaos run reports how many creates answered
// after the client gave up, so the simulator counts them (in /admin/stats
// too), and only those.
func TestStalledCreatesCounted(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Faults.StallCreateService = 5 * time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(
		ctx,
		"POST",
		e.srv.URL+"/v1/Services",
		bytes.NewBufferString(`{"customer_id":1}`),
	)
	req.Header.Set("Authorization", goodBasic())
	req.Header.Set("Ocp-Apim-Subscription-Key", subKey)
	req.Header.Set("Content-Type", "application/json")
	_, err := http.DefaultClient.Do(req)
	require.Error(t, err, "the client gives up before the answer")

	e.sim.SetFaults(Faults{})
	e.createService(`{"customer_id":1}`)
	assert.Equal(t, 1, e.sim.Stats().StalledCreates)

	resp, err := http.Get(e.srv.URL + "/admin/stats")
	require.NoError(t, err)
	defer resp.Body.Close()
	var st Stats
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	assert.Equal(t, 1, st.StalledCreates)
	assert.Len(t, e.sim.Services(), 2)
}
