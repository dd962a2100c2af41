package activities

import (
	"context"
	"slices"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/metrics"
)

// setBillingStatus records the billing status a Rev.io step left, and
// counts it (tsbulk_billing_steps_total) once it is recorded.
func (a *Activities) setBillingStatus(
	ctx context.Context,
	id int64,
	status change.BillingStatus,
	code, message string,
) error {
	if err := a.Store.SetBillingStatus(ctx, id, status, code, message); err != nil {
		return err
	}
	if a.Metrics != nil {
		a.Metrics.BillingSteps.WithLabelValues(string(status), billingMetricCode(status, code)).Inc()
	}
	return nil
}

// billingMetricCode keeps the code label bounded: the failure's error type
// is any Go error's type name when the error was not one of ours.
func billingMetricCode(status change.BillingStatus, code string) string {
	if status != change.BillingError {
		return ""
	}
	if code == "" {
		return "unknown"
	}
	if slices.Contains(metrics.BillingErrorCodes, code) {
		return code
	}
	return "other"
}
