package process

import (
	"log/slog"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/metrics"
	"github.com/iot-ops/tsbulk/ratelimit"
)

// StoreGauges are the options of the worker's store gauges: the rate
// limiter's rules as the worker applies them, and its account.
func StoreGauges(cfg *config.Config, logger *slog.Logger) metrics.StoreOptions {
	o := metrics.StoreOptions{Logger: logger}
	if cfg.ThingSpace.Account != "" {
		o.Accounts = []string{cfg.ThingSpace.Account}
	}
	for _, r := range ratelimit.Rules(cfg.Limits.RequestsPerHour, cfg.Limits.RequestsWindow, cfg.Limits.ActivatesPerMinute) {
		o.Budgets = append(o.Budgets, metrics.Budget{Bucket: r.Bucket, Limit: r.Limit, Window: r.Window})
	}
	return o
}
