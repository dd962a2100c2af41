package chaos

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	revsim "github.com/iot-ops/tsbulk/harness/reviosim"
	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
)

// The checks, in the order of the report. Each reads what the simulators
// saw and what PostgreSQL holds, never the product's own counters (the
// bulk change's counts are checked against the device changes, not
// trusted).
const (
	CheckFinal         = "every device change final"
	CheckOutcome       = "outcome as the file and ThingSpace's data require"
	CheckTSState       = "ThingSpace's device state agrees with the outcome"
	CheckTSOnce        = "ThingSpace accepted each change at most once (once if changed)"
	CheckNoErrorIfDone = "no device change ERROR for a change ThingSpace applied"
	CheckRevioOnce     = "one Rev.io service per billed activation, none otherwise"
	CheckBillingDone   = "no billing left PENDING"
	CheckBulkCounts    = "bulk_changes counts equal device_changes"
	CheckAuditResult   = "one audit result entry per device change"
	CheckCallbacks     = "every callback the receiver acknowledged is stored"
	CheckNoSecretOrPPU = "no secret or PPU value in audit log, logs, histories"
	CheckShards        = "every shard completed; shards' and root's results equal device_changes"
)

// Checks lists the checks in report order.
var Checks = []string{CheckFinal, CheckOutcome, CheckTSState, CheckTSOnce, CheckNoErrorIfDone, CheckRevioOnce,
	CheckBillingDone, CheckBulkCounts, CheckAuditResult, CheckCallbacks, CheckNoSecretOrPPU, CheckShards}

// Violation is one broken invariant, naming the device change when there
// is one.
type Violation struct {
	Check          string
	DeviceChangeID int64
	ICCID          string
	Detail         string
}

func (v Violation) String() string {
	if v.DeviceChangeID != 0 || v.ICCID != "" {
		return fmt.Sprintf("%s: device change %d (%s): %s", v.Check, v.DeviceChangeID, v.ICCID, v.Detail)
	}
	return fmt.Sprintf("%s: %s", v.Check, v.Detail)
}

// DeviceChange is a device_changes row as the checks need it.
type DeviceChange struct {
	ID                                            int64
	ICCID, Operation, Status, Outcome, FinalState string
	MSISDN, ErrorCode, ErrorMessage, ConfirmedBy  string
	BillingStatus, BillingErrorCode, BillingError string
	ResultEntries                                 int // audit log result entries of the change
	// PPUSends is how many times the product recorded, before sending, an
	// attempt of the change's PPU update (thingspace_requests.attempts).
	PPUSends   int
	WorkflowID string
	// BatchNo is the batch the change was sent in, which places it in a
	// shard.
	BatchNo int
}

// BulkRow is the bulk_changes row.
type BulkRow struct {
	ID, Status, ErrorMessage, WorkflowID string
	Total, Processed, Errors             int
}

// Snapshot is everything the checks read, taken once the bulk change ended
// (or the run gave up waiting).
type Snapshot struct {
	Bulk     BulkRow
	Changes  []DeviceChange
	Accepted map[string]map[string]int // ThingSpace: ICCID → action → requests accepted with the device
	// Applied: ICCID → action → times ThingSpace changed the device (not
	// counting the devices it refused), whatever answer the product got.
	Applied  map[string]map[string]int
	Devices  map[string]tssim.DeviceSnapshot
	Services []revsim.ServiceRecord
	Products []revsim.ServiceProductRecord
	// Acknowledged are the callbacks ThingSpace's delivery log shows
	// answered 2xx; Stored the callbacks table's (request id, ICCID) pairs.
	Acknowledged []tssim.DeliveryLogEntry
	Stored       map[[2]string]bool
	// Tree is the shards' runs and the root's result in Temporal (nil:
	// not checked).
	Tree *ShardTree
}

// Outcomes the product records (workflows/devicechange.go); a copy, so a
// renamed outcome shows up here as a violation instead of silently passing.
const (
	outActivated     = "activated"
	outAlreadyActive = "already_active_ppu_updated"
	outPPUUnproven   = "already_active_ppu_unconfirmed"
	outSuspended     = "suspended"
	outRestored      = "restored"
	outDeactivated   = "deactivated"
	outInventory     = "added_to_inventory"
)

// expected is what a category's device change must end with: PROCESSED
// with that outcome and ThingSpace state, or ERROR ("" outcome).
var expected = map[Category]struct{ outcome, state string }{
	CatActivateBilled:  {outActivated, tssim.StateActive},
	CatActivatePlain:   {outActivated, tssim.StateActive},
	CatActivateActive:  {outAlreadyActive, tssim.StateActive},
	CatActivateUnknown: {"", ""},
	CatSuspend:         {outSuspended, tssim.StateSuspend},
	CatRestore:         {outRestored, tssim.StateActive},
	CatDeactivate:      {outDeactivated, tssim.StateDeactive},
	CatInventory:       {outInventory, tssim.StatePreActive},
}

// changed are the outcomes that say ThingSpace changed the device's state.
var changed = map[string]bool{outActivated: true, outSuspended: true, outRestored: true, outDeactivated: true, outInventory: true}

// stateChanges are the simulator's action names of state changes.
var stateChanges = []string{tssim.ActionActivate, tssim.ActionSuspend, tssim.ActionRestore, tssim.ActionDeactivate, tssim.ActionAdd}

// changeActions are every change the product makes at ThingSpace: the state
// changes and the PPU update.
var changeActions = []string{tssim.ActionActivate, tssim.ActionSuspend, tssim.ActionRestore, tssim.ActionDeactivate,
	tssim.ActionAdd, tssim.ActionContactInfo}

var seedStates = map[string]string{"preactive": tssim.StatePreActive, "active": tssim.StateActive,
	"suspend": tssim.StateSuspend, "deactive": tssim.StateDeactive}

// Check runs every invariant of the snapshot against the workload.
func Check(w Workload, s Snapshot) []Violation {
	var out []Violation
	add := func(check string, dc DeviceChange, format string, args ...any) {
		out = append(out, Violation{Check: check, DeviceChangeID: dc.ID, ICCID: dc.ICCID, Detail: fmt.Sprintf(format, args...)})
	}
	byICCID := map[string]DeviceChange{}
	for _, dc := range s.Changes {
		if _, dup := byICCID[dc.ICCID]; dup {
			add(CheckFinal, dc, "a second device change of the same ICCID")
		}
		byICCID[dc.ICCID] = dc
	}
	services := map[string][]revsim.ServiceRecord{}
	for _, svc := range s.Services {
		services[svc.Number2] = append(services[svc.Number2], svc)
	}
	products := map[int64][]revsim.ServiceProductRecord{}
	for _, p := range s.Products {
		products[p.ServiceID] = append(products[p.ServiceID], p)
	}
	inFile := map[string]bool{}
	for _, d := range w.Devices {
		inFile[d.ICCID] = true
		dc, ok := byICCID[d.ICCID]
		if !ok {
			out = append(out, Violation{Check: CheckFinal, ICCID: d.ICCID, Detail: "no device change for this row of the file"})
			continue
		}
		final := dc.Status == "PROCESSED" || dc.Status == "ERROR"
		if !final {
			add(CheckFinal, dc, "status %s (%s %s), workflow %s", dc.Status, d.Operation, d.Category, dc.WorkflowID)
		}
		want := expected[d.Category]
		// A PPU update is made only by its own callback; without it the
		// update is recorded as sent but unproven, never as made.
		ppuUnproven := want.outcome == outAlreadyActive && dc.Outcome == outPPUUnproven
		switch {
		case !final:
		case want.outcome == "" && dc.Status != "ERROR":
			add(CheckOutcome, dc, "%s must fail, ended %s %s", d.Category, dc.Status, dc.Outcome)
		case dc.Outcome == outAlreadyActive && dc.ConfirmedBy != "callback":
			add(CheckOutcome, dc, "PPU update recorded as made, confirmed by %q instead of its callback", dc.ConfirmedBy)
		case ppuUnproven && dc.ConfirmedBy == "callback":
			add(CheckOutcome, dc, "PPU update recorded as unproven although its callback came")
		case want.outcome != "" && !ppuUnproven && (dc.Status != "PROCESSED" || dc.Outcome != want.outcome):
			add(CheckOutcome, dc, "%s must end PROCESSED %s, ended %s %s %s: %s", d.Category, want.outcome, dc.Status, dc.Outcome,
				dc.ErrorCode, dc.ErrorMessage)
		}

		// ThingSpace's view of the device.
		dev, known := s.Devices[d.ICCID]
		switch {
		case dc.Status == "PROCESSED" && !known:
			add(CheckTSState, dc, "PROCESSED %s but ThingSpace does not know the device", dc.Outcome)
		case dc.Status == "PROCESSED" && want.state != "" && dev.State != want.state:
			add(CheckTSState, dc, "PROCESSED %s but ThingSpace shows %q", dc.Outcome, dev.State)
		case dc.Status == "PROCESSED" && d.Operation == "deactivate" && !dev.Removed:
			// The product deactivates with deleteAfterDeactivation (the
			// setting's default), as the predecessor did.
			add(CheckTSState, dc, "PROCESSED %s but ThingSpace still has the device in its inventory", dc.Outcome)
		case dc.Status == "PROCESSED" && d.Operation == "activate" && dc.MSISDN != dev.MSISDN:
			add(CheckTSState, dc, "recorded MSISDN %q, ThingSpace's is %q", dc.MSISDN, dev.MSISDN)
		case dc.Status == "ERROR" && d.SeedState == "" && known:
			add(CheckTSState, dc, "ERROR %s but ThingSpace has the device (%q)", dc.ErrorCode, dev.State)
		case dc.Status == "ERROR" && d.SeedState != "" && dev.State != seedStates[d.SeedState]:
			add(CheckTSState, dc, "ERROR %s but ThingSpace moved the device from %q to %q", dc.ErrorCode, seedStates[d.SeedState], dev.State)
		}

		// State changes ThingSpace accepted for the device.
		acc := s.Accepted[d.ICCID]
		n := 0
		var parts []string
		for _, a := range stateChanges {
			n += acc[a]
			if acc[a] > 0 {
				parts = append(parts, fmt.Sprintf("%s×%d", a, acc[a]))
			}
		}
		switch {
		case n > 1:
			add(CheckTSOnce, dc, "ThingSpace accepted %d state changes: %s", n, strings.Join(parts, " "))
		case n == 0 && dc.Status == "PROCESSED" && changed[dc.Outcome]:
			add(CheckTSOnce, dc, "PROCESSED %s but ThingSpace accepted no state change", dc.Outcome)
		}
		// A change ThingSpace made is never an ERROR: re-sending it after an
		// answer that proved nothing (a gateway's 502/504) gets it refused
		// as already made, and the device change ends ERROR for a device
		// that did what was asked.
		if dc.Status == "ERROR" {
			for _, a := range changeActions {
				if n := s.Applied[d.ICCID][a]; n > 0 {
					add(CheckNoErrorIfDone, dc, "ERROR %s (%s) but ThingSpace applied %s×%d", dc.ErrorCode, dc.ErrorMessage, a, n)
				}
			}
		}
		// A PPU update sets an address; it changes no state, and ThingSpace
		// offers no way to read it back, so an attempt whose outcome the
		// product never learned (killed worker, lost answer) is sent again.
		// Allowed: one per attempt the product recorded before sending, and
		// none after an answer it recorded.
		if ci := acc[tssim.ActionContactInfo]; ci > max(1, dc.PPUSends) || (ci == 0 && (dc.Outcome == outAlreadyActive || dc.Outcome == outPPUUnproven)) {
			add(CheckTSOnce, dc, "ThingSpace accepted %d PPU updates, the product recorded %d attempts (outcome %s)",
				ci, dc.PPUSends, dc.Outcome)
		}

		// Rev.io.
		svcs := services[d.ICCID]
		billedActivation := d.Billed && dc.Status == "PROCESSED" && d.Operation == "activate"
		switch {
		case billedActivation && len(svcs) != 1:
			add(CheckRevioOnce, dc, "%d Rev.io services for a billed activation (billing %s %s)", len(svcs), dc.BillingStatus, dc.BillingError)
		case billedActivation:
			svc := svcs[0]
			if svc.Number != dc.MSISDN {
				add(CheckRevioOnce, dc, "Rev.io service %d has number %q, the MSISDN is %q", svc.ServiceID, svc.Number, dc.MSISDN)
			}
			if len(products[svc.ServiceID]) != 1 {
				add(CheckRevioOnce, dc, "Rev.io service %d has %d service products, want 1", svc.ServiceID, len(products[svc.ServiceID]))
			}
			if dc.BillingStatus != "CREATED" && dc.BillingStatus != "EXISTING" && dc.BillingStatus != "PENDING" {
				add(CheckRevioOnce, dc, "billing %s %s %s for a billed activation", dc.BillingStatus, dc.BillingErrorCode, dc.BillingError)
			}
		case len(svcs) > 0:
			add(CheckRevioOnce, dc, "%d Rev.io services for a device change that must have none (%s %s, billed %v)", len(svcs), dc.Status, dc.Outcome, d.Billed)
		}
		if dc.BillingStatus == "PENDING" {
			add(CheckBillingDone, dc, "billing PENDING (%s %s)", dc.Status, dc.Outcome)
		}
		if dc.ResultEntries != 1 && final {
			add(CheckAuditResult, dc, "%d result entries in the audit log", dc.ResultEntries)
		}
	}
	for _, dc := range s.Changes {
		if !inFile[dc.ICCID] {
			add(CheckFinal, dc, "a device change for a device not in the file")
		}
	}
	for iccid, svcs := range services {
		if !inFile[iccid] {
			out = append(out, Violation{Check: CheckRevioOnce, ICCID: iccid, Detail: fmt.Sprintf("%d Rev.io services for a device not in the file", len(svcs))})
		}
	}

	// The receiver answers 2xx only once a callback is stored: one that
	// ThingSpace saw acknowledged and PostgreSQL lacks is lost for good.
	missing := map[[2]string]bool{}
	for _, e := range s.Acknowledged {
		k := [2]string{e.RequestID, e.ICCID}
		if !s.Stored[k] && !missing[k] {
			missing[k] = true
			dc := byICCID[e.ICCID]
			add(CheckCallbacks, DeviceChange{ID: dc.ID, ICCID: e.ICCID}, "callback of request %s acknowledged at %s (attempt %d) but not in the callbacks table",
				e.RequestID, e.Time.Format("15:04:05.000"), e.Attempt)
		}
	}

	b := s.Bulk
	counts := map[string]int{}
	for _, dc := range s.Changes {
		counts[dc.Status]++
	}
	if b.Status != "FINISHED" {
		out = append(out, Violation{Check: CheckBulkCounts, Detail: fmt.Sprintf("bulk change %s is %s, not FINISHED (%s)", b.ID, b.Status, b.ErrorMessage)})
	}
	if b.Total != len(s.Changes) || b.Processed != counts["PROCESSED"] || b.Errors != counts["ERROR"] {
		out = append(out, Violation{Check: CheckBulkCounts, Detail: fmt.Sprintf(
			"bulk change %s says total %d, processed %d, errors %d; device_changes have %d, %d PROCESSED, %d ERROR",
			b.ID, b.Total, b.Processed, b.Errors, len(s.Changes), counts["PROCESSED"], counts["ERROR"])})
	}
	if s.Tree != nil {
		out = append(out, checkTree(s.Tree, s.Changes)...)
	}
	sort.SliceStable(out, func(i, j int) bool { return checkOrder(out[i].Check) < checkOrder(out[j].Check) })
	return out
}

func checkOrder(c string) int {
	for i, x := range Checks {
		if x == c {
			return i
		}
	}
	return len(Checks)
}

// Needle is a value that must appear nowhere but where it belongs.
type Needle struct {
	What  string // "ThingSpace client secret", "PPU value" (never the value itself)
	Value string
}

// Leaks reports each needle found in data, located by where. The value is
// never repeated in the report: the report goes to logs too.
func Leaks(needles []Needle, where string, data []byte) []Violation {
	var out []Violation
	for _, n := range needles {
		if n.Value != "" && bytes.Contains(data, []byte(n.Value)) {
			out = append(out, Violation{Check: CheckNoSecretOrPPU, Detail: fmt.Sprintf("%s found in %s", n.What, where)})
		}
	}
	return out
}
