package stack

import (
	"fmt"
	"os"
	"strings"

	"github.com/iot-ops/tsbulk/config"
)

// Env is the stack's configuration as environment variables, for a worker
// or starter run as a separate process.
func (s *Stack) Env() []string {
	c := s.Config
	kv := map[string]string{
		"dev":                               fmt.Sprint(c.Dev),
		"temporal.address":                  c.Temporal.Address,
		"temporal.namespace":                c.Temporal.Namespace,
		"temporal.codec.keys_dir":           c.Temporal.Codec.KeysDir,
		"temporal.codec.current_key_id":     c.Temporal.Codec.CurrentKeyID,
		"database.url":                      c.Database.URL.Reveal(),
		"database.max_conns":                "10",
		"thingspace.base_url":               c.ThingSpace.BaseURL,
		"thingspace.client_id":              c.ThingSpace.ClientID,
		"thingspace.client_secret":          c.ThingSpace.ClientSecret.Reveal(),
		"thingspace.username":               c.ThingSpace.Username,
		"thingspace.password":               c.ThingSpace.Password.Reveal(),
		"thingspace.account":                c.ThingSpace.Account,
		"thingspace.http_timeout":           c.ThingSpace.HTTPTimeout.String(),
		"callbacks.enabled":                 fmt.Sprint(c.Callbacks.Enabled),
		"callbacks.username":                c.Callbacks.Username,
		"callbacks.password":                c.Callbacks.Password.Reveal(),
		"revio.enabled":                     fmt.Sprint(c.Revio.Enabled),
		"revio.base_url":                    c.Revio.BaseURL,
		"revio.login":                       c.Revio.Login,
		"revio.client_code":                 c.Revio.ClientCode,
		"revio.password":                    c.Revio.Password.Reveal(),
		"revio.subscription_key":            c.Revio.SubscriptionKey.Reveal(),
		"revio.disconnect_on_deactivate":    fmt.Sprint(c.Revio.DisconnectOnDeactivate),
		"bulk.batch_size":                   fmt.Sprint(c.Bulk.BatchSize),
		"bulk.window":                       fmt.Sprint(c.Bulk.Window),
		"bulk.starts_per_run":               fmt.Sprint(c.Bulk.StartsPerRun),
		"bulk.callback_timeout":             c.Bulk.CallbackTimeout.String(),
		"bulk.confirm_deadline":             c.Bulk.ConfirmDeadline.String(),
		"bulk.poll_interval":                c.Bulk.PollInterval.String(),
		"bulk.poll_max_interval":            c.Bulk.PollMaxInterval.String(),
		"bulk.default_site":                 c.Bulk.DefaultSite,
		"bulk.default_site_assignment":      fmt.Sprint(c.Bulk.DefaultSiteAssignment),
		"bulk.stall_check":                  c.Bulk.StallCheck.String(),
		"approval.operations":               approvalOperations(c.Approval.Operations),
		"limits.requests_per_hour":          fmt.Sprint(c.Limits.RequestsPerHour),
		"limits.activates_per_minute":       fmt.Sprint(c.Limits.ActivatesPerMinute),
		"limits.requests_window":            c.Limits.RequestsWindow.String(),
		"limits.actions_per_line_per_day":   fmt.Sprint(c.Limits.ActionsPerLinePerDay),
		"worker.listen":                     "127.0.0.1:0",
		"worker.max_concurrent_activities":  fmt.Sprint(c.Worker.MaxConcurrentActivities),
		"worker.poll_batch_threshold":       fmt.Sprint(c.Worker.PollBatchThreshold),
		"log.level":                         "warn",
		"worker.reconcile_settle":           c.Worker.ReconcileSettle.String(),
		"worker.deadlock_detection_timeout": c.Worker.DeadlockDetectionTimeout.String(),
		"worker.workflow_task_pollers":      fmt.Sprint(c.Worker.WorkflowTaskPollers),
		"worker.activity_task_pollers":      fmt.Sprint(c.Worker.ActivityTaskPollers),
	}
	kv["thingspace.delete_after_deactivation"] = fmt.Sprint(c.ThingSpace.DeleteAfterDeactivation)
	if c.Revio.RetryFor > 0 {
		// Only when set: a zero would fail the worker process's validation.
		kv["revio.retry_for"] = c.Revio.RetryFor.String()
	}
	if c.Worker.PollerSignalsPerRun > 0 {
		// Only when set, as the sticky cache size below.
		kv["worker.poller_signals_per_run"] = fmt.Sprint(c.Worker.PollerSignalsPerRun)
	}
	if c.Worker.StickyCacheSize > 0 {
		// Only when set: otherwise the worker process keeps its own default.
		kv["worker.sticky_cache_size"] = fmt.Sprint(c.Worker.StickyCacheSize)
	}
	// The Temporal connection's settings, only when set: an empty one
	// takes Temporal's environment configuration.
	t := c.Temporal
	for k, v := range map[string]string{"temporal.tls.ca_file": t.TLS.CAFile, "temporal.tls.cert_file": t.TLS.CertFile,
		"temporal.tls.key_file": t.TLS.KeyFile, "temporal.tls.server_name": t.TLS.ServerName,
		"temporal.api_key": t.APIKey.Reveal()} {
		if v != "" {
			kv[k] = v
		}
	}
	if t.TLS.Enabled != nil {
		kv["temporal.tls.enabled"] = fmt.Sprint(*t.TLS.Enabled)
	}
	env := os.Environ()
	for k, v := range kv {
		env = append(env, config.EnvName(k)+"="+v)
	}
	return env
}

// approvalOperations is approval.operations as an environment variable,
// where an empty value would read as unset.
func approvalOperations(ops []string) string {
	if len(ops) == 0 {
		return "none"
	}
	return strings.Join(ops, ",")
}
