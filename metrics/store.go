package metrics

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
)

// Budget is one rule of the ThingSpace rate limiter (ratelimit.Rule): at
// most Limit requests in any rolling Window, counted in Bucket.
type Budget struct {
	Bucket string
	Limit  int
	Window time.Duration
}

// StoreOptions say what the store gauges cover.
type StoreOptions struct {
	// Budgets are the limiter's rules; none: no budget gauges.
	Budgets []Budget
	// Accounts always get budget gauges, zero when the ledger has nothing
	// of theirs (the configured account before its first request).
	Accounts []string
	// Timeout bounds the queries of one scrape (default 5 s, within
	// Prometheus's default scrape timeout of 10 s).
	Timeout time.Duration
	Logger  *slog.Logger
}

// storeCollector reports, at each scrape, what only PostgreSQL knows: the
// bulk changes not ended by status (approvals waiting among them), the
// progress of each one in flight, the ThingSpace request budget in use and
// the credential latches. Every worker reports the same figures, since
// they are the database's: dashboards and alerts aggregate them with max.
type storeCollector struct {
	store *db.Store
	o     StoreOptions

	up, bulkChanges, devices, lastProgress           *prometheus.Desc
	budgetUsed, budgetLimit, throttled, credsRefused *prometheus.Desc
}

// bulkStatusesNotEnded are the statuses tsbulk_bulk_changes always reports,
// zero included, so that a dashboard or an alert sees 0 and not nothing.
var bulkStatusesNotEnded = []change.BulkStatus{change.BulkPending, change.BulkScheduled,
	change.BulkAwaitingApproval, change.BulkRunning, change.BulkPaused}

// deviceStatuses are the statuses tsbulk_bulk_change_devices always
// reports for each bulk change in flight.
var deviceStatuses = []change.Status{change.Pending, change.Sending, change.Sent, change.Processed,
	change.Failed, change.Cancelled}

// WatchStore registers the store's gauges (the worker does; one process
// per deployment is enough, more report the same).
func (m *Metrics) WatchStore(store *db.Store, o StoreOptions) {
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	m.Registry.MustRegister(&storeCollector{
		store: store, o: o,
		up: prometheus.NewDesc("tsbulk_store_monitoring_ok",
			"1 when the last scrape could read the store's gauges (tsbulk_bulk_change*, budgets, latches), 0 when not.",
			nil, nil),
		bulkChanges: prometheus.NewDesc("tsbulk_bulk_changes",
			"Bulk changes not ended, by status (AWAITING_APPROVAL: approvals waiting).", []string{"status"}, nil),
		devices: prometheus.NewDesc("tsbulk_bulk_change_devices",
			"Device changes of each bulk change in flight (RUNNING or PAUSED), by device change status.",
			[]string{"bulk_change_id", "status"}, nil),
		lastProgress: prometheus.NewDesc("tsbulk_bulk_change_last_progress_timestamp_seconds",
			"When a bulk change in flight last made progress (started, or one of its device changes sent or ended), "+
				"by the bulk change's status.",
			[]string{"bulk_change_id", "status"}, nil),
		budgetUsed: prometheus.NewDesc("tsbulk_thingspace_budget_used",
			"ThingSpace requests granted by the rate limiter over the bucket's last window, per account.",
			[]string{"account", "bucket"}, nil),
		budgetLimit: prometheus.NewDesc("tsbulk_thingspace_budget_limit",
			"The rate limiter's limit of the bucket's window (limits.*).", []string{"account", "bucket"}, nil),
		throttled: prometheus.NewDesc("tsbulk_thingspace_throttled",
			"1 while a ThingSpace 429 holds the account's bucket back (its Retry-After).", []string{"account", "bucket"},
			nil),
		credsRefused: prometheus.NewDesc("tsbulk_thingspace_credentials_refused",
			"ThingSpace credentials latched as refused: nothing is sent with them until `starter credentials-reset`.",
			nil, nil),
	})
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.bulkChanges, c.devices, c.lastProgress, c.budgetUsed,
		c.budgetLimit, c.throttled, c.credsRefused} {
		ch <- d
	}
}

// Collect never fails the scrape: a store that cannot be read sets
// tsbulk_store_monitoring_ok to 0 and leaves the other gauges out, so the
// process's own metrics (and its `up`) are still reported.
func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.o.Timeout)
	defer cancel()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	mon, err := c.store.Monitoring(ctx)
	budgets := map[string]map[string]db.RateBudgetUse{}
	for _, b := range c.o.Budgets {
		if err != nil {
			break
		}
		budgets[b.Bucket], err = c.store.RateBudgets(ctx, b.Bucket, b.Window, c.o.Accounts)
	}
	if err != nil {
		c.o.Logger.Warn("metrics: the store's gauges could not be read", "error", err)
		gauge(c.up, 0)
		return
	}
	gauge(c.up, 1)
	for _, s := range bulkStatusesNotEnded {
		gauge(c.bulkChanges, float64(mon.BulkChanges[string(s)]), string(s))
	}
	for _, p := range mon.InFlight {
		for _, s := range deviceStatuses {
			gauge(c.devices, float64(p.Devices[string(s)]), p.ID, string(s))
		}
		gauge(c.lastProgress, float64(p.LastProgress.UnixMilli())/1000, p.ID, p.Status)
	}
	for _, b := range c.o.Budgets {
		for account, u := range budgets[b.Bucket] {
			gauge(c.budgetUsed, float64(u.Used), account, b.Bucket)
			gauge(c.budgetLimit, float64(b.Limit), account, b.Bucket)
			throttled := 0.0
			if u.Throttled {
				throttled = 1
			}
			gauge(c.throttled, throttled, account, b.Bucket)
		}
	}
	gauge(c.credsRefused, float64(mon.CredentialRefusals))
}
