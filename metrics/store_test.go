package metrics

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	dto "github.com/prometheus/client_model/go"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/db/dbtest"
	"github.com/iot-ops/tsbulk/thingspace"
)

const testAccount = "0000123456-00001"

// series flattens a gather into "name{label=value,...}" -> value.
func series(t *testing.T, m *Metrics) map[string]float64 {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		for _, s := range f.GetMetric() {
			var labels []string
			for _, l := range s.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(labels)
			key := f.GetName() + "{" + strings.Join(labels, ",") + "}"
			switch f.GetType() {
			case dto.MetricType_GAUGE:
				out[key] = s.GetGauge().GetValue()
			case dto.MetricType_COUNTER:
				out[key] = s.GetCounter().GetValue()
			}
		}
	}
	return out
}

func createBulk(t *testing.T, st *db.Store, n int) string {
	t.Helper()
	id := uuid.NewString()
	devices := make([]db.NewDeviceChange, n)
	for i := range devices {
		devices[i] = db.NewDeviceChange{Seq: i + 1, RowNumber: i + 2, ICCID: dbtest.NewICCID(),
			Operation: change.Suspend, BatchNo: 1}
	}
	_, _, err := st.CreateBulkChange(context.Background(), db.NewBulkChange{ID: id, AccountName: testAccount,
		Batches: 1, WorkflowID: "bulk-change/" + id, Devices: devices})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// The store's gauges read PostgreSQL at each scrape: the bulk changes not
// ended by status, each one in flight with its device changes by status and
// its last progress, the request budget of each account and bucket, the
// credential latches. A store that cannot be read fails no scrape.
func TestStoreGauges(t *testing.T) {
	st := dbtest.New(t)
	ctx := context.Background()

	running := createBulk(t, st, 4)
	if err := st.SetBulkStatus(ctx, running, change.BulkRunning); err != nil {
		t.Fatal(err)
	}
	var ids []int64
	rows, err := st.Pool.Query(ctx, `SELECT id FROM device_changes WHERE bulk_change_id = $1 ORDER BY seq`, running)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	before := time.Now().Add(-time.Second)
	if _, _, err := st.Complete(ctx, db.Completion{DeviceChangeID: ids[0], Status: change.Processed,
		Outcome: string(change.Suspended), FinalState: "suspended"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Complete(ctx, db.Completion{DeviceChangeID: ids[1], Status: change.Failed,
		ErrorCode: "REQUEST_FAILED.DeviceNotFound"}); err != nil {
		t.Fatal(err)
	}
	awaiting := createBulk(t, st, 1)
	if err := st.SetBulkStatus(ctx, awaiting, change.BulkAwaitingApproval); err != nil {
		t.Fatal(err)
	}
	createBulk(t, st, 1) // PENDING
	finished := createBulk(t, st, 1)
	if _, err := st.Pool.Exec(ctx, `UPDATE bulk_changes SET status = 'FINISHED' WHERE id = $1`, finished); err != nil {
		t.Fatal(err)
	}

	key := thingspace.CredentialKey{BaseURL: "https://thingspace.example", ClientID: "c", Username: "u"}
	if err := st.CredentialLatches().Latch(ctx, key, thingspace.Refusal{Op: "login", HTTPStatus: 400,
		Code: "REQUEST_FAILED.InvalidCredentials"}); err != nil {
		t.Fatal(err)
	}
	err = st.InRateLedger(ctx, testAccount, func(tx *db.RateLedgerTx) error {
		now, err := tx.Now(ctx)
		if err != nil {
			return err
		}
		for _, at := range []time.Time{now.Add(-2 * time.Hour), now.Add(-time.Minute), now.Add(-time.Second), now} {
			if err := tx.Grant(ctx, "requests", "suspend", at, now.Add(-3*time.Hour)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.ThrottleBucket(ctx, testAccount, "requests", time.Minute, time.Hour); err != nil {
		t.Fatal(err)
	}

	m := New()
	m.WatchStore(st, StoreOptions{
		Budgets:  []Budget{{Bucket: "requests", Limit: 1000, Window: time.Hour}},
		Accounts: []string{testAccount, "0000999999-00001"},
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	got := series(t, m)
	want := map[string]float64{
		"tsbulk_store_monitoring_ok{}":                                             1,
		"tsbulk_bulk_changes{status=PENDING}":                                      1,
		"tsbulk_bulk_changes{status=SCHEDULED}":                                    0,
		"tsbulk_bulk_changes{status=AWAITING_APPROVAL}":                            1,
		"tsbulk_bulk_changes{status=RUNNING}":                                      1,
		"tsbulk_bulk_changes{status=PAUSED}":                                       0,
		"tsbulk_thingspace_credentials_refused{}":                                  1,
		"tsbulk_thingspace_budget_used{account=0000123456-00001,bucket=requests}":  3,
		"tsbulk_thingspace_budget_limit{account=0000123456-00001,bucket=requests}": 1000,
		"tsbulk_thingspace_throttled{account=0000123456-00001,bucket=requests}":    1,
		"tsbulk_thingspace_budget_used{account=0000999999-00001,bucket=requests}":  0,
		"tsbulk_thingspace_throttled{account=0000999999-00001,bucket=requests}":    0,
	}
	for status, n := range map[string]float64{"PENDING": 2, "SUBMITTING": 0, "SUBMITTED": 0, "PROCESSED": 1,
		"ERROR": 1, "CANCELLED": 0} {
		want[fmt.Sprintf("tsbulk_bulk_change_devices{bulk_change_id=%s,status=%s}", running, status)] = n
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (reported: %v), want %v", k, g, ok, v)
		}
	}
	progress := fmt.Sprintf("tsbulk_bulk_change_last_progress_timestamp_seconds{bulk_change_id=%s,status=RUNNING}",
		running)
	if at := got[progress]; at < float64(before.Unix()) || at > float64(time.Now().Add(time.Second).Unix()) {
		t.Errorf("%s = %v, want the last completion's time (about %d)", progress, at, time.Now().Unix())
	}
	for k := range got {
		if strings.Contains(k, awaiting) || strings.Contains(k, finished) {
			t.Errorf("%s: only bulk changes RUNNING or PAUSED have series of their own", k)
		}
	}

	st.Close()
	got = series(t, m)
	if v, ok := got["tsbulk_store_monitoring_ok{}"]; !ok || v != 0 {
		t.Errorf("with the store closed: tsbulk_store_monitoring_ok = %v (reported: %v), want 0", v, ok)
	}
	if _, ok := got["tsbulk_bulk_changes{status=RUNNING}"]; ok {
		t.Error("with the store closed, tsbulk_bulk_changes is still reported")
	}
}
