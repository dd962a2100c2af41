package integration

import (
	"encoding/json"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/localstack"
	tssim "github.com/iot-ops/tsbulk/thingspace/simulator"
)

// TestSplitIsolatesRefusedDevices runs a bulk change of 200 suspends, of
// which three cannot be suspended (ThingSpace does not know one, one
// belongs to another account, one is already suspended), against a
// ThingSpace that refuses a whole multi-device request when any of its
// devices is refused. Only those three end in ERROR, with ThingSpace's
// codes; the 197 others are suspended, each by exactly one accepted
// request; and isolating the three took no more state-change requests than
// the bound of splitting in halves (1 + 2k⌈log2 n⌉).
func TestSplitIsolatesRefusedDevices(t *testing.T) {
	const other = "0000654321-00001"
	s := newStackWithWorker(t, localstack.Options{
		ThingSpace: tssim.Config{
			Accounts:           []string{tssim.DefaultAccount, other},
			RefuseWholeRequest: true,
			CompletionDelay:    300 * time.Millisecond, CompletionJitter: 500 * time.Millisecond,
			CallbackRetryInterval: 500 * time.Millisecond,
			Seed:                  11,
		},
		Config: func(c *config.Config) {
			c.Bulk.BatchSize = 200 // the whole file in one request
			c.Bulk.CallbackTimeout = 20 * time.Second
		},
	})

	const n = 200
	devs := tssim.GenerateDevices(n, "8914800901", "active")
	unknown, foreign, suspended := 17, 101, 180
	devs[foreign].Account = other
	devs[suspended].State = "suspend"
	bad := map[string]string{
		devs[unknown].ICCID:   "REQUEST_FAILED.DeviceNotFound",
		devs[foreign].ICCID:   "REQUEST_FAILED.DeviceNotFound",
		devs[suspended].ICCID: "INPUT_INVALID.DeviceState.Invalid",
	}
	var seeded []tssim.DeviceSeed
	rows := make([]row, n)
	for i, d := range devs {
		if i != unknown {
			seeded = append(seeded, d)
		}
		rows[i] = row{"iccid": d.ICCID, "operation": "suspend"}
	}
	require.NoError(t, s.TS.Seed(seeded...))
	file := writeCSV(t, []string{"iccid", "operation"}, rows)

	res := submit(t, s, file)
	require.Equal(t, 1, res.BulkChange.Batches, "one batch, one request to start with")
	out := waitBulk(t, s, res, 10*time.Minute)
	require.Equal(t, n, out.Total)
	require.Equal(t, len(bad), out.Errors, "only the refused devices fail")
	require.Equal(t, n-len(bad), out.Processed)

	results := results(t, s, res.ID)
	require.Len(t, results, n)
	expectFinal(t, results)
	st := simStats(t, s)
	for _, d := range devs {
		r := results[d.ICCID]
		if code, ok := bad[d.ICCID]; ok {
			require.EqualValues(t, change.Failed, r.Status, "refused device %s", d.ICCID)
			require.EqualValues(t, code, r.ErrorCode, "ThingSpace's code for %s", d.ICCID)
			require.Zero(t, st.AcceptedChanges[d.ICCID]["suspend"])
			continue
		}
		require.EqualValues(t, change.Processed, r.Status, "%s: %s %s", d.ICCID, r.ErrorCode, r.ErrorMessage)
		require.NotEmpty(t, r.RequestID, "%s holds the requestId of the sub-request that carried it", d.ICCID)
		require.Equal(t, tssim.StateSuspend, simState(t, s, d.ICCID).State)
		require.Equal(t, 1, st.AcceptedChanges[d.ICCID]["suspend"], "suspend requests accepted for %s", d.ICCID)
	}

	requests := st.Requests["POST /api/m2m/v1/devices/actions/suspend"]
	bound := 1 + 2*len(bad)*int(math.Ceil(math.Log2(n)))
	t.Logf(
		"FIGURES split: %d suspends, %d refused by ThingSpace: %d suspend requests (bound %d; unsplit: 1 request and %d devices in ERROR)",
		n,
		len(bad),
		requests,
		bound,
		n,
	)
	require.Greater(t, requests, 1, "the batch was split")
	require.LessOrEqual(t, requests, bound)
}

// simStats reads the ThingSpace simulator's counters over HTTP, as an
// operator of the demo would (GET /admin/stats).
func simStats(t *testing.T, s *localstack.Stack) tssim.Stats {
	t.Helper()
	resp, err := http.Get(s.Config.ThingSpace.BaseURL + "/admin/stats")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var st tssim.Stats
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	return st
}
