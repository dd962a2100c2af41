package activities_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/submission"
	"github.com/iot-ops/tsbulk/thingspace"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// tenantSet is a fixed set of tenants: what the worker's implementation
// (process.WorkerTenants) serves between two reloads.
type tenantSet struct {
	byID      map[string]*activities.Tenant
	byAccount map[string]string
}

func (s tenantSet) Tenant(_ context.Context, id string) (*activities.Tenant, error) {
	if id == "" {
		id = change.DefaultTenant
	}
	if t, ok := s.byID[id]; ok {
		return t, nil
	}
	return nil, &activities.TenantNotConfiguredError{ID: id}
}

func (s tenantSet) AccountTenant(ctx context.Context, account string) (*activities.Tenant, error) {
	if id, ok := s.byAccount[account]; ok {
		return s.Tenant(ctx, id)
	}
	return nil, &activities.TenantNotConfiguredError{Account: account}
}

func (s tenantSet) CheckAccount(_ context.Context, id, account string) error {
	if owner, ok := s.byAccount[account]; ok && owner != id {
		return fmt.Errorf("account %s is tenant %s's, not %s's", account, owner, id)
	}
	return nil
}

// Tenant beta's ThingSpace: its own simulator, credentials and account.
const (
	betaAccount  = "0000222222-00001"
	betaClientID = "beta-client-id"
	betaUsername = "beta-user"
)

// withBeta gives the harness a second tenant, beta, with a simulator of
// its own (which accepts only beta's credentials and knows only beta's
// account), its own four-eyes rule (any suspension), and deactivations
// sent without deleteAfterDeactivation (the default tenant's: with). The
// harness's own clients are the default tenant's.
func withBeta(t *testing.T, h *harness) *thingspacesim.Simulator {
	t.Helper()
	sim := thingspacesim.New(thingspacesim.Config{ClientID: betaClientID, ClientSecret: "beta-secret",
		Username: betaUsername, Password: "beta-password", Accounts: []string{betaAccount}, Seed: 2,
		CompletionDelay: time.Hour, CallbackRetryInterval: -1})
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(sim.Close)
	auditor := &activities.Auditor{Store: h.store}
	ts, err := thingspace.New(thingspace.Config{BaseURL: srv.URL, ClientID: betaClientID, ClientSecret: "beta-secret",
		Username: betaUsername, Password: "beta-password", AccountName: betaAccount, HTTPTimeout: 5 * time.Second,
		Observer: auditor.ThingSpace, Latches: h.store.CredentialLatches()})
	require.NoError(t, err)
	h.acts.DeleteAfterDeactivation = true
	def := *h.acts
	h.acts.Tenants = tenantSet{
		byID: map[string]*activities.Tenant{
			change.DefaultTenant: {ID: change.DefaultTenant, ThingSpace: def.ThingSpace, Revio: def.Revio,
				DeleteAfterDeactivation: true},
			"beta": {ID: "beta", ThingSpace: ts, Approval: submission.NewApprovalRule([]string{"suspend"}, 1, time.Hour),
				DeleteAfterDeactivation: false},
		},
		byAccount: map[string]string{account: change.DefaultTenant, betaAccount: "beta"},
	}
	return sim
}

// ofTenant makes a bulk change the tenant's, as a submission for it does.
func (h *harness) ofTenant(bulk, tenant string) {
	h.t.Helper()
	h.exec(`UPDATE bulk_changes SET tenant = $2 WHERE id = $1`, bulk, tenant)
}

func totalRequests(s thingspacesim.Stats) int {
	n := 0
	for _, c := range s.Requests {
		n += c
	}
	return n
}

// Every ThingSpace call of a bulk change is made with its tenant's client,
// and its tenant's settings decide (four-eyes rule, deleteAfterDeactivation):
// tenant beta's authentication check, batches, lookups, polling and PPU-free
// state changes reach beta's simulator, with beta's credentials, and the
// default tenant's simulator hears nothing of them.
func TestActivitiesUseTheirBulkChangesTenant(t *testing.T) {
	t.Parallel()
	h := newHarness(t, pendingAnHour)
	beta := withBeta(t, h)

	suspends := devices(2, "8914800771", "active")
	deactivations := devices(2, "8914800772", "active")
	require.NoError(t, beta.Seed(append(suspends, deactivations...)...))
	bulk, ids := h.newBulk(betaAccount, append(changes("suspend", 1, suspends...), changes("deactivate", 2, deactivations...)...)...)
	h.ofTenant(bulk, "beta")

	// Beta's four-eyes rule holds the bulk change for approval; the default
	// tenant has none.
	h.runsAsTestWorkflow(bulk)
	var plan api.Plan
	require.NoError(t, h.run(&plan, h.acts.StartBulkChange, bulk))
	require.Equal(t, "beta", plan.Tenant)
	require.NotNil(t, plan.Options.Approval, "beta's rule asks approval of any suspension")

	require.NoError(t, h.run(nil, h.acts.CheckThingSpaceAuth, bulk))
	require.Equal(t, 1, beta.Stats(time.Hour).Logins)

	res := h.mustSendBatch(bulk, 1)
	require.Equal(t, db.RequestAccepted, res.State)
	require.Equal(t, 1, beta.Stats(time.Hour).AcceptedChanges[suspends[0].ICCID]["suspend"])
	h.mustSendBatch(bulk, 2)
	for _, d := range deactivations {
		require.Equal(t, 1, beta.Stats(time.Hour).AcceptedChanges[d.ICCID]["deactivate"])
	}
	var sent []bool
	var v bool
	h.eachRow([]any{&v}, func() { sent = append(sent, v) },
		`SELECT delete_after_deactivation FROM device_changes WHERE bulk_change_id = $1 AND operation = 'deactivate'`, bulk)
	require.Equal(t, []bool{false, false}, sent, "beta's setting, not the default tenant's")

	look := mustResult[activities.DeviceLookup](h, h.acts.LookupDevice, activities.LookupInput{BulkChangeID: bulk,
		DeviceChangeID: ids[suspends[0].ICCID], ICCID: suspends[0].ICCID, AccountName: betaAccount})
	require.True(t, look.Found)

	// The poller finds its tenant by the account.
	h.requestPoll(betaAccount, ids[suspends[1].ICCID], suspends[1].ICCID, "suspend")
	before := beta.Stats(time.Hour).Requests[epList]
	r := h.pollAccount(betaAccount)
	require.Equal(t, 1, r.Checked)
	require.Greater(t, beta.Stats(time.Hour).Requests[epList], before)

	// Beta bills nothing: its step says so, naming the tenant.
	err := h.run(nil, h.acts.CreateBillingService, activities.BillingInput{BulkChangeID: bulk,
		DeviceChangeID: ids[suspends[0].ICCID]})
	require.ErrorContains(t, err, "Rev.io is not configured for tenant beta")

	require.Zero(t, totalRequests(h.stats()), "the default tenant's ThingSpace heard nothing of beta's bulk change")
	s := beta.Stats(time.Hour)
	require.Zero(t, s.FailedLogins, "beta's simulator takes only beta's credentials, and got only those")
	for acct := range s.RequestsPerAccount {
		require.Equal(t, betaAccount, acct)
	}
}

// A bulk change of a tenant the worker does not know (removed from its
// configuration, or not there yet) waits: its activities fail retryably,
// claiming and sending nothing, until the tenant is configured.
func TestBulkChangeOfAnUnknownTenantWaits(t *testing.T) {
	t.Parallel()
	h := newHarness(t, pendingAnHour)
	beta := withBeta(t, h)
	devs := devices(1, "8914800773", "active")
	require.NoError(t, beta.Seed(devs...))
	bulk, ids := h.newBulk(betaAccount, changes("suspend", 1, devs...)...)
	h.ofTenant(bulk, "gamma")

	for _, run := range []func() error{
		func() error { return h.run(nil, h.acts.CheckThingSpaceAuth, bulk) },
		func() error { _, err := h.sendBatch(bulk, 1); return err },
	} {
		ae := appError(t, run())
		require.Equal(t, activities.ErrTypeTenantNotConfigured, ae.Type())
		require.False(t, ae.NonRetryable(), "an operator may add the tenant back")
		require.Contains(t, ae.Error(), "tenant gamma is not configured")
	}
	require.Equal(t, change.Pending, h.change(ids[devs[0].ICCID]).Status, "nothing was claimed")
	// A poller of an account no tenant lists: nothing due, it ends; a
	// device due, it waits.
	const unlisted = "0000999999-00001"
	require.Zero(t, h.pollAccount(unlisted).Waiting)
	h.requestPoll(unlisted, ids[devs[0].ICCID], devs[0].ICCID, "suspend")
	ae := appError(t, h.run(nil, h.acts.PollAccount, activities.PollAccountInput{AccountName: unlisted}))
	require.Equal(t, activities.ErrTypeTenantNotConfigured, ae.Type())
	require.Contains(t, ae.Error(), "account "+unlisted+" belongs to no tenant")
	require.Zero(t, totalRequests(h.stats())+totalRequests(beta.Stats(time.Hour)))

	// Configured again (the worker reloaded), it runs.
	h.acts.Tenants.(tenantSet).byID["gamma"] = h.acts.Tenants.(tenantSet).byID["beta"]
	require.Equal(t, db.RequestAccepted, h.mustSendBatch(bulk, 1).State)
}
