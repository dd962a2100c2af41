package activities_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/metrics"
)

// Every Rev.io step recorded is counted by the status it left
// (tsbulk_billing_steps_total), a failure with its code, kept to the
// product's own codes so that the label set stays bounded.
func TestBillingStepsAreCounted(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	m := metrics.New()
	h.acts.Metrics = m
	steps := func(status change.BillingStatus, code string) float64 {
		return testutil.ToFloat64(m.BillingSteps.WithLabelValues(string(status), code))
	}

	for _, code := range []string{activities.ErrTypeMSISDNUnknown, activities.ErrTypeRevio, activities.ErrTypeInvalidData} {
		require.Contains(t, metrics.BillingErrorCodes, code, "a code of the Rev.io step is a label value of its own")
	}
	bulk, id, dev := h.activated("3125550181")
	h.mustCreateBilling(bulk, id)
	require.Equal(t, 1.0, steps(change.BillingCreated, ""))

	for _, code := range []string{activities.ErrTypeRevio, "*fmt.wrapError", ""} {
		require.NoError(t, h.run(nil, h.acts.RecordBillingFailure,
			activities.RecordBillingFailureInput{DeviceChangeID: id, Message: "Rev.io refused", Code: code}))
	}
	require.Equal(t, 1.0, steps(change.BillingError, activities.ErrTypeRevio))
	require.Equal(t, 1.0, steps(change.BillingError, "other"), "a code not of the product's own")
	require.Equal(t, 1.0, steps(change.BillingError, "unknown"), "no code")

	off, ids := h.newBulk(account, changes("deactivate", 1, dev)...)
	offID := ids[dev.ICCID]
	h.exec(`UPDATE device_changes SET status = 'SUBMITTED', submitted_at = now() WHERE id = $1`, offID)
	require.NoError(t, h.run(nil, h.acts.CompleteDeviceChange, activities.CompleteInput{DeviceChangeID: offID,
		Operation: "deactivate", Status: change.Processed, Outcome: "DEACTIVATED", FinalState: change.StateDeactive,
		ReleaseMSISDN: true, ConfirmedBy: "callback", ConfirmedAt: time.Now()}))
	h.mustDisconnectBilling(off, offID)
	require.Equal(t, 1.0, steps(change.BillingDisconnected, ""))
}
