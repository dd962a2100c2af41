package process

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/db/dbtest"
	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
)

// thingspace.max_retries means what it says: 0 is no transport retry at
// all (the client alone would read 0 as its default of 2).
func TestMaxRetriesZeroMeansNoTransportRetry(t *testing.T) {
	for _, tc := range []struct{ setting, requests int }{{0, 1}, {2, 3}} {
		sim := tssim.New(tssim.Config{Seed: 1, Faults: tssim.Faults{ErrorRate: 1}})
		srv := httptest.NewServer(sim.Handler())
		cfg := &config.Config{Dev: true, ThingSpace: config.ThingSpace{
			BaseURL: srv.URL, ClientID: tssim.DefaultClientID, ClientSecret: tssim.DefaultClientSecret,
			Username: tssim.DefaultUsername, Password: tssim.DefaultPassword, Account: tssim.DefaultAccount,
			HTTPTimeout: 5 * time.Second, MaxRetries: tc.setting,
		}}
		acts, err := NewActivities(cfg, dbtest.New(t), nil, nil, slog.New(slog.DiscardHandler))
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		require.Error(t, acts.ThingSpace.CheckAuth(ctx), "every answer is a 5xx")
		cancel()
		total := 0
		for _, n := range sim.Stats(time.Hour).Requests {
			total += n
		}
		require.Equal(t, tc.requests, total, "max_retries %d", tc.setting)
		srv.Close()
		sim.Close()
	}
}
