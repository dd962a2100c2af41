package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/harness/stack"
	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
)

func run(o options) error {
	ctx := context.Background()
	admin, err := pgxpool.New(ctx, o.adminDB)
	if err != nil {
		return err
	}
	defer admin.Close()
	dbURL, dbName, drop, err := scratchDatabase(ctx, o.adminDB)
	if err != nil {
		return err
	}
	defer drop()
	r := runResult{o: o, commit: o.source}
	if r.commit == "" {
		r.commit = sourceState()
	}
	r.server = "Temporal CLI dev server (SQLite in memory), started by the benchmark"
	if o.temporalAddress != "" {
		r.server = "Temporal server at " + o.temporalAddress
	}
	fmt.Printf("starting: %s; simulator (answers %s+%s, callbacks %s+%s, limit %d requests/h per account); load %s\n",
		r.server, o.latency, o.jitter, o.completion, o.completionJit, o.limit, loadAvg())
	s, err := stack.Start(ctx, stack.Options{
		DatabaseURL:     dbURL,
		TemporalAddress: o.temporalAddress,
		ThingSpace: tssim.Config{
			Accounts:        []string{productAccount, baselineAccount},
			CompletionDelay: o.completion, CompletionJitter: o.completionJit, CallbackRetryInterval: 30 * time.Second,
			CallbackConcurrency: 32,
			Limits:              tssim.Limits{RequestsPerHour: o.limit, ActionsPerLinePerDay: -1},
			Faults:              tssim.Faults{Latency: o.latency, LatencyJitter: o.jitter},
		},
		Config: func(c *config.Config) {
			c.Limits.RequestsPerHour = o.limit
			c.Limits.ActivatesPerMinute = 100
			c.Limits.ActionsPerLinePerDay = 0
			c.Bulk.BatchSize = o.batch
			c.Bulk.Window = o.window
			c.Bulk.ShardSize = o.shardSize
			c.Bulk.ShardsAtOnce = o.shardsAtOnce
			c.Bulk.CallbackTimeout = 2 * time.Minute
			c.Bulk.ConfirmDeadline = time.Hour
			c.Bulk.PollInterval = 30 * time.Second
			c.Bulk.PollMaxInterval = 2 * time.Minute
			c.Revio.Enabled = false
			c.Worker.MaxConcurrentActivities = 200
			c.Worker.StickyCacheSize = o.cache
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return err
	}
	defer s.Close()

	m := &meter{pgProduct: newPGCPU(admin, dbName)}
	defer m.pgProduct.close()
	if port := portOf(s.Config.Temporal.Address); port > 0 {
		if m.serverPID, err = listenerPID(port); err != nil {
			fmt.Println("  (the Temporal server's CPU is not measured:", err, ")")
		}
	}
	if o.temporalAddress != "" {
		// Its persistence: the databases scripts/temporal-postgres.sh creates.
		m.pgServer = newPGCPU(admin, "temporal", "temporal_visibility")
		defer m.pgServer.close()
	}

	rows, seeds := plan(o, "891480090", productAccount)
	bRows, bSeeds := plan(o, "891480091", baselineAccount)
	if err := s.TS.Seed(append(seeds, bSeeds...)...); err != nil {
		return err
	}
	s.TS.ResetStats()

	// The baseline starts first and runs beside the floor and the product
	// alike (it is one HTTP request at a time: light).
	baseDone := make(chan baselineResult, 1)
	if o.baseline != "off" {
		n := len(bRows)
		if o.baseline == "sample" {
			n = min(n, o.baselineSample)
		}
		go func() { baseDone <- runBaseline(ctx, s, sampleRows(bRows, n), o) }()
	}

	// runFloorPhase runs the floors once, before or after the product.
	floorPhases := 0
	runFloorPhase := func() error {
		label := o.floorOrder
		if o.floorOrder == "around" {
			label = []string{"before", "after"}[min(floorPhases, 1)]
		}
		label += " the product"
		floorPhases++
		if o.floor {
			p, err := runFloor(ctx, s, o, m, singleFloor(s, o, o.floorPageWait), label)
			if err != nil {
				return err
			}
			r.floors = append(r.floors, p)
			r.floor = combine(r.floors)
		}
		if o.floorShards > 0 {
			p, err := runFloor(ctx, s, o, m, treeFloor(s, o), label)
			if err != nil {
				return err
			}
			r.trees = append(r.trees, p)
			r.tree = combine(r.trees)
		}
		if o.floor && o.floorCompare && r.pageWait == nil {
			var err error
			r.pageWait, err = runFloor(ctx, s, o, m, singleFloor(s, o, true), "pages of 200 waited for, as BulkChange started children before")
			return err
		}
		return nil
	}
	if o.floorOrder != "after" {
		if err := runFloorPhase(); err != nil {
			return err
		}
	}
	if o.product {
		if err := runProduct(ctx, s, o, m, rows, &r); err != nil {
			return err
		}
	}
	if o.floorOrder != "before" {
		if err := runFloorPhase(); err != nil {
			return err
		}
	}
	if o.baseline != "off" {
		fmt.Println("waiting for the baseline to finish...")
		r.base = <-baseDone
		if r.base.err != nil {
			return r.base.err
		}
	}
	printTable(r)
	return nil
}
