package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/thingspace"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// RequestPollInput registers a device change for polling.
type RequestPollInput db.NewPollRequest

// RequestPoll hands a device change whose callback did not come in time to
// its account's poller, starting the poller if it is not running. Polling is
// per account, not per device, so that a mass callback outage costs a few
// batched status checks per cycle instead of one request per device.
func (a *Activities) RequestPoll(ctx context.Context, in RequestPollInput) error {
	if err := a.Store.AddPollRequest(ctx, db.NewPollRequest(in)); err != nil {
		return err
	}
	_, err := a.Temporal.SignalWithStartWorkflow(
		ctx,
		api.AccountPollerWorkflowID(in.AccountName),
		api.PollRequestedSignal,
		nil,
		client.StartWorkflowOptions{
			ID:                       api.AccountPollerWorkflowID(in.AccountName),
			TaskQueue:                api.TaskQueue,
			WorkflowIDConflictPolicy: enums.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		},
		api.AccountPollerWorkflowType,
		api.AccountPollerInput{AccountName: in.AccountName, Interval: in.Interval, SignalsPerRun: a.PollerSignalsPerRun},
	)
	if err != nil {
		return fmt.Errorf("wake the poller of %s: %w", in.AccountName, err)
	}
	return nil
}

// CancelPoll removes a device change from polling (its confirmation came).
func (a *Activities) CancelPoll(ctx context.Context, deviceChangeID int64) error {
	return a.Store.RemovePollRequest(ctx, deviceChangeID)
}

// PollAccountInput names the account to poll.
type PollAccountInput struct {
	AccountName string
}

// PollAccountResult counts one polling cycle.
type PollAccountResult struct {
	Waiting  int `json:"waiting"`  // device changes still registered after this cycle
	Checked  int `json:"checked"`  // device changes due and checked
	Resolved int `json:"resolved"` // confirmations delivered
}

// Polling limits.
const (
	// pollDueLimit bounds the device changes one cycle takes up (they are
	// held in memory); the oldest due come first, the others wait for the
	// next cycle.
	pollDueLimit = 20000
	// defaultPollMaxRequests is the request cap of a cycle when
	// PollMaxRequests is not set (worker.poll_max_requests).
	defaultPollMaxRequests = 20
)

// PollAccount checks at ThingSpace the account's device changes that are
// due, and signals each one whose device reached a final state to its
// workflow, through the same signal as a callback. A device still pending
// is checked again later, with a doubling wait.
//
// A cycle costs at most PollMaxRequests ThingSpace requests, counted across
// the retries of the cycle. Few devices due (PollBatchThreshold) are looked
// up one request each; more are found in the account's device list, read
// page by page from where the last page read ended (a cursor kept per
// account in PostgreSQL and saved after every page) and only until every
// due device has been seen: the cost follows the devices waiting, not the
// size of the account. Devices not reached when the cap is spent stay due
// for the next cycle, which resumes from the cursor; a retried cycle (a
// limiter wait, a 5xx) resumes there too. A cycle that reaches the end of
// the list, or has seen every due device, puts the cursor back at the
// start.
func (a *Activities) PollAccount(ctx context.Context, in PollAccountInput) (*PollAccountResult, error) {
	ctx = forAccount(ctx, in.AccountName)
	due, total, err := a.Store.DuePolls(ctx, in.AccountName, pollDueLimit)
	if err != nil {
		return nil, fmt.Errorf("due polls of %s: %w", in.AccountName, err)
	}
	res := &PollAccountResult{Waiting: total}
	if len(due) == 0 {
		return res, nil
	}
	// The account's tenant: a poller works for an account, whichever bulk
	// changes its devices belong to (all of the same tenant). Only when
	// there is something to check: a poller with nothing left ends, even
	// for an account no tenant lists any more.
	t, err := a.accountTenant(ctx, in.AccountName)
	if err != nil {
		return nil, err
	}
	pc, err := a.Store.BeginPollCycle(ctx, in.AccountName, pollCycleKey(ctx))
	if err != nil {
		return nil, err
	}
	c := &pollCycle{a: a, ts: t.ThingSpace, account: in.AccountName, res: res, used: pc.CycleRequests,
		max: a.PollMaxRequests}
	if c.max <= 0 {
		c.max = defaultPollMaxRequests
	}
	threshold := a.PollBatchThreshold
	if threshold <= 0 {
		threshold = 20
	}
	if len(due) <= threshold {
		err = c.lookUp(ctx, due)
	} else {
		err = c.list(ctx, due, pc)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// pollCycleKey names the polling cycle the activity runs: the retries of
// one activity share it (they share its request cap), the next cycle has
// another.
func pollCycleKey(ctx context.Context) string {
	if !activity.IsActivity(ctx) {
		return ""
	}
	info := activity.GetInfo(ctx)
	return info.WorkflowExecution.ID + "/" + info.WorkflowExecution.RunID + "/" + info.ActivityID
}

// pollCycle is one polling cycle of an account.
type pollCycle struct {
	a *Activities
	// ts is the client of the account's tenant.
	ts      *thingspace.Client
	account string
	res     *PollAccountResult
	// used counts the cycle's ThingSpace requests, max caps them.
	used, max int
}

// spend takes one request from the cycle's budget, if any is left.
func (c *pollCycle) spend() bool {
	if c.used >= c.max {
		return false
	}
	c.used++
	return true
}

// refund gives a request back when the client says it never left (the
// limiter refused it).
func (c *pollCycle) refund(err error) {
	if e, ok := thingspace.AsError(err); ok && !e.Sent && e.HTTPStatus == 0 {
		c.used--
	}
}

// lookUp checks devices one request each, oldest due first, while the
// budget lasts; the others stay due.
func (c *pollCycle) lookUp(ctx context.Context, due []db.PollRequest) error {
	for _, p := range due {
		if !c.spend() {
			return nil
		}
		d, err := getDevice(ctx, c.ts, c.account, p.ICCID)
		found := err == nil
		if thingspace.KindOf(err) == thingspace.KindDeviceNotFound {
			err = nil
		}
		if err != nil {
			c.refund(err)
		}
		if serr := c.a.Store.SavePollRequests(ctx, c.account, c.used); serr != nil {
			return serr
		}
		if err != nil {
			return thingSpaceError("poll "+c.account, err)
		}
		var dev thingspace.Device
		if found {
			dev = *d
		}
		if err := c.settle(ctx, p, dev, found); err != nil {
			return err
		}
	}
	return nil
}

// list finds the due devices in the account's device list, from the saved
// cursor, page by page, stopping as soon as every one has been seen or the
// budget is spent, and saving the cursor after each page.
//
// A cycle that started in the middle of the list and reaches its end
// carries on from the start (a device due in the part before its cursor
// would otherwise wait a whole cycle), up to where it started. A due device
// absent from every page of a whole pass over the list is not in the
// account: when the pass was read within this cycle that is certain, and
// the device gets the same "not found" verdict as a failed lookup; when the
// pass spanned cycles, the device may have become due after its page was
// read, so it is looked up on its own instead.
func (c *pollCycle) list(ctx context.Context, due []db.PollRequest, pc *db.PollCursor) error {
	unseen := make(map[string]db.PollRequest, len(due))
	for _, p := range due {
		unseen[p.ICCID] = p
	}
	start := startOfList()
	if len(pc.Cursor) > 0 {
		var saved thingspace.ListCursor
		if err := json.Unmarshal(pc.Cursor, &saved); err == nil && saved.LargestDeviceIDSeen == nil {
			start = saved
		}
		// An unreadable cursor, or a largestDeviceIdSeen one (saved by a
		// version that paged by it), starts again from the top rather than
		// failing every cycle.
	}
	cur := start
	lapStartedAt := pc.LapStartedAt
	lapInCycle := false
	wrapped := false
	for len(unseen) > 0 {
		if !c.spend() {
			// Budget spent: the devices not reached stay due, and the next
			// cycle resumes from cur.
			return c.a.Store.SavePollRequests(ctx, c.account, c.used)
		}
		first := cur.IsStart()
		page, err := c.ts.ListDevicePage(ctx, thingspace.ListRequest{AccountName: c.account}, cur)
		if err != nil {
			c.refund(err)
			if serr := c.a.Store.SavePollRequests(ctx, c.account, c.used); serr != nil {
				return serr
			}
			return thingSpaceError("poll "+c.account, err)
		}
		if first {
			lapInCycle = true
			now := time.Now()
			lapStartedAt = &now
		}
		for _, d := range page.Devices {
			p, ok := unseen[d.ID(thingspace.KindICCID)]
			if !ok {
				continue
			}
			delete(unseen, p.ICCID)
			if err := c.settle(ctx, p, d, true); err != nil {
				return err
			}
		}
		if len(unseen) == 0 {
			break
		}
		if page.More {
			cur = page.Next
			if err := c.save(ctx, &cur, first); err != nil {
				return err
			}
			if wrapped && cur.Reached(start) {
				return nil // the rest of the list was read earlier in this cycle
			}
			continue
		}

		// The end of the list: back to the start for the next pass.
		if err := c.save(ctx, nil, first); err != nil {
			return err
		}
		var missing []db.PollRequest
		for _, p := range unseen {
			if lapInCycle || (lapStartedAt != nil && !p.NextPollAt.After(*lapStartedAt)) {
				missing = append(missing, p)
			}
		}
		sort.Slice(missing, func(i, j int) bool { return missing[i].DeviceChangeID < missing[j].DeviceChangeID })
		for _, p := range missing {
			delete(unseen, p.ICCID)
		}
		if lapInCycle {
			for _, p := range missing {
				if err := c.settle(ctx, p, thingspace.Device{}, false); err != nil {
					return err
				}
			}
		} else if err := c.lookUp(ctx, missing); err != nil {
			return err
		}
		if wrapped || start.IsStart() {
			return nil // the whole list was read in this cycle
		}
		wrapped, cur, lapInCycle = true, startOfList(), false
	}
	// Every due device seen: the next cycle starts from the top.
	return c.save(ctx, nil, false)
}

// startOfList is the cursor of a list's first page: paging by `earliest`
// (date added). It does not send largestDeviceIdSeen: ThingSpace's
// published answer carries no cursor to continue with, and a request with
// one is ordered by device ID, from which paging by date could skip
// devices (thingspace.ListDevicePage).
func startOfList() thingspace.ListCursor {
	return thingspace.ListCursor{}
}

// save records the cursor (nil: back at the start) and the requests spent.
func (c *pollCycle) save(ctx context.Context, cur *thingspace.ListCursor, startLap bool) error {
	p := db.PollProgress{StartLap: startLap, Requests: c.used}
	if cur != nil && !cur.IsStart() {
		b, err := json.Marshal(cur)
		if err != nil {
			return fmt.Errorf("poll cursor of %s: %w", c.account, err)
		}
		p.Cursor = b
	}
	return c.a.Store.SavePollProgress(ctx, c.account, p)
}

// settle gives a checked device change its verdict: a final state is
// signalled to its workflow and the change leaves polling; a pending one is
// checked again after its next wait.
func (c *pollCycle) settle(ctx context.Context, p db.PollRequest, d thingspace.Device, found bool) error {
	c.res.Checked++
	conf, done := pollVerdict(p, d, found, time.Now())
	if !done {
		return c.a.Store.DeferPoll(ctx, p.DeviceChangeID, p.NextWait(), d.State())
	}
	if err := c.a.Temporal.SignalWorkflow(ctx, p.WorkflowID, "", api.ConfirmationSignal, conf); err != nil {
		var nf *serviceerror.NotFound
		if !errors.As(err, &nf) {
			return fmt.Errorf("signal %s: %w", p.WorkflowID, err)
		}
		// The workflow has finished (its callback won): nothing to deliver.
	}
	if err := c.a.Store.RemovePollRequest(ctx, p.DeviceChangeID); err != nil {
		return err
	}
	c.res.Resolved++
	c.res.Waiting--
	return nil
}

// pollVerdict decides from a device's listed state whether its change is
// confirmed, failed, or still pending.
func pollVerdict(p db.PollRequest, d thingspace.Device, found bool, now time.Time) (api.Confirmation, bool) {
	conf := api.Confirmation{Source: change.ByPoll, RequestID: p.RequestID, At: now}
	op := p.Operation.Operation()
	if !found && op == change.Deactivate && p.DeleteAfterDeactivation {
		// Asked to remove the device once deactivated: ThingSpace does so
		// only when the deactivation is done (while pending the device is
		// listed), so its absence is the confirmation.
		conf.Success = true
		return conf, true
	}
	if !found {
		conf.FaultCode = thingspace.CodeDeviceNotFound
		conf.FaultMessage = "ThingSpace's device list does not have this device"
		return conf, true
	}
	st := d.State()
	conf.State = change.State(st)
	target := op.Target()
	if p.Operation == change.AwaitPPUUpdate {
		// A PPU update leaves the state alone and the device list does not
		// show the PPU (extendedAttributes are unconfirmed): an active,
		// settled device is the best evidence there is.
		target = change.StateActive
	}
	switch {
	case st == target && op == change.Activate && activatedBefore(d, p.SentAt):
		// Active since before our request: the DeviceAlreadyActive fault
		// that would have said so was lost with its callback.
		conf.FaultCode = thingspace.CodeDeviceAlreadyActive
		conf.FaultMessage = "device was already active before the activation request (seen by polling)"
		conf.MSISDN = d.MSISDN()
		return conf, true
	case st == target:
		conf.Success = true
		conf.MSISDN = d.MSISDN()
		return conf, true
	case st.Pending():
		return conf, false
	default:
		// ThingSpace puts a device into a pending state when it accepts a
		// change; after the callback timeout, a device neither pending nor in
		// the target state means the change failed.
		conf.FaultCode = change.PollStateMismatch
		conf.FaultMessage = fmt.Sprintf(
			"device is %s at ThingSpace after the %s request (expected %s)",
			st,
			p.Operation,
			target,
		)
		return conf, true
	}
}

// activatedBefore reports whether the device's last activation predates the
// request.
func activatedBefore(d thingspace.Device, sent *time.Time) bool {
	if sent == nil || d.LastActivationDate == "" {
		return false
	}
	at, err := time.Parse(time.RFC3339, d.LastActivationDate)
	return err == nil && at.Before(*sent)
}
