package thingspacesim

import (
	"strings"
	"time"
)

// transition is what an accepted action does to a device: it shows pending
// at once and final when the action completes. contactInfo has no pending
// state: the device stays active.
type transition struct {
	from    []string
	pending string
	final   string
}

// transitions is the L-cds action matrix; suspend→deactivate is removed by
// Config.DisallowSuspendToDeactivate (S-states).
var transitions = map[string]transition{
	ActionActivate: {
		from:    []string{StatePreActive, StateDeactive},
		pending: StatePendingActivation,
		final:   StateActive,
	},
	ActionSuspend: {from: []string{StateActive}, pending: StatePendingSuspend, final: StateSuspend},
	ActionRestore: {from: []string{StateSuspend}, pending: StatePendingResume, final: StateActive},
	ActionDeactivate: {
		from:    []string{StateActive, StateSuspend},
		pending: StatePendingDeactivation,
		final:   StateDeactive,
	},
	ActionContactInfo: {from: []string{StateActive}, pending: StateActive, final: StateActive},
}

func isPending(state string) bool { return strings.HasPrefix(state, "pending") }

// countsTowardDailyLimit: only state changes count toward
// ActionsPerLinePerDay; a PPU update changes no state.
func countsTowardDailyLimit(action string) bool { return action != ActionContactInfo }

func deviceFault(code, text string) *faultResponse {
	return &faultResponse{FaultCode: code, FaultString: text}
}

// checkLocked decides whether action may start on d now. The order of the
// checks fixes which code wins when several apply: the seeded failure,
// then a pending change, then "already active", then the matrix, then the
// daily limit (which counts accepted changes only).
func (s *Simulator) checkLocked(d *device, action string, now time.Time) (transition, *faultResponse) {
	if d == nil {
		return transition{}, deviceFault(CodeDeviceNotFound, "REQUEST_FAILED. Device not found")
	}
	if d.failWith != "" {
		return transition{}, deviceFault(d.failWith, "REQUEST_FAILED. Simulated failure for this device")
	}
	if isPending(d.state) {
		return transition{}, deviceFault(
			CodeDeviceStateInvalid,
			"INPUT_INVALID. Device has a pending request ("+d.state+")",
		)
	}
	if action == ActionActivate && d.state == StateActive {
		return transition{}, deviceFault(CodeDeviceAlreadyActive, "REQUEST_FAILED. Device is already active")
	}
	t := transitions[action]
	allowed := false
	for _, from := range t.from {
		allowed = allowed || from == d.state
	}
	if action == ActionDeactivate && d.state == StateSuspend && s.cfg.DisallowSuspendToDeactivate {
		allowed = false
	}
	if !allowed {
		return transition{}, deviceFault(
			CodeDeviceStateInvalid,
			"INPUT_INVALID. Device state "+d.state+" does not allow "+action,
		)
	}
	if countsTowardDailyLimit(action) {
		if limit := s.limits.ActionsPerLinePerDay; limit > 0 {
			d.pruneActions(now)
			if len(d.actions) >= limit {
				return transition{}, deviceFault(
					CodeMaxActionsPerDay,
					"REQUEST_FAILED. Maximum provisioning actions per line per day reached",
				)
			}
		}
	}
	return t, nil
}
