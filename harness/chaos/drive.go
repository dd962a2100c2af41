package chaos

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/iot-ops/tsbulk/harness/stack"
)

// progress reads where the bulk change stands from PostgreSQL.
func (h *harness) progress(ctx context.Context) (Progress, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var p Progress
	var status string
	err := h.pool.QueryRow(ctx, `
		SELECT b.status,
			(SELECT count(*) FROM device_changes WHERE bulk_change_id = b.id),
			(SELECT count(*) FROM device_changes WHERE bulk_change_id = b.id AND status <> 'PENDING'),
			(SELECT count(*) FROM device_changes WHERE bulk_change_id = b.id AND status IN ('PROCESSED', 'ERROR'))
		FROM bulk_changes b WHERE b.id = $1`, h.bulkID).Scan(&status, &p.Total, &p.Sent, &p.Final)
	return p, status, err
}

// drive follows the bulk change to its end, injecting the schedule's
// faults as its progress reaches them and restarting any process that
// ended without being killed (a supervisor's job). It reports whether the
// bulk change ended before the timeout.
func (h *harness) drive(ctx context.Context, sched Schedule) (bool, error) {
	deadline := time.Now().Add(h.o.Timeout)
	next := 0
	var last Progress
	lastLog := time.Now()
	watch, err := h.watchShards(ctx)
	if err != nil {
		return false, err
	}
	var armed []armedKill
	defer func() {
		h.armed.Unfired = len(armed)
		h.log("shards handed over to their next run %d times (seen as they happened)", watch.stop())
	}()
	for {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		p, status, err := h.progress(ctx)
		if err == nil {
			last = p
			if status == "FINISHED" || status == "FAILED" {
				h.log("bulk change %s: %d/%d final", status, p.Final, p.Total)
				for _, a := range armed {
					h.log("%s armed at %.1f%% never fired: no shard handed over to its next run after it", a.Kind, a.At*100)
				}
				return true, nil
			}
		}
		for next < len(sched.Events) && sched.Events[next].At <= last.Fraction() {
			e := sched.Events[next]
			next++
			if e.Kind.atShardCAN() {
				h.log("armed  %s", e)
				armed = append(armed, armedKill{Event: e, since: time.Now()})
				continue
			}
			if err := h.inject(ctx, e); err != nil {
				return false, fmt.Errorf("inject %s: %w", e.Kind, err)
			}
		}
		if armed, err = h.fireArmed(ctx, watch, armed); err != nil {
			return false, err
		}
		if err := h.supervise(ctx); err != nil {
			return false, err
		}
		if time.Since(lastLog) > 15*time.Second {
			h.log("progress %.0f%%: %d sent, %d final of %d", last.Fraction()*100, last.Sent, last.Final, last.Total)
			lastLog = time.Now()
		}
		if time.Now().After(deadline) {
			h.log("gave up waiting after %s: %d/%d final", h.o.Timeout, last.Final, last.Total)
			return false, nil
		}
		// A shard's continue-as-new wakes the loop: an armed kill must
		// meet it.
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-watch.wake:
		}
		t.Stop()
	}
}

// supervise restarts a product process that ended on its own; the
// simulators hold their state in memory and cannot be restarted.
func (h *harness) supervise(ctx context.Context) error {
	for _, p := range append([]*stack.Proc{h.receiver}, h.workers[:]...) {
		if !p.Running() {
			h.log("%s ended on its own (see %s); restarting it", p.Name, p.Log)
			if err := p.Start(); err != nil {
				return err
			}
		}
	}
	for _, p := range []*stack.Proc{h.ts, h.rv} {
		if !p.Running() {
			return fmt.Errorf("%s ended on its own (see %s)", p.Name, p.Log)
		}
	}
	if d, ok := h.temporal.(*devServer); ok && !d.proc.Running() {
		h.log("the Temporal dev server ended on its own (see %s); restarting it", d.proc.Log)
		return d.start(ctx)
	}
	return nil
}

func (h *harness) inject(ctx context.Context, e Event) error {
	h.log("fault %s", e)
	h.mu.Lock()
	h.injected[e.Kind]++
	h.fired = append(h.fired, Fired{At: time.Now(), Event: e})
	h.mu.Unlock()
	switch e.Kind {
	case KillWorkers, KillWorkersAtShardCAN:
		for _, w := range h.workers {
			w.Kill()
		}
		sleepCtx(ctx, e.Down)
		for _, w := range h.workers {
			if err := w.Start(); err != nil {
				return err
			}
		}
	case KillOneWorker, KillOneWorkerAtShardCAN:
		w := h.workers[e.Worker%len(h.workers)]
		w.Kill()
		sleepCtx(ctx, e.Down)
		return w.Start()
	case KillReceiver:
		h.receiver.Kill()
		sleepCtx(ctx, e.Down)
		if err := h.receiver.Start(); err != nil {
			return err
		}
		return stack.WaitTCP(h.cbAddr, time.Minute)
	case RestartTemporal:
		return h.temporal.Restart(ctx, e.Down)
	case RestartPostgres:
		if err := h.pg.Crash(ctx); err != nil {
			return err
		}
		sleepCtx(ctx, e.Down)
		return h.pg.Start(ctx)
	case TS5xx, TSLostAnswers, TSGatewayAfterApply, Revio5xx, Revio429, RevioLateCreates:
		return h.faults.window(ctx, e.Kind, e.Down)
	case TSSessionExpiry:
		return h.tsAdmin.do(ctx, http.MethodPost, "/admin/sessions/expire", nil, nil)
	case TSTokenExpiry:
		return h.tsAdmin.do(ctx, http.MethodPost, "/admin/oauth/expire", nil, nil)
	case TS429Burst:
		return h.tsAdmin.do(ctx, http.MethodPost, "/admin/throttle-burst",
			map[string]any{"requests": e.N, "retry_after": e.Down.String()}, nil)
	default:
		return fmt.Errorf("unknown fault kind %q", e.Kind)
	}
	return nil
}
