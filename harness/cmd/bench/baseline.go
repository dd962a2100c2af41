package main

import (
	"context"
	"fmt"
	"time"

	"github.com/iot-ops/tsbulk/harness/stack"
	"github.com/iot-ops/tsbulk/ratelimit"
	"github.com/iot-ops/tsbulk/thingspace"
)

type baselineResult struct {
	devices  int
	requests int
	failed   int
	wall     time.Duration
	// estimate is the baseline's time for every device of the run:
	// measured (full) or extrapolated from the sample (how says how).
	estimate time.Duration
	how      string
	err      error
}

// runBaseline changes the devices one after another with one request each,
// as the predecessor did, within the same limit (enforced by the same
// limiter, on its own account).
//
// A sample is extrapolated. Under a limit that binds (an hour's budget is
// spent faster than the hour: limit × the time of one request < 1 h), the
// requests of a long run do not all take the same time: the first `limit`
// go at the speed of ThingSpace's answers, then one more each time one
// leaves the rolling hour. A sample of a few hundred devices would never
// reach the limit, so it is measured in two parts: a tenth (at most 20) with
// the budget unused gives the time of a free request, the rest with the
// account's hour filled as a long run would have it (the ledger is given
// the hour's earlier requests, evenly spread) gives the time of a request
// at the limit. The estimate is min(n, limit) free requests plus the rest at
// the limit.
func runBaseline(ctx context.Context, s *stack.Stack, rows [][2]string, o options) baselineResult {
	c := s.Config.ThingSpace
	lim := &ratelimit.Limiter{Pool: s.Store.Pool, Rules: ratelimit.Rules(o.limit, time.Hour, 100), DefaultAccount: baselineAccount,
		MaxWait: 24 * time.Hour}
	ts, err := thingspace.New(thingspace.Config{BaseURL: c.BaseURL, ClientID: c.ClientID, ClientSecret: c.ClientSecret.Reveal(),
		Username: c.Username, Password: c.Password.Reveal(), AccountName: baselineAccount, Limiter: lim})
	if err != nil {
		return baselineResult{err: err}
	}
	res := baselineResult{devices: len(rows)}
	start := time.Now()
	if len(rows) >= o.devices {
		baselineRequests(ctx, ts, rows, &res)
		res.wall = time.Since(start)
		res.estimate, res.how = res.wall, "measured"
		return res
	}
	// The free part: every k-th row of the sample, so that it has the mix.
	k := max(1, min(len(rows)/10, 20))
	var free, rest [][2]string
	for i, r := range rows {
		if i%(len(rows)/k) == 0 && len(free) < k {
			free = append(free, r)
		} else {
			rest = append(rest, r)
		}
	}
	baselineRequests(ctx, ts, free, &res)
	tFree := time.Since(start) / time.Duration(len(free))
	pace := time.Duration(0)
	if o.limit > 0 {
		pace = time.Hour / time.Duration(o.limit)
	}
	if pace <= tFree || o.devices <= o.limit {
		// The limit never binds: every request takes the time of a free one.
		baselineRequests(ctx, ts, rest, &res)
		res.wall = time.Since(start)
		res.estimate = time.Duration(float64(res.wall) * float64(o.devices) / float64(len(rows)))
		res.how = fmt.Sprintf("extrapolated linearly from %d devices (%.2f s each; the limit of %d/h does not bind at that speed)",
			len(rows), res.wall.Seconds()/float64(len(rows)), o.limit)
		return res
	}
	if err := fillHour(ctx, s, o.limit-len(free)); err != nil {
		return baselineResult{err: err}
	}
	restStart := time.Now()
	baselineRequests(ctx, ts, rest, &res)
	res.wall = time.Since(start)
	tLimit := time.Since(restStart) / time.Duration(len(rest))
	res.estimate = time.Duration(min(o.devices, o.limit))*tFree + time.Duration(max(0, o.devices-o.limit))*tLimit
	res.how = fmt.Sprintf("extrapolated: the first %d requests at %.2f s (measured on %d with the budget unused), the other %d at %.2f s (measured on %d with the hour's budget in use)",
		min(o.devices, o.limit), tFree.Seconds(), len(free), max(0, o.devices-o.limit), tLimit.Seconds(), len(rest))
	return res
}

func baselineRequests(ctx context.Context, ts *thingspace.Client, rows [][2]string, res *baselineResult) {
	for _, r := range rows {
		ref := []thingspace.DeviceRef{thingspace.ICCIDRef(r[0], "")}
		var err error
		switch r[1] {
		case "activate":
			_, err = ts.Activate(ctx, thingspace.ActivateRequest{Devices: ref, ServicePlan: "m2m_4G", MdnZipCode: "98801",
				SkuNumber: benchSKU})
		case "suspend":
			_, err = ts.Suspend(ctx, thingspace.ActionRequest{Devices: ref})
		case "restore":
			_, err = ts.Restore(ctx, thingspace.ActionRequest{Devices: ref})
		case "deactivate":
			_, err = ts.Deactivate(ctx, thingspace.DeactivateRequest{Devices: ref, ReasonCode: "FF",
				DeleteAfterDeactivation: true}) // as the predecessor did
		case "inventory":
			_, err = ts.AddDevices(ctx, thingspace.AddRequest{DevicesToAdd: ref})
		}
		res.requests++
		if err != nil {
			res.failed++
		}
	}
}

// fillHour records n earlier requests of the baseline's account, evenly
// spread over the last hour, as a run that had been going at the limit for
// an hour would have them: from then on each request waits for the oldest
// to leave the window, the limit's steady pace.
func fillHour(ctx context.Context, s *stack.Stack, n int) error {
	return s.Store.RecordEarlierRequests(ctx, baselineAccount, n)
}
