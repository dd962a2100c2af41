package submission_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/db/dbtest"
	"github.com/iot-ops/tsbulk/luhn"
	"github.com/iot-ops/tsbulk/submission"
)

const account = "0000123456-00001"

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// imei is a valid IMEI (15 digits, Luhn check digit).
func imei(n int) string {
	body := fmt.Sprintf("35693803%06d", n)
	return body + string(luhn.CheckDigit(body))
}

// csvFile is a CSV bulk change: the header, then one line per row.
func csvFile(header string, rows ...string) []byte {
	return []byte(header + "\n" + strings.Join(rows, "\n") + "\n")
}

// csvRequest is a submission of CSV data.
func csvRequest(data []byte) submission.Request {
	return submission.Request{File: "devices.csv", Data: data, Format: "csv", Account: account, SubmittedBy: "alice",
		BatchSize: 100}
}

// fakeTemporal records the workflow starts a submission asks for. Only
// ExecuteWorkflow is implemented: any other call panics on the nil
// embedded client. fail, when set, answers the next starts instead.
type fakeTemporal struct {
	client.Client

	mu     sync.Mutex
	starts []start
	fail   error
}

type start struct {
	Options  client.StartWorkflowOptions
	Workflow any
	Args     []any
}

func (f *fakeTemporal) ExecuteWorkflow(_ context.Context, options client.StartWorkflowOptions, workflow any,
	args ...any) (client.WorkflowRun, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.starts = append(f.starts, start{Options: options, Workflow: workflow, Args: args})
	if f.fail != nil {
		return nil, f.fail
	}
	return fakeRun{id: options.ID, runID: fmt.Sprintf("run-%d", len(f.starts))}, nil
}

func (f *fakeTemporal) failWith(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
}

// started lists the workflow ids started, in order.
func (f *fakeTemporal) started() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, len(f.starts))
	for i, s := range f.starts {
		out[i] = s.Options.ID
	}
	return out
}

func (f *fakeTemporal) last() start {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.starts[len(f.starts)-1]
}

type fakeRun struct {
	client.WorkflowRun
	id, runID string
}

func (r fakeRun) GetID() string    { return r.id }
func (r fakeRun) GetRunID() string { return r.runID }

// newSubmitter is a submitter on a fresh database of the test's own and a
// recording Temporal client.
func newSubmitter(t *testing.T) (*submission.Submitter, *db.Store, *fakeTemporal) {
	t.Helper()
	st := dbtest.New(t)
	fake := &fakeTemporal{}
	return &submission.Submitter{Store: st, Temporal: fake}, st, fake
}

// bulkCount counts the bulk changes of the database.
func bulkCount(t *testing.T, st *db.Store) int {
	t.Helper()
	var n int
	require.NoError(t, st.Pool.QueryRow(testCtx(t), `SELECT count(*) FROM bulk_changes`).Scan(&n))
	return n
}

var errTemporalDown = errors.New("connection refused")
