package chaos

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	revsim "github.com/iot-ops/tsbulk/harness/reviosim"
	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
)

// cleanSnapshot is what a correct run of w ends with.
func cleanSnapshot(w Workload) Snapshot {
	s := Snapshot{Accepted: map[string]map[string]int{}, Applied: map[string]map[string]int{},
		Devices: map[string]tssim.DeviceSnapshot{}}
	msisdn := 3125550000
	var svcID, prodID int64 = 100001, 700001
	for i, d := range w.Devices {
		dc := DeviceChange{ID: int64(i + 1), ICCID: d.ICCID, Operation: d.Operation, Status: "PROCESSED",
			BillingStatus: "NONE", ResultEntries: 1}
		want := expected[d.Category]
		dc.Outcome = want.outcome
		action := map[string]string{"inventory": tssim.ActionAdd}[d.Operation]
		if action == "" {
			action = d.Operation
		}
		s.Accepted[d.ICCID] = map[string]int{action: 1}
		s.Applied[d.ICCID] = map[string]int{action: 1}
		dev := tssim.DeviceSnapshot{ICCID: d.ICCID, State: want.state, Removed: d.Operation == "deactivate"}
		switch {
		case d.Category == CatActivateUnknown:
			dc.Status, dc.Outcome, dc.ErrorCode = "ERROR", "", "REQUEST_FAILED.DeviceNotFound"
			delete(s.Applied, d.ICCID) // accepted in a request, refused for the device
		case d.Operation == "activate":
			msisdn++
			dc.MSISDN, dev.MSISDN = fmt.Sprint(msisdn), fmt.Sprint(msisdn)
			if d.Category == CatActivateActive {
				s.Accepted[d.ICCID][tssim.ActionContactInfo] = 1
				s.Applied[d.ICCID] = map[string]int{tssim.ActionContactInfo: 1}
				dc.ConfirmedBy = "callback"
			}
			if d.Billed {
				dc.BillingStatus = "CREATED"
				s.Services = append(s.Services, revsim.ServiceRecord{ServiceID: svcID, Number: dc.MSISDN, Number2: d.ICCID})
				s.Products = append(s.Products, revsim.ServiceProductRecord{ServiceProductID: prodID, ServiceID: svcID})
				svcID++
				prodID++
			}
		}
		if d.Category != CatActivateUnknown {
			s.Devices[d.ICCID] = dev
		}
		s.Changes = append(s.Changes, dc)
	}
	s.Bulk = BulkRow{ID: "b1", Status: "FINISHED", Total: len(s.Changes)}
	for _, dc := range s.Changes {
		if dc.Status == "PROCESSED" {
			s.Bulk.Processed++
		} else {
			s.Bulk.Errors++
		}
	}
	return s
}

func TestCheckPassesACorrectRun(t *testing.T) {
	w := NewWorkload(200, 5)
	assert.Empty(t, Check(w, cleanSnapshot(w)))
}

// A PPU update sent again after an attempt whose outcome the product never
// learned is allowed, one per attempt it recorded before sending.
func TestCheckAllowsARecordedPPUResend(t *testing.T) {
	w := NewWorkload(200, 5)
	s := cleanSnapshot(w)
	for i, d := range w.Devices {
		if d.Category == CatActivateActive {
			s.Accepted[d.ICCID][tssim.ActionContactInfo] = 2
			s.Changes[i].PPUSends = 2
		}
	}
	assert.Empty(t, Check(w, s))
}

// A PPU update whose callback was lost ends unproven, not failed.
func TestCheckAllowsAnUnprovenPPUUpdate(t *testing.T) {
	w := NewWorkload(200, 5)
	s := cleanSnapshot(w)
	for i, d := range w.Devices {
		if d.Category == CatActivateActive {
			s.Changes[i].Outcome, s.Changes[i].ConfirmedBy = outPPUUnproven, "poll"
		}
	}
	assert.Empty(t, Check(w, s))
}

// Each invariant, broken on one device change, is reported under its name
// and names that device change; nothing else is reported.
func TestCheckNamesEachViolation(t *testing.T) {
	w := NewWorkload(200, 5)
	find := func(c Category) int {
		for i, d := range w.Devices {
			if d.Category == c {
				return i
			}
		}
		t.Fatalf("no %s device", c)
		return -1
	}
	cases := []struct {
		name  string
		check string
		idx   func() int
		mut   func(s *Snapshot, i int)
	}{
		{"not final", CheckFinal, func() int { return find(CatSuspend) }, func(s *Snapshot, i int) {
			s.Changes[i].Status, s.Changes[i].Outcome = "SUBMITTED", ""
			s.Bulk.Processed-- // keep the bulk counts consistent: only the device change is at fault
			s.Bulk.Total = len(s.Changes)
		}},
		{"wrong outcome", CheckOutcome, func() int { return find(CatRestore) }, func(s *Snapshot, i int) {
			s.Changes[i].Status, s.Changes[i].Outcome, s.Changes[i].ErrorCode = "ERROR", "", "NOT_CONFIRMED"
			s.Bulk.Processed--
			s.Bulk.Errors++
			s.Devices[s.Changes[i].ICCID] = tssim.DeviceSnapshot{ICCID: s.Changes[i].ICCID, State: tssim.StateSuspend}
			delete(s.Applied, s.Changes[i].ICCID) // ThingSpace did not restore it either
		}},
		{"ThingSpace disagrees", CheckTSState, func() int { return find(CatDeactivate) }, func(s *Snapshot, i int) {
			s.Devices[s.Changes[i].ICCID] = tssim.DeviceSnapshot{ICCID: s.Changes[i].ICCID, State: tssim.StateActive}
		}},
		{"deactivated but still in ThingSpace's inventory", CheckTSState, func() int { return find(CatDeactivate) },
			func(s *Snapshot, i int) {
				s.Devices[s.Changes[i].ICCID] = tssim.DeviceSnapshot{ICCID: s.Changes[i].ICCID, State: tssim.StateDeactive}
			}},
		{"sent twice", CheckTSOnce, func() int { return find(CatSuspend) }, func(s *Snapshot, i int) {
			s.Accepted[s.Changes[i].ICCID][tssim.ActionSuspend] = 2
		}},
		{"PPU update sent more often than recorded", CheckTSOnce, func() int { return find(CatActivateActive) },
			func(s *Snapshot, i int) {
				s.Accepted[s.Changes[i].ICCID][tssim.ActionContactInfo] = 3
				s.Changes[i].PPUSends = 2
			}},
		{"PPU update called made without its callback", CheckOutcome, func() int { return find(CatActivateActive) },
			func(s *Snapshot, i int) { s.Changes[i].ConfirmedBy = "poll" }},
		{"PPU update called unproven although its callback came", CheckOutcome,
			func() int { return find(CatActivateActive) },
			func(s *Snapshot, i int) { s.Changes[i].Outcome = outPPUUnproven }},
		{"never sent", CheckTSOnce, func() int { return find(CatInventory) }, func(s *Snapshot, i int) {
			delete(s.Accepted, s.Changes[i].ICCID)
		}},
		{"ERROR for a change ThingSpace applied", CheckNoErrorIfDone, func() int { return find(CatActivateUnknown) },
			func(s *Snapshot, i int) {
				s.Applied[s.Changes[i].ICCID] = map[string]int{tssim.ActionActivate: 1}
			}},
		{"two Rev.io services", CheckRevioOnce, func() int { return find(CatActivateBilled) }, func(s *Snapshot, i int) {
			s.Services = append(s.Services, revsim.ServiceRecord{ServiceID: 999999, Number: s.Changes[i].MSISDN, Number2: s.Changes[i].ICCID})
		}},
		{"service for a failed activation", CheckRevioOnce, func() int { return find(CatActivateUnknown) }, func(s *Snapshot, i int) {
			s.Services = append(s.Services, revsim.ServiceRecord{ServiceID: 999998, Number2: s.Changes[i].ICCID})
		}},
		{"billing pending", CheckBillingDone, func() int { return find(CatActivatePlain) }, func(s *Snapshot, i int) {
			s.Changes[i].BillingStatus = "PENDING"
		}},
		{"acknowledged callback not stored", CheckCallbacks, func() int { return find(CatRestore) }, func(s *Snapshot, i int) {
			s.Acknowledged = append(s.Acknowledged, tssim.DeliveryLogEntry{RequestID: "r-1", ICCID: s.Changes[i].ICCID, Outcome: tssim.OutcomeDelivered})
			s.Stored = map[[2]string]bool{{"r-2", s.Changes[i].ICCID}: true}
		}},
		{"no audit result", CheckAuditResult, func() int { return find(CatSuspend) }, func(s *Snapshot, i int) {
			s.Changes[i].ResultEntries = 0
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := cleanSnapshot(w)
			i := c.idx()
			c.mut(&s, i)
			vs := Check(w, s)
			require.NotEmpty(t, vs)
			for _, v := range vs {
				assert.Equal(t, c.check, v.Check, "%s", v)
				assert.Equal(t, s.Changes[i].ID, v.DeviceChangeID, "%s", v)
				assert.Contains(t, v.String(), s.Changes[i].ICCID)
			}
		})
	}

	t.Run("bulk counts", func(t *testing.T) {
		s := cleanSnapshot(w)
		s.Bulk.Processed++
		s.Bulk.Status = "RUNNING"
		vs := Check(w, s)
		require.Len(t, vs, 2)
		for _, v := range vs {
			assert.Equal(t, CheckBulkCounts, v.Check)
		}
	})
}

// The case the invariant is for: ThingSpace applied a deactivation, its
// gateway answered 502, the product sent it again and recorded the refusal
// ("already deactivated", pending) as the device's outcome. The other
// checks see a wrong outcome; this one names the change ThingSpace made.
func TestCheckNamesAnErrorForAnAppliedChange(t *testing.T) {
	w := NewWorkload(200, 5)
	s := cleanSnapshot(w)
	i := -1
	for j, d := range w.Devices {
		if d.Category == CatDeactivate {
			i = j
			break
		}
	}
	require.GreaterOrEqual(t, i, 0)
	dc := &s.Changes[i]
	dc.Status, dc.Outcome = "ERROR", ""
	dc.ErrorCode, dc.ErrorMessage = "INPUT_INVALID.DeviceState.Invalid", "Device has a pending request (pending deactivation)"
	s.Bulk.Processed--
	s.Bulk.Errors++
	var found []Violation
	for _, v := range Check(w, s) {
		if v.Check == CheckNoErrorIfDone {
			found = append(found, v)
		}
	}
	require.Len(t, found, 1)
	assert.Equal(t, dc.ID, found[0].DeviceChangeID)
	assert.Contains(t, found[0].Detail, "deactivate×1")
	assert.Contains(t, found[0].Detail, "DeviceState.Invalid")

	// Accepted in a request but refused for the device (an unknown
	// device's activation): not applied, and its ERROR is right.
	s = cleanSnapshot(w)
	for j, d := range w.Devices {
		if d.Category == CatActivateUnknown {
			require.Equal(t, "ERROR", s.Changes[j].Status)
			require.Positive(t, s.Accepted[d.ICCID][tssim.ActionActivate])
		}
	}
	assert.Empty(t, Check(w, s))
}

// Leaks names what was found and where, never the value: the report is
// printed and logged.
func TestLeaksNeverRepeatTheValue(t *testing.T) {
	needles := []Needle{{"the callback password", "cbpw-0123"}, {"a PPU value", "1 Marigold Terrace"}}
	vs := Leaks(needles, "the log of worker-1", []byte(`msg="login" password=cbpw-0123 addr="1 Marigold Terrace"`))
	require.Len(t, vs, 2)
	for _, v := range vs {
		assert.Equal(t, CheckNoSecretOrPPU, v.Check)
		assert.NotContains(t, v.String(), "cbpw-0123")
		assert.NotContains(t, v.String(), "Marigold")
		assert.Contains(t, v.String(), "worker-1")
	}
	assert.Empty(t, Leaks(needles, "x", []byte("nothing here")))

	// The same value in many histories is one finding with a count.
	many := append(Leaks(needles[:1], "the history of a (run 1), event 5", []byte("cbpw-0123")),
		Leaks(needles[:1], "the history of b (run 2), event 7", []byte("cbpw-0123"))...)
	d := dedupeLeaks(many)
	require.Len(t, d, 1)
	assert.Contains(t, d[0].Detail, "1 more")
}
