// Package metrics holds the product's Prometheus metrics and bridges the
// Temporal SDK's own metrics into the same registry.
package metrics

import (
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.temporal.io/sdk/client"
	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"
)

// Metrics are the product's own metrics.
type Metrics struct {
	Registry *prometheus.Registry

	// DeviceChanges counts finished device changes by operation and status
	// (PROCESSED | ERROR) and outcome or error code.
	DeviceChanges *prometheus.CounterVec
	// ConfirmationSeconds is the time from sending to ThingSpace's
	// confirmation, by operation and source (callback | poll | sync).
	ConfirmationSeconds *prometheus.HistogramVec
	// ThingSpaceRequests counts HTTP attempts to ThingSpace by operation and
	// HTTP status ("error" when no answer came).
	ThingSpaceRequests *prometheus.CounterVec
	// ThingSpaceErrors counts ThingSpace errors by operation and code.
	ThingSpaceErrors *prometheus.CounterVec
	// RevioRequests counts HTTP attempts to Rev.io by operation and status.
	RevioRequests *prometheus.CounterVec
	// Callbacks counts callbacks received by the callback receiver, by
	// result (stored, duplicate, unauthorized, invalid, too_large, store_failed,
	// forbidden: source not allowed, busy: over callbacks.max_concurrent,
	// wrong_tenant: a request of another tenant than the path's).
	Callbacks *prometheus.CounterVec
	// CallbackSignals counts signals sent for callbacks, by result.
	CallbackSignals *prometheus.CounterVec
	// BillingSteps counts the Rev.io steps recorded, by the billing status
	// they left (CREATED, EXISTING, DISCONNECTED, ERROR) and, for ERROR, the
	// failure's code.
	BillingSteps *prometheus.CounterVec
}

// New creates the metrics in a fresh registry, with Go and process
// collectors.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// counter creates a counter of the registry.
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: name,
			Help: help,
		}, labels)
		reg.MustRegister(c)
		return c
	}
	confirmation := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tsbulk_confirmation_seconds",
		Help:    "Time from sending to ThingSpace's confirmation of a device change.",
		Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 21600, 86400},
	}, []string{"operation", "source"})
	reg.MustRegister(confirmation)
	m := &Metrics{
		Registry: reg,
		DeviceChanges: counter("tsbulk_device_changes_total",
			"Device changes finished, by operation, status and outcome or error code.",
			"operation", "status", "reason"),
		ConfirmationSeconds: confirmation,
		ThingSpaceRequests: counter("tsbulk_thingspace_requests_total",
			"HTTP attempts to ThingSpace, by operation and HTTP status.", "operation", "status"),
		ThingSpaceErrors: counter("tsbulk_thingspace_errors_total",
			"ThingSpace errors, by operation and error code.", "operation", "code"),
		RevioRequests: counter("tsbulk_revio_requests_total",
			"HTTP attempts to Rev.io, by operation and HTTP status.", "operation", "status"),
		Callbacks: counter("tsbulk_callbacks_received_total", "ThingSpace callbacks received, by result.", "result"),
		CallbackSignals: counter("tsbulk_callback_signals_total",
			"Signals sent to device workflows for callbacks, by result.", "result"),
		BillingSteps: counter("tsbulk_billing_steps_total",
			"Rev.io billing steps recorded, by the billing status they left and the failure's code.", "status", "code"),
	}
	// The series alerts watch start at 0: a counter that first appears at
	// 1 has no increase() in Prometheus, and the first failure would go
	// unnoticed.
	for _, r := range []string{"signalled", "workflow_not_running", "signal_failed", "unmatched"} {
		m.CallbackSignals.WithLabelValues(r)
	}
	for _, c := range BillingErrorCodes {
		m.BillingSteps.WithLabelValues("ERROR", c)
	}
	return m
}

// BillingErrorCodes are the code label values of a failed Rev.io step
// (tsbulk_billing_steps_total{status="ERROR"}): the product's error types
// of the step, "unknown" when the failure had none and "other" for any
// other, so that the label set stays bounded.
var BillingErrorCodes = []string{"MSISDN_UNKNOWN", "RevioError", "InvalidData", "unknown", "other"}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// TemporalTimerBuckets are the buckets (seconds) of the Temporal SDK's
// latency histograms: from a millisecond (a workflow task, a poll answered
// at once) to the minutes of a long poll or a slow activity.
var TemporalTimerBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
	60, 120, 300, 600}

// TemporalHandler returns a Temporal SDK metrics handler that exports into
// the same registry. Errors from the meter are logged: the SDK's default is
// to panic, which must never take a worker down.
func (m *Metrics) TemporalHandler(logger *slog.Logger) (client.MetricsHandler, error) {
	exporter, err := otelprom.New(otelprom.WithRegisterer(m.Registry), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, err
	}
	// The SDK's timers are histograms in seconds; OpenTelemetry's default
	// buckets (0, 5, 10, ... 10000) put every workflow task of a healthy
	// worker in the first one.
	timers := sdkmetric.NewView(
		sdkmetric.Instrument{Kind: sdkmetric.InstrumentKindHistogram, Unit: "s"},
		sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: TemporalTimerBuckets}},
	)
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter), sdkmetric.WithView(timers))
	return temporalotel.NewMetricsHandler(temporalotel.MetricsHandlerOptions{
		Meter:                provider.Meter("temporal-sdk-go"),
		UseMonotonicCounters: true,
		OnError: func(err error) {
			logger.Warn("temporal metrics error", "error", err)
		},
	}), nil
}
