package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iot-ops/tsbulk/harness/stack"
	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// check takes the snapshot, runs the invariants and the leak scans, and
// fills res.
func (h *harness) check(ctx context.Context, w Workload, res *Result) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	tc, err := h.temporalClient(ctx)
	if err != nil {
		return err
	}
	defer tc.Close()
	snap, err := h.snapshot(ctx)
	if err != nil {
		return err
	}
	tree, err := readShardTree(ctx, tc, snap.Bulk.WorkflowID, h.shards, h.o.Devices)
	if err != nil {
		return err
	}
	snap.Tree = &tree
	res.Violations = Check(w, snap)
	h.mu.Lock()
	res.Shards = tree.stats(h.fired)
	h.mu.Unlock()
	res.Shards.Armed = h.armed
	if res.Observed, err = h.observe(ctx); err != nil {
		return err
	}
	res.Observed.DeviceChanges = len(snap.Changes)

	needles := h.sec.needles()
	for _, v := range w.PPUValues() {
		needles = append(needles, Needle{"a PPU value (name or address line)", v})
	}
	leaks, err := h.scanAudit(ctx, needles)
	if err != nil {
		return err
	}
	n, hv, err := scanHistories(ctx, tc, needles)
	if err != nil {
		return err
	}
	res.Workflows = n
	leaks = append(leaks, hv...)
	// The product's logs are complete once its processes are stopped.
	for _, p := range []*stack.Proc{h.workers[0], h.workers[1], h.receiver} {
		p.Stop(10 * time.Second)
	}
	for _, name := range []string{"worker-1", "worker-2", "callback-receiver", "register", "starter"} {
		data, err := os.ReadFile(h.logPath(name))
		if err != nil {
			return err
		}
		leaks = append(leaks, Leaks(needles, "the log of "+name, data)...)
	}
	res.Violations = append(res.Violations, dedupeLeaks(leaks)...)
	return nil
}

// dedupeLeaks keeps one violation per kind of value and place kind (the
// same secret in 500 histories is one finding with a count).
func dedupeLeaks(vs []Violation) []Violation {
	type key struct{ what, where string }
	counts := map[key]int{}
	first := map[key]Violation{}
	var order []key
	for _, v := range vs {
		what, where, _ := strings.Cut(v.Detail, " found in ")
		kind := where
		if strings.HasPrefix(where, "the history of ") {
			kind = "workflow histories"
		} else if strings.HasPrefix(where, "audit log") {
			kind = "audit log"
		}
		k := key{what, kind}
		if counts[k] == 0 {
			first[k] = v
			order = append(order, k)
		}
		counts[k]++
	}
	out := make([]Violation, 0, len(order))
	for _, k := range order {
		v := first[k]
		if counts[k] > 1 {
			v.Detail += fmt.Sprintf(" (and %d more places of the same kind)", counts[k]-1)
		}
		out = append(out, v)
	}
	return out
}

func (h *harness) snapshot(ctx context.Context) (Snapshot, error) {
	var s Snapshot
	err := h.pool.QueryRow(ctx, `SELECT id::text, status, total, processed, errors, coalesce(error_message, ''), workflow_id
		FROM bulk_changes WHERE id = $1`, h.bulkID).Scan(&s.Bulk.ID, &s.Bulk.Status, &s.Bulk.Total, &s.Bulk.Processed,
		&s.Bulk.Errors, &s.Bulk.ErrorMessage, &s.Bulk.WorkflowID)
	if err != nil {
		return s, fmt.Errorf("read the bulk change: %w", err)
	}
	rows, err := h.pool.Query(ctx, `
		SELECT dc.id, dc.iccid, dc.operation, dc.status, coalesce(dc.outcome, ''), coalesce(dc.final_state, ''),
			coalesce(dc.msisdn, ''), coalesce(dc.error_code, ''), coalesce(dc.error_message, ''), coalesce(dc.confirmed_by, ''),
			dc.billing_status, coalesce(dc.billing_error_code, ''), coalesce(dc.billing_error, ''),
			(SELECT count(*) FROM m2m_log l WHERE l.device_change_id = dc.id AND l.service = 'workflow' AND l.dedupe_key LIKE 'result:%'),
			(SELECT coalesce(max(r.attempts), 0) FROM thingspace_requests r
				WHERE r.bulk_change_id = dc.bulk_change_id AND r.request_key = 'ppu:' || dc.id),
			dc.batch_no
		FROM device_changes dc WHERE dc.bulk_change_id = $1 ORDER BY dc.id`, h.bulkID)
	if err != nil {
		return s, err
	}
	s.Changes, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (DeviceChange, error) {
		var d DeviceChange
		err := r.Scan(&d.ID, &d.ICCID, &d.Operation, &d.Status, &d.Outcome, &d.FinalState, &d.MSISDN, &d.ErrorCode,
			&d.ErrorMessage, &d.ConfirmedBy, &d.BillingStatus, &d.BillingErrorCode, &d.BillingError, &d.ResultEntries,
			&d.PPUSends, &d.BatchNo)
		d.WorkflowID = "bulk-change/" + h.bulkID + "/device/" + d.ICCID
		return d, err
	})
	if err != nil {
		return s, err
	}
	st, err := h.tsAdmin.tsStats(ctx)
	if err != nil {
		return s, err
	}
	s.Accepted, s.Applied = st.AcceptedChanges, st.AppliedChanges
	devs, err := h.tsAdmin.tsDevices(ctx)
	if err != nil {
		return s, err
	}
	s.Devices = make(map[string]tssim.DeviceSnapshot, len(devs))
	for _, d := range devs {
		s.Devices[d.ICCID] = d
	}
	log, err := h.tsAdmin.tsCallbacks(ctx)
	if err != nil {
		return s, err
	}
	for _, e := range log {
		if e.Outcome == tssim.OutcomeDelivered {
			s.Acknowledged = append(s.Acknowledged, e)
		}
	}
	rows, err = h.pool.Query(ctx, `SELECT request_id, iccid FROM callbacks`)
	if err != nil {
		return s, err
	}
	pairs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
		var k [2]string
		return k, r.Scan(&k[0], &k[1])
	})
	if err != nil {
		return s, err
	}
	s.Stored = make(map[[2]string]bool, len(pairs))
	for _, k := range pairs {
		s.Stored[k] = true
	}
	if s.Services, err = h.rvAdmin.revioServices(ctx); err != nil {
		return s, err
	}
	if s.Products, err = h.rvAdmin.revioProducts(ctx); err != nil {
		return s, err
	}
	return s, nil
}

// observe counts the faults as the simulators and the database saw them.
func (h *harness) observe(ctx context.Context) (Observed, error) {
	var o Observed
	st, err := h.tsAdmin.tsStats(ctx)
	if err != nil {
		return o, err
	}
	for _, byStatus := range st.Responses {
		for code, n := range byStatus {
			switch {
			case code >= 500:
				o.TS5xx += n
			case code == 429:
				o.TS429 += n
			}
		}
	}
	for _, n := range st.Requests {
		o.TSRequests += n
	}
	o.TSLostAnswers, o.TSLogins, o.TSTokens = st.AnswersStalled, st.Logins, st.OAuthTokensIssued
	o.TSGatewayAfterApply = st.GatewayAfterApply
	o.CallbacksDropped, o.CallbacksDuplicated, o.CallbacksLate = st.CallbacksDropped, st.CallbacksDuplicated, st.CallbacksLate
	o.CallbackAttemptsFailed = st.CallbackAttemptsFailed
	rv, err := h.rvAdmin.revioStats(ctx)
	if err != nil {
		return o, err
	}
	o.Revio5xx = rv.Statuses[500] + rv.Statuses[503]
	o.Revio429, o.RevioStalledCreates, o.RevioCalls = rv.RateLimited, rv.StalledCreates, rv.Total
	err = h.pool.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM revio_services rs JOIN device_changes dc ON dc.id = rs.device_change_id
				WHERE dc.bulk_change_id = $1 AND rs.found_by = 'search'),
			(SELECT count(*) FROM thingspace_requests WHERE bulk_change_id = $1 AND error_code = 'RECONCILED'),
			(SELECT count(*) FROM device_changes WHERE bulk_change_id = $1 AND confirmed_by = 'poll')`, h.bulkID).
		Scan(&o.RevioFound, &o.Reconciled, &o.ConfirmedByPoll)
	if err != nil {
		return o, err
	}
	o.UnexpectedExits = map[string]int{}
	for _, p := range []*stack.Proc{h.workers[0], h.workers[1], h.receiver, h.ts, h.rv} {
		if n := p.UnexpectedExits(); n > 0 {
			o.UnexpectedExits[p.Name] = n
		}
	}
	if d, ok := h.temporal.(*devServer); ok {
		if n := d.proc.UnexpectedExits(); n > 0 {
			o.UnexpectedExits[d.proc.Name] = n
		}
	}
	return o, nil
}

// scanAudit looks for the needles in every text the audit log and the
// callbacks table hold.
func (h *harness) scanAudit(ctx context.Context, needles []Needle) ([]Violation, error) {
	var out []Violation
	rows, err := h.pool.Query(ctx, `SELECT id, concat_ws(' ', service, operation, method, path, request_body, response_body,
		outcome, error_code, error_message, request_id, dedupe_key) FROM m2m_log`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var id int64
		var text string
		if err := rows.Scan(&id, &text); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, Leaks(needles, fmt.Sprintf("audit log (m2m_log) entry %d", id), []byte(text))...)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = h.pool.Query(ctx, `SELECT id, payload::text || ' ' || coalesce(fault_string, '') FROM callbacks`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var text string
		if err := rows.Scan(&id, &text); err != nil {
			return nil, err
		}
		out = append(out, Leaks(needles, fmt.Sprintf("the stored callback %d", id), []byte(text))...)
	}
	return out, rows.Err()
}

// evidence writes what the product's developers need to fix each
// violation: the list, the device changes' rows, and the histories of
// their workflows and of the bulk change (`temporal workflow show -o json`).
func (h *harness) evidence(ctx context.Context, res *Result) {
	dir := filepath.Join(h.dir, "evidence")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return
	}
	var b strings.Builder
	ids := map[int64]bool{}
	for _, v := range res.Violations {
		b.WriteString(v.String() + "\n")
		if v.DeviceChangeID != 0 {
			ids[v.DeviceChangeID] = true
		}
	}
	_ = os.WriteFile(filepath.Join(dir, "violations.txt"), []byte(b.String()), 0o644)
	list := make([]int64, 0, len(ids))
	for id := range ids {
		list = append(list, id)
	}
	sort.Slice(list, func(i, j int) bool { return list[i] < list[j] })
	if rows, err := h.pool.Query(ctx, `SELECT row_to_json(dc)::text FROM (SELECT id, bulk_change_id, iccid, operation, batch_no, status,
			request_id, outcome, final_state, msisdn, error_code, error_message, confirmed_by, billing_status, billing_error_code,
			billing_error, submitted_at, confirmed_at, completed_at FROM device_changes WHERE id = ANY($1) ORDER BY id) dc`, list); err == nil {
		var lines []string
		for rows.Next() {
			var s string
			if rows.Scan(&s) == nil {
				lines = append(lines, s)
			}
		}
		rows.Close()
		_ = os.WriteFile(filepath.Join(dir, "device-changes.jsonl"), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	}
	cli, err := stack.TemporalCLI()
	if err != nil {
		return
	}
	show := func(workflowID, file string) {
		cmd := exec.CommandContext(ctx, cli, "workflow", "show", "--address", h.temporal.Address(), "--namespace", "default",
			"--workflow-id", workflowID, "--output", "json")
		if out, err := cmd.Output(); err == nil {
			_ = os.WriteFile(filepath.Join(dir, file), out, 0o644)
		}
	}
	show("bulk-change/"+h.bulkID, "bulk-change.history.json")
	// The shards' latest runs: a shard's own violation, or the device
	// changes of its batches, are read there.
	for no := 1; no <= res.Shards.Shards; no++ {
		show(api.ShardWorkflowID(h.bulkID, no), fmt.Sprintf("shard-%d.history.json", no))
	}
	rows, err := h.pool.Query(ctx, `SELECT id, iccid FROM device_changes WHERE id = ANY($1) ORDER BY id LIMIT 30`, list)
	if err != nil {
		return
	}
	type dc struct {
		id    int64
		iccid string
	}
	var dcs []dc
	for rows.Next() {
		var d dc
		if rows.Scan(&d.id, &d.iccid) == nil {
			dcs = append(dcs, d)
		}
	}
	rows.Close()
	for _, d := range dcs {
		show("bulk-change/"+h.bulkID+"/device/"+d.iccid, fmt.Sprintf("device-change-%d.history.json", d.id))
	}
	summary, _ := json.MarshalIndent(map[string]any{"seed": res.Options.Seed, "bulk_change": h.bulkID,
		"device_changes_with_violations": list, "temporal": h.temporal.Address()}, "", "  ")
	_ = os.WriteFile(filepath.Join(dir, "summary.json"), summary, 0o644)
}
