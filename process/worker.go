package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"
	"golang.org/x/sync/errgroup"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/metrics"
	"github.com/iot-ops/tsbulk/ratelimit"
	"github.com/iot-ops/tsbulk/revio"
	"github.com/iot-ops/tsbulk/submission"
	"github.com/iot-ops/tsbulk/thingspace"
	"github.com/iot-ops/tsbulk/workflows"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// NewActivities builds the activities with their ThingSpace and Rev.io
// clients. Every HTTP exchange of both clients goes to the audit log.
func NewActivities(
	cfg *config.Config,
	store *db.Store,
	tc client.Client,
	m *metrics.Metrics,
	logger *slog.Logger,
) (*activities.Activities, error) {
	// The four-eyes rule is the worker's: applied when each bulk change
	// starts, whoever submitted it and with whatever configuration.
	approval := submission.NewApprovalRule(cfg.Approval.Operations, cfg.Approval.MinDevices, cfg.Approval.ExpiresAfter)
	acts := &activities.Activities{
		Store: store, Temporal: tc, Metrics: m, Logger: logger,
		Approval:            approval,
		Limits:              db.ClaimLimits{ActionsPerLinePerDay: cfg.Limits.ActionsPerLinePerDay},
		PollBatchThreshold:  cfg.Worker.PollBatchThreshold,
		PollMaxRequests:     cfg.Worker.PollMaxRequests,
		PollerSignalsPerRun: cfg.Worker.PollerSignalsPerRun,
		ReconcileSettle:     cfg.Worker.ReconcileSettle,
		// The setting counts at send time, in the worker.
		DeleteAfterDeactivation: cfg.ThingSpace.DeleteAfterDeactivation,
		Submissions: activities.SubmissionSettings{
			InboxDirs:            cfg.Submission.InboxDirs,
			Account:              cfg.ThingSpace.Account,
			BatchSize:            cfg.Bulk.BatchSize,
			Options:              cfg.BulkChangeOptions(),
			ActionsPerLinePerDay: cfg.Limits.ActionsPerLinePerDay,
			MaxFileBytes:         cfg.Submission.MaxFileBytes,
			Approval:             approval,
		},
	}
	rules := ratelimit.Rules(cfg.Limits.RequestsPerHour, cfg.Limits.RequestsWindow, cfg.Limits.ActivatesPerMinute)
	if len(rules) > 0 {
		acts.Limiter = &ratelimit.Limiter{Pool: store.Pool, Rules: rules, DefaultAccount: cfg.ThingSpace.Account}
	}
	// Every HTTP exchange of both clients goes to the audit log.
	auditor := &activities.Auditor{Store: store, Metrics: m, Logger: logger}
	tsCfg := ThingSpaceConfig(cfg)
	tsCfg.HTTPTimeout = cfg.ThingSpace.HTTPTimeout
	tsCfg.MaxRetries = transportRetries(cfg.ThingSpace.MaxRetries)
	tsCfg.Observer = auditor.ThingSpace
	tsCfg.Logger = logger
	// A refusal latches the credentials for every worker and restart, not
	// just this client: each trying once would lock the Verizon account.
	tsCfg.Latches = store.CredentialLatches()
	if acts.Limiter != nil {
		tsCfg.Limiter = acts.Limiter
	}
	ts, err := thingspace.New(tsCfg)
	if err != nil {
		return nil, fmt.Errorf("thingspace client: %w", err)
	}
	acts.ThingSpace = ts
	if cfg.Revio.Enabled {
		rv, err := revio.New(revio.Config{
			BaseURL:         cfg.Revio.BaseURL,
			Login:           cfg.Revio.Login,
			ClientCode:      cfg.Revio.ClientCode,
			Password:        cfg.Revio.Password.Reveal(),
			SubscriptionKey: cfg.Revio.SubscriptionKey.Reveal(),
			CallsPerMinute:  cfg.Revio.CallsPerMinute,
			Observer:        auditor.Revio,
		})
		if err != nil {
			return nil, fmt.Errorf("rev.io client: %w", err)
		}
		acts.Revio = rv
	}
	return acts, nil
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
// it.
func RunWorker(ctx context.Context, cfg *config.Config, logger *slog.Logger) error {
	m := metrics.New()
	return connected(ctx, cfg, m, logger, func(store *db.Store, tc client.Client) error {
		acts, err := NewActivities(cfg, store, tc, m, logger)
		if err != nil {
			return err
		}
		m.WatchStore(store, StoreGauges(cfg, logger))
		ApplyWorkerProcessSettings(cfg)
		defer StartCPUProfile(logger)()
		w := NewWorker(tc, acts, cfg)
		if err := w.Start(); err != nil {
			return fmt.Errorf("start worker: %w", err)
		}
		defer w.Stop()
		// The server it polls is in the "temporal connection" line before.
		logger.Info("worker started", "taskQueue", api.TaskQueue)

		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error {
			ready := readiness(store, tc, credentialsAccepted(acts.ThingSpace))
			return serve(gctx, adminServer(cfg.Worker.Listen, m, ready), logger, "worker admin endpoints")
		})
		if cfg.Worker.EmbedCallbackReceiver {
			g.Go(func() error { return runReceiver(gctx, cfg, store, tc, m, logger, false) })
		}
		return g.Wait()
	})
}

// credentialsAccepted is the worker's readiness check of its ThingSpace
// credentials: not ready while a refusal is latched, since the worker sends
// nothing to ThingSpace until an operator resets it. It says when and
// with which code, never the account or the URL.
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
		code := r.Code
		if code == "" {
			code = fmt.Sprintf("HTTP %d", r.HTTPStatus)
		}
		return fmt.Errorf("thingspace credentials refused at %s (%s); reset with `starter credentials-reset`",
			r.At.UTC().Format(time.RFC3339), code)
	}
}
