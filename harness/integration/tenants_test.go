package integration

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/harness/stack"
	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/submission"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// submitFor submits a file of the tenant's account as the tenant's, through
// the same code path as `starter submit`.
func submitFor(t *testing.T, s *stack.Stack, tenant, account, file string) *submission.Result {
	t.Helper()
	opts := options(s)
	sub := &submission.Submitter{Store: s.Store, Temporal: s.Client}
	res, err := sub.Submit(context.Background(), submission.Request{
		Tenant: tenant, File: file, Account: account, BatchSize: s.Config.Bulk.BatchSize, Options: opts,
		ActionsPerLinePerDay: s.Config.Limits.ActionsPerLinePerDay,
	})
	require.NoError(t, err)
	require.True(t, res.Created)
	return res
}

// changeFile writes a file applying op to the devices.
func changeFile(t *testing.T, op string, devs []tssim.DeviceSeed) string {
	t.Helper()
	rows := make([]row, len(devs))
	for i, d := range devs {
		rows[i] = row{"iccid": d.ICCID, "operation": op}
	}
	return writeCSV(t, []string{"iccid", "operation"}, rows)
}

// onlyItsOwn checks what a tenant's simulator saw: no credential it
// refused, requests of its own accounts only, and state changes of its own
// devices only.
func onlyItsOwn(t *testing.T, name string, st tssim.Stats, accounts []string, devs []tssim.DeviceSeed) {
	t.Helper()
	for ep, byStatus := range st.Responses {
		require.Zero(t, byStatus[401], "%s's simulator refused credentials at %s", name, ep)
	}
	require.Zero(t, st.FailedLogins, name)
	for acct := range st.RequestsPerAccount {
		require.Contains(t, accounts, acct, "%s's simulator was asked about another tenant's account", name)
	}
	for iccid := range st.AcceptedChanges {
		require.True(t, slices.ContainsFunc(devs, func(d tssim.DeviceSeed) bool { return d.ICCID == iccid }),
			"%s's simulator changed %s, another tenant's device", name, iccid)
	}
}

// Two tenants through one worker at once, each with its own ThingSpace
// (simulators that accept only their tenant's credentials): each bulk
// change is sent, confirmed and recorded with its tenant's clients, each
// tenant's callbacks received at its own path with its own listener
// credentials, and both finish. Then beta's password is wrong (a
// reload of the worker's tenants): beta's next bulk change ends with every
// device AUTH_FAILED after exactly one failed login at beta's ThingSpace,
// while the default tenant's bulk change beside it finishes normally.
func TestTwoTenantsThroughOneWorker(t *testing.T) {
	inbox := t.TempDir()
	s := newStack(t, stack.Options{
		Config:     func(c *config.Config) { c.Submission.InboxDirs = []string{inbox} },
		ThingSpace: simConfig(500*time.Millisecond, 500*time.Millisecond, 71),
		Tenants:    []stack.TenantOptions{{ID: "beta", ThingSpace: simConfig(500*time.Millisecond, 500*time.Millisecond, 72)}},
	})
	w, err := s.StartWorker()
	require.NoError(t, err)
	simA, simB := s.TS, s.TenantTS["beta"]
	require.Len(t, s.Config.Tenants, 1)
	betaAccount := s.Config.Tenants[0].ThingSpace.Accounts[0]
	devsA := tssim.GenerateDevices(20, "8914800851", "active")
	devsB := tssim.GenerateDevices(20, "8914800852", "active")
	require.NoError(t, simA.Seed(devsA...))
	require.NoError(t, simB.Seed(devsB...))

	resA := submitFor(t, s, "", s.Config.ThingSpace.Account, changeFile(t, "suspend", devsA))
	resB := submitFor(t, s, "beta", betaAccount, changeFile(t, "suspend", devsB))
	require.Equal(t, "beta", bulkChange(t, s, resB.ID).Tenant)
	for _, res := range []*submission.Result{resA, resB} {
		out := waitBulk(t, s, res, 3*time.Minute)
		require.Equal(t, change.BulkFinished, out.Status, res.ID)
		require.Equal(t, 20, out.Processed, res.ID)
	}
	for _, res := range []*submission.Result{resA, resB} {
		require.Equal(t, 20, countRows(t, s, `SELECT count(*) FROM device_changes WHERE bulk_change_id = $1
			AND confirmed_by = 'callback'`, res.ID), "each tenant's devices confirmed by its callbacks")
	}
	require.Equal(t, 20, countRows(t, s, `SELECT count(*) FROM callbacks c JOIN device_changes d ON d.id = c.device_change_id
		WHERE d.bulk_change_id = $1 AND c.tenant = 'beta'`, resB.ID), "beta's callbacks, received at beta's path")
	for _, d := range devsA {
		require.Equal(t, tssim.StateSuspend, simState(t, s, d.ICCID).State)
	}
	for _, d := range devsB {
		got, ok := simB.Device(d.ICCID)
		require.True(t, ok)
		require.Equal(t, tssim.StateSuspend, got.State)
		require.Equal(t, 1, simB.Stats(time.Hour).AcceptedChanges[d.ICCID]["suspend"])
	}
	onlyItsOwn(t, "the default tenant", simA.Stats(time.Hour), []string{s.Config.ThingSpace.Account}, devsA)
	onlyItsOwn(t, "beta", simB.Stats(time.Hour), []string{betaAccount}, devsB)
	require.Positive(t, simA.Stats(time.Hour).Logins)
	require.Positive(t, simB.Stats(time.Hour).Logins)

	// Each device workflow carries its tenant.
	count := func(query string) int64 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := s.Client.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: query})
		require.NoError(t, err)
		return resp.GetCount()
	}
	require.Eventually(t, func() bool {
		return count("WorkflowType = 'DeviceChange' AND Tenant = 'beta'") == 20 &&
			count("WorkflowType = 'DeviceChange' AND Tenant = 'default'") == 20
	}, time.Minute, time.Second, "device workflows by tenant")

	// Submitted through Temporal (SubmitBulkChange, as from the CLI or the
	// Web UI) for beta: beta's account by default, beta's bulk change; an
	// account of another tenant is refused for good, writing nothing.
	devsB3 := tssim.GenerateDevices(3, "8914800853", "active")
	require.NoError(t, simB.Seed(devsB3...))
	body, err := os.ReadFile(changeFile(t, "suspend", devsB3))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(s.Config.Submission.InboxDirs[0], "beta.csv"), body, 0o600))
	sub, out := executeSubmit(t, s, "submit-beta", `{"file":"beta.csv","tenant":"beta","submittedBy":"bob"}`)
	require.NotNil(t, sub, out)
	betaBulk := bulkChange(t, s, sub.BulkChangeID)
	require.Equal(t, "beta", betaBulk.Tenant)
	require.Equal(t, betaAccount, betaBulk.AccountName)
	var outB3 api.BulkChangeResult
	require.NoError(t, s.Client.GetWorkflow(context.Background(), sub.WorkflowID, "").Get(context.Background(), &outB3))
	require.Equal(t, 3, outB3.Processed)
	refused, out := executeSubmit(t, s, "submit-beta-foreign",
		`{"file":"beta.csv","tenant":"beta","account":"`+s.Config.ThingSpace.Account+`"}`)
	require.Nil(t, refused)
	require.Contains(t, out, "is not one of tenant beta's accounts")

	// Beta's password is now wrong; the default tenant's are unchanged.
	wrong := *s.Config
	wrong.Tenants = slices.Clone(s.Config.Tenants)
	wrong.Tenants[0].ThingSpace.Password = config.Secret("not-beta-password")
	require.NoError(t, w.ReloadTenants(&wrong))
	failedBefore := simB.Stats(time.Hour).FailedLogins
	require.Zero(t, failedBefore)

	resA2 := submitFor(t, s, "", s.Config.ThingSpace.Account, changeFile(t, "restore", devsA))
	resB2 := submitFor(t, s, "beta", betaAccount, changeFile(t, "restore", devsB))
	outA := waitBulk(t, s, resA2, 3*time.Minute)
	require.Equal(t, change.BulkFinished, outA.Status)
	require.Equal(t, 20, outA.Processed)
	for _, d := range devsA {
		require.Equal(t, tssim.StateActive, simState(t, s, d.ICCID).State)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.Error(t, s.Client.GetWorkflow(ctx, resB2.WorkflowID, "").Get(ctx, nil), "beta's bulk change cannot run")
	require.Equal(t, change.BulkFailed, bulkChange(t, s, resB2.ID).Status)
	rows := results(t, s, resB2.ID)
	require.Len(t, rows, 20)
	for iccid, r := range rows {
		require.Equal(t, change.Failed, r.Status, iccid)
		require.Equal(t, change.AuthFailed, r.ErrorCode, iccid)
	}
	stB := simB.Stats(time.Hour)
	require.Equal(t, 1, stB.FailedLogins, "the wrong password tried once in all")
	for _, d := range devsB {
		require.Zero(t, stB.AcceptedChanges[d.ICCID]["restore"], "nothing of beta's was sent")
		got, _ := simB.Device(d.ICCID)
		require.Equal(t, tssim.StateSuspend, got.State)
	}
	require.Zero(t, simA.Stats(time.Hour).FailedLogins, "the default tenant's credentials were never refused")
}

// The worker decides whose account a bulk change may use: one written by a
// submitting process whose configuration lacks the tenant (an old starter,
// or one not yet given the new tenant) as the default tenant's on another
// tenant's account never starts. Nothing reaches either ThingSpace; every
// device change ends ACCOUNT_NOT_TENANTS.
func TestBulkChangeOnAnotherTenantsAccountNeverStarts(t *testing.T) {
	s := newStackWithWorker(t, stack.Options{
		ThingSpace: simConfig(200*time.Millisecond, 0, 73),
		Tenants:    []stack.TenantOptions{{ID: "beta", ThingSpace: simConfig(200*time.Millisecond, 0, 74)}},
	})
	betaAccount := s.Config.Tenants[0].ThingSpace.Accounts[0]
	devs := tssim.GenerateDevices(3, "8914800854", "active")
	require.NoError(t, s.TenantTS["beta"].Seed(devs...))
	sentBefore := stateChangeRequests(s)

	res := submitFor(t, s, "", betaAccount, changeFile(t, "suspend", devs))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := s.Client.GetWorkflow(ctx, res.WorkflowID, "").Get(ctx, nil)
	require.ErrorContains(t, err, `is not one of tenant default's accounts`)
	require.Equal(t, change.BulkFailed, bulkChange(t, s, res.ID).Status)
	for iccid, r := range results(t, s, res.ID) {
		require.Equal(t, change.AccountNotTenants, r.ErrorCode, iccid)
	}
	require.Equal(t, sentBefore, stateChangeRequests(s), "nothing sent with the default tenant's credentials")
	require.Empty(t, s.TenantTS["beta"].Stats(time.Hour).AcceptedChanges, "nor to beta's ThingSpace")
	for _, d := range devs {
		got, _ := s.TenantTS["beta"].Device(d.ICCID)
		require.Equal(t, tssim.StateActive, got.State)
	}
}
