package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"
	"golang.org/x/sync/errgroup"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/metrics"
	"github.com/iot-ops/tsbulk/notify"
	"github.com/iot-ops/tsbulk/setup"
	"github.com/iot-ops/tsbulk/submission"
	"github.com/iot-ops/tsbulk/thingspace"
	"github.com/iot-ops/tsbulk/workflows"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// NewActivities builds the activities with the clients of every tenant
// (WorkerTenants): each activity uses its bulk change's tenant's, the
// poller its account's. The default tenant's, when the configuration has
// one, are also the Activities' own fields. Every HTTP exchange of the
// clients goes to the audit log.
func NewActivities(
	cfg *config.Config,
	store *db.Store,
	tc client.Client,
	m *metrics.Metrics,
	logger *slog.Logger,
) (*activities.Activities, error) {
	acts, _, err := newWorkerActivities(cfg, store, tc, m, logger)
	return acts, err
}

func newWorkerActivities(
	cfg *config.Config,
	store *db.Store,
	tc client.Client,
	m *metrics.Metrics,
	logger *slog.Logger,
) (*activities.Activities, *WorkerTenants, error) {
	acts := &activities.Activities{
		Store: store, Temporal: tc, Metrics: m, Logger: logger,
		PollBatchThreshold:  cfg.Worker.PollBatchThreshold,
		PollMaxRequests:     cfg.Worker.PollMaxRequests,
		PollerSignalsPerRun: cfg.Worker.PollerSignalsPerRun,
		ReconcileSettle:     cfg.Worker.ReconcileSettle,
		Submissions: activities.SubmissionSettings{
			InboxDirs:            cfg.Submission.InboxDirs,
			Account:              cfg.ThingSpace.Account,
			BatchSize:            cfg.Bulk.BatchSize,
			Options:              cfg.BulkChangeOptions(),
			ActionsPerLinePerDay: cfg.Limits.ActionsPerLinePerDay,
			MaxFileBytes:         cfg.Submission.MaxFileBytes,
			Approval:             submission.NewApprovalRule(cfg.Approval.Operations, cfg.Approval.MinDevices, cfg.Approval.ExpiresAfter),
		},
	}
	auditor := &activities.Auditor{Store: store, Metrics: m, Logger: logger}
	tenants := NewWorkerTenants(cfg, store, auditor, logger)
	acts.Tenants = tenants
	// A bulk change submitted through Temporal takes its tenant's settings
	// as the worker has them now (reloaded on SIGHUP).
	acts.Submissions.ForTenant = func(tenant, account string) (submission.Request, error) {
		return submission.ForTenant(tenants.Config(), tenant, account)
	}
	// The channels of notifications.*: a setting that cannot work stops
	// the worker at start rather than losing every event.
	sender, err := notify.NewSender(cfg, setup.TemporalNamespace(cfg))
	if err != nil {
		return nil, nil, err
	}
	acts.Notifier = &activities.Notifier{Sender: sender, Store: store, Logger: logger}
	if cfg.HasDefaultTenant() {
		// Built now: a default tenant whose clients cannot be built stops
		// the worker at start, as before tenants.
		def, err := tenants.Tenant(context.Background(), config.DefaultTenant)
		if err != nil {
			return nil, nil, err
		}
		acts.ThingSpace, acts.Revio, acts.Limiter = def.ThingSpace, def.Revio, def.Limiter
		acts.Approval, acts.Limits, acts.DeleteAfterDeactivation = def.Approval, def.Limits, def.DeleteAfterDeactivation
	}
	return acts, tenants, nil
}

// transportRetries maps thingspace.max_retries to the client's setting: the
// client reads 0 as "its default", the setting means "none".
func transportRetries(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// NewWorker creates the worker of the product's task queue with every
// workflow and activity registered. tune adjusts the options (tests add
// interceptors).
func NewWorker(
	tc client.Client,
	acts *activities.Activities,
	cfg *config.Config,
	tune ...func(*worker.Options),
) worker.Worker {
	opts := worker.Options{
		MaxConcurrentActivityExecutionSize: cfg.Worker.MaxConcurrentActivities,
		MaxConcurrentWorkflowTaskPollers:   cfg.Worker.WorkflowTaskPollers,
		MaxConcurrentActivityTaskPollers:   cfg.Worker.ActivityTaskPollers,
		DeadlockDetectionTimeout:           cfg.Worker.DeadlockDetectionTimeout,
		WorkerStopTimeout:                  cfg.Worker.StopTimeout,
	}
	for _, t := range tune {
		t(&opts)
	}
	opts.Interceptors = append([]interceptor.WorkerInterceptor{activities.KeepAlive()}, opts.Interceptors...)
	w := worker.New(tc, api.TaskQueue, opts)
	Register(w, acts)
	return w
}

// Register registers the workflows and activities on a worker.
func Register(r interface {
	workflows.Registry
	RegisterActivityWithOptions(any, activity.RegisterOptions)
}, acts *activities.Activities) {
	workflows.Register(r)
	activities.Register(r, acts)
}

// ThingSpaceConfig is the ThingSpace client's configuration from the
// settings: where the API is, the credentials and the account.
func ThingSpaceConfig(cfg *config.Config) thingspace.Config {
	return thingspace.Config{
		BaseURL:      cfg.ThingSpace.BaseURL,
		ClientID:     cfg.ThingSpace.ClientID,
		ClientSecret: cfg.ThingSpace.ClientSecret.Reveal(),
		Username:     cfg.ThingSpace.Username,
		Password:     cfg.ThingSpace.Password.Reveal(),
		AccountName:  cfg.ThingSpace.Account,
	}
}

// RunWorker runs the worker process until ctx ends: the Temporal worker,
// its admin endpoints, and the callback receiver when configured to embed
// it. configFile is the file cfg was read from ("" = none): on SIGHUP the
// worker reads it (and the environment) again and takes its tenants (new
// tenants, changed credentials or settings, removed ones) without a
// restart; a configuration that does not validate is logged and the
// tenants stay as they were. Only the tenants are reloaded: any other
// setting needs a restart.
func RunWorker(ctx context.Context, cfg *config.Config, configFile string, logger *slog.Logger) error {
	m := metrics.New()
	return connected(ctx, cfg, m, logger, func(store *db.Store, tc client.Client) error {
		acts, tenants, err := newWorkerActivities(cfg, store, tc, m, logger)
		if err != nil {
			return err
		}
		defer reloadOnHangup(ctx, func() { _ = tenants.Reload(workerConfig(configFile)) })()
		m.WatchStore(store, StoreGauges(cfg, logger))
		ApplyWorkerProcessSettings(cfg)
		defer StartCPUProfile(logger)()
		w := NewWorker(tc, acts, cfg)
		if err := w.Start(); err != nil {
			return fmt.Errorf("start worker: %w", err)
		}
		defer w.Stop()
		// The server it polls is in the "temporal connection" line before.
		logger.Info("worker started", "taskQueue", api.TaskQueue, "tenants", tenants.IDs())

		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error {
			ready := readiness(store, tc, tenantCredentials(tenants))
			return serve(gctx, adminServer(cfg.Worker.Listen, m, ready), logger, "worker admin endpoints")
		})
		if cfg.Worker.EmbedCallbackReceiver {
			g.Go(func() error { return runReceiver(gctx, cfg, store, tc, m, logger, false) })
		}
		return g.Wait()
	})
}

// credentialsAccepted is the readiness check of one ThingSpace client's
// credentials: not ready while a refusal is latched, since it sends
// nothing to ThingSpace until an operator resets it. It says when and
// with which code, never the account or the URL. (The worker checks
// every tenant's: tenantCredentials.)
func credentialsAccepted(ts *thingspace.Client) func(context.Context) error {
	return func(ctx context.Context) error {
		r, err := ts.CredentialRefusal(ctx)
		if err != nil {
			slog.Default().Warn("not ready: credential latch", "error", err)
			return errors.New("postgres is not reachable")
		}
		if r == nil {
			return nil
		}
		return refusalError(r)
	}
}
