package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/workflows/api"
)

const (
	acmeAccount   = "0000222222-00001"
	acmeSecond    = "0000222222-00002"
	globexAccount = "0000333333-00001"
)

// tenantsConfig is a configuration file of two named tenants beside the
// stack's default one (whose settings come from the environment).
func tenantsConfig(t *testing.T) string {
	t.Helper()
	return file(t, "tenants.yaml", `
tenants:
  acme:
    name: Acme Fleet
    thingspace:
      client_id: acme-app
      username: acme-user
      accounts: ["`+acmeAccount+`", "`+acmeSecond+`"]
    callbacks:
      username: acme-listener
    default_site: ACME-DEPOT
    approval:
      operations: [activate]
      min_devices: 1
      expires_after: 5h
    limits:
      activates_per_minute: 10
      actions_per_line_per_day: 3
    revio:
      enabled: true
      base_url: http://127.0.0.1:1
      login: acme-api
      client_code: ACME
      customers:
        - account: "`+acmeAccount+`"
          customer_id: 501
      plans:
        - service_plan: M2M5GB
          service_type_id: 12
          provider_id: 3
          product_ids: [7001, 7002]
          rates: ["4.99", "0.50"]
        - service_plan: M2M1GB
          service_type_id: 11
          provider_id: 4
  globex:
    thingspace:
      client_id: globex-app
      username: globex-user
      accounts: ["`+globexAccount+`"]
      delete_after_deactivation: false
    default_site: GLOBEX-YARD
`)
}

// `starter tenants` lists every tenant with what an operator needs to
// submit for it, and never a secret: not the tenants' (from the
// environment), not the default tenant's.
func TestTenantsListsTenantsWithoutSecrets(t *testing.T) {
	secrets := map[string]string{
		"TSBULK_TENANTS_ACME_THINGSPACE_CLIENT_SECRET": "acme-client-secret-5f1c",
		"TSBULK_TENANTS_ACME_THINGSPACE_PASSWORD":      "acme-password-77aa",
		"TSBULK_TENANTS_ACME_CALLBACKS_PASSWORD":       "acme-listener-pw-0b3e",
		"TSBULK_TENANTS_ACME_REVIO_PASSWORD":           "acme-revio-pw-91d2",
		"TSBULK_TENANTS_ACME_REVIO_SUBSCRIPTION_KEY":   "acme-revio-key-c4e8",
		"TSBULK_TENANTS_GLOBEX_THINGSPACE_PASSWORD":    "globex-password-3a9f",
	}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	cfg := tenantsConfig(t)
	for _, s := range []string{st.Config.ThingSpace.ClientSecret.Reveal(), st.Config.ThingSpace.Password.Reveal(),
		st.Config.Callbacks.Password.Reveal()} {
		if s != "" {
			secrets["default"+s] = s
		}
	}

	code, out, errOut := starter(t, "--config", cfg, "tenants")
	require.Equal(t, 0, code, errOut)
	code, asJSON, errOut := starter(t, "--config", cfg, "tenants", "--json")
	require.Equal(t, 0, code, errOut)
	for _, s := range secrets {
		require.NotContains(t, out+errOut+asJSON, s)
	}

	for _, want := range []string{
		"default\n  accounts        " + st.Config.ThingSpace.Account,
		"acme (Acme Fleet)\n  accounts        " + acmeAccount + ", " + acmeSecond + "; default " + acmeAccount + "\n",
		"client acme-app, user acme-user",
		"/thingspace/callbacks/acme, listener user acme-listener",
		"on, http://127.0.0.1:1, 1 customer and 2 plan mappings",
		"default site    ACME-DEPOT",
		"approval        activate of at least 1 devices, expires after 5h0m0s",
		"10 activations a minute, 3 state changes per line a day",
		"globex\n",
		"secrets unset   TSBULK_TENANTS_GLOBEX_THINGSPACE_CLIENT_SECRET, TSBULK_TENANTS_GLOBEX_CALLBACKS_PASSWORD",
	} {
		require.Contains(t, out, want)
	}
	require.NotContains(t, out, "TSBULK_TENANTS_ACME_", "acme's secrets are all set")

	var views []tenantView
	require.NoError(t, json.Unmarshal([]byte(asJSON), &views))
	require.Equal(t, []string{"default", "acme", "globex"}, []string{views[0].ID, views[1].ID, views[2].ID})
	require.Equal(t, 2, views[1].Revio.Plans)
	require.Equal(t, "/thingspace/callbacks/globex", views[2].CallbackPath)
}

// A submission for a tenant is written for it with its account, options
// and Rev.io mappings; an unknown tenant, an account of another tenant and
// a row its mappings cannot bill are refused with nothing written.
func TestSubmitForATenant(t *testing.T) {
	cfg := tenantsConfig(t)
	ctx := context.Background()
	// The worker serves the same tenants (a SIGHUP's reload), with their
	// secrets from its environment.
	for _, id := range []string{"ACME", "GLOBEX"} {
		t.Setenv("TSBULK_TENANTS_"+id+"_THINGSPACE_CLIENT_SECRET", "s")
		t.Setenv("TSBULK_TENANTS_"+id+"_THINGSPACE_PASSWORD", "p")
	}
	t.Setenv("TSBULK_TENANTS_ACME_REVIO_PASSWORD", "r")
	t.Setenv("TSBULK_TENANTS_ACME_REVIO_SUBSCRIPTION_KEY", "k")
	served, err := config.Load(cfg)
	require.NoError(t, err)
	require.NoError(t, stWorker.ReloadTenants(served))
	t.Cleanup(func() { _ = stWorker.ReloadTenants(st.Config) })
	ds := devices(t, "8914811300", "preactive", 3)
	rows := "iccid,operation,imei,service_plan,mdn_zip_code\n" +
		ds[0].ICCID + ",activate," + ds[0].IMEI + ",M2M5GB,98801\n" +
		ds[1].ICCID + ",activate," + ds[1].IMEI + ",M2M1GB,98801\n"
	f := file(t, "acme.csv", rows)
	before := countBulkChanges(t)

	code, _, errOut := starter(t, "--config", cfg, "submit", "--file", f, "--tenant", "initech")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `tenant "initech" is not configured (tenants: default, acme, globex)`)
	code, _, errOut = starter(t, "--config", cfg, "submit", "--file", f, "--tenant", "acme", "--account", globexAccount)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `account "`+globexAccount+`" is not one of tenant acme's accounts`)
	code, _, errOut = starter(t, "--config", cfg, "submit", "--file", f, "--account", acmeAccount)
	require.Equal(t, 2, code, "the default tenant may not use acme's account")
	require.Contains(t, errOut, "is not one of tenant default's accounts")

	unbillable := file(t, "unbillable.csv", rows+ds[2].ICCID+",activate,"+ds[2].IMEI+",NOPLAN,98801\n")
	code, _, errOut = starter(t, "--config", cfg, "submit", "--file", unbillable, "--tenant", "acme")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "row 4, field service_plan: service plan \"NOPLAN\" has no Rev.io plan mapping in tenant acme")
	require.Contains(t, errOut, "nothing was submitted")
	code, _, errOut = starter(t, "--config", cfg, "submit", "--file", f, "--tenant", "acme", "--account", acmeSecond)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "row 2, field rev_customer_id: no Rev.io customer is mapped for account "+acmeSecond+
		" of tenant acme")
	require.Contains(t, errOut, "row 3, field rev_customer_id")
	require.Equal(t, before, countBulkChanges(t), "nothing written")

	// A dry run says what the tenant's settings will send.
	deact := file(t, "deact.csv", "iccid,operation\n"+ds[2].ICCID+",deactivate\n")
	code, out, errOut := starter(t, "--config", cfg, "submit", "--file", deact, "--tenant", "globex", "--dry-run")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "deleteAfterDeactivation false (the worker's tenants.globex.thingspace.delete_after_deactivation)")
	code, out, errOut = starter(t, "--config", cfg, "submit", "--file", deact, "--dry-run")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "deleteAfterDeactivation true (the worker's thingspace.delete_after_deactivation)")

	// acme's approval rule holds its activations: nothing is sent.
	code, out, errOut = starter(t, "--config", cfg, "submit", "--file", f, "--tenant", "acme")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "tenant acme, account "+acmeAccount+"\n")
	id := strings.Fields(strings.SplitN(out, "bulk change ", 2)[1])[0]
	b, err := st.Store.GetBulkChange(ctx, id)
	require.NoError(t, err)
	require.Equal(t, "acme", b.Tenant)
	require.Equal(t, acmeAccount, b.AccountName)
	var opts api.Options
	require.NoError(t, json.Unmarshal(b.Options, &opts))
	require.True(t, opts.BillingEnabled, "acme bills")
	require.Equal(t, "ACME-DEPOT", opts.DefaultSite)
	require.NotNil(t, opts.Approval)

	var billing []string
	r, err := st.Store.Pool.Query(ctx, `SELECT billing::text FROM device_changes WHERE bulk_change_id = $1 ORDER BY seq`, id)
	require.NoError(t, err)
	for r.Next() {
		var s string
		require.NoError(t, r.Scan(&s))
		billing = append(billing, s)
	}
	require.NoError(t, r.Err())
	require.Len(t, billing, 2)
	require.JSONEq(t, `{"customerId":501,"serviceTypeId":12,"providerId":3,"productIds":[7001,7002],"rates":["4.99","0.50"]}`,
		billing[0])
	require.JSONEq(t, `{"customerId":501,"serviceTypeId":11,"providerId":4}`, billing[1])

	code, out, errOut = starter(t, "--config", cfg, "status", id, "--tenant", "acme")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "tenant acme, account "+acmeAccount)
	require.Eventually(t, func() bool {
		b, err := st.Store.GetBulkChange(ctx, id)
		return err == nil && b.Status == change.BulkAwaitingApproval
	}, time.Minute, 200*time.Millisecond, "acme's rule: activations wait for a second operator")
	code, _, errOut = starter(t, "--config", cfg, "reject", id, "--tenant", "acme", "--as", "bob", "--reason", "test over")
	require.Equal(t, 0, code, errOut)
}

// Commands naming a bulk change with --tenant refuse one of another tenant
// and do nothing; with its own tenant they act. list --tenant lists that
// tenant's only.
func TestCommandsScopedByTenant(t *testing.T) {
	cfg := tenantsConfig(t)
	ctx := context.Background()
	acme := createTenantBulk(t, "acme", acmeAccount, "8914811301")
	globex := createTenantBulk(t, "globex", globexAccount, "8914811302")
	audit := func() int {
		var n int
		require.NoError(t, st.Store.Pool.QueryRow(ctx, `SELECT count(*) FROM m2m_log WHERE bulk_change_id = $1`, acme.ID).Scan(&n))
		return n
	}
	before, auditBefore := countBulkChanges(t), audit()

	for _, cmd := range [][]string{
		{"status"}, {"results"}, {"audit"}, {"redrive"}, {"billing-retry"}, {"resume-failed"},
		{"pause", "--as", "bob"}, {"resume", "--as", "bob"}, {"cancel", "--as", "bob"}, {"approve", "--as", "bob"},
		{"reject", "--as", "bob"},
	} {
		args := append([]string{"--config", cfg, cmd[0], acme.ID, "--tenant", "globex"}, cmd[1:]...)
		code, out, errOut := starter(t, args...)
		require.Equal(t, 2, code, "%v: %s", cmd, out)
		require.Contains(t, errOut, "bulk change "+acme.ID+" belongs to tenant acme, not globex: nothing was done", cmd)
		require.Empty(t, out, cmd)
	}
	require.Equal(t, before, countBulkChanges(t), "no re-drive")
	require.Equal(t, auditBefore, audit(), "no operator request recorded")
	got, err := st.Store.GetBulkChange(ctx, acme.ID)
	require.NoError(t, err)
	require.Equal(t, change.BulkFinished, got.Status)

	code, out, errOut := starter(t, "--config", cfg, "results", acme.ID, "--tenant", "acme", "--csv")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, acme.Devices[0]+",suspend,ERROR")
	code, _, errOut = starter(t, "--config", cfg, "results", uuid.NewString(), "--tenant", "acme")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "no bulk change")
	code, _, errOut = starter(t, "--config", cfg, "results", acme.ID, "--tenant", "initech")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `tenant "initech" is not configured`)

	code, out, errOut = starter(t, "--config", cfg, "list", "--tenant", "acme")
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, acme.ID+`\s+acme\s+FINISHED\s`, out)
	require.NotContains(t, out, globex.ID)
	code, out, errOut = starter(t, "--config", cfg, "list")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, strings.SplitN(out, "\n", 2)[0], "TENANT")
	require.Regexp(t, globex.ID+`\s+globex\s`, out)
	require.Contains(t, out, acme.ID)

	// The audit log of a bulk change, for its tenant.
	require.NoError(t, st.Store.RecordOperatorAction(ctx, db.OperatorAction{BulkChangeID: acme.ID, Action: "note",
		By: "carol", Reason: "checked", Key: uuid.NewString()}))
	code, out, errOut = starter(t, "--config", cfg, "audit", acme.ID, "--tenant", "acme")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "audit log of bulk change "+acme.ID+" (tenant acme): 2 entries")
	require.Regexp(t, `workflow\s+suspend\s+ERROR\s+REQUEST_FAILED.DeviceNotFound`, out, "the device's result")
	require.Regexp(t, `operator\s+note\s+ok\s+carol: checked`, out)

	// A re-drive of acme's bulk change is acme's, with acme's settings.
	code, out, errOut = starter(t, "--config", cfg, "redrive", acme.ID, "--tenant", "acme", "--json")
	require.Equal(t, 0, code, errOut)
	var res struct {
		ID string `json:"bulkChangeId"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	re, err := st.Store.GetBulkChange(ctx, res.ID)
	require.NoError(t, err)
	require.Equal(t, "acme", re.Tenant)
	var opts api.Options
	require.NoError(t, json.Unmarshal(re.Options, &opts))
	require.True(t, opts.BillingEnabled)
	require.Equal(t, "ACME-DEPOT", opts.DefaultSite)
}

type tenantBulk struct {
	ID      string
	Devices []string
}

// createTenantBulk writes a finished bulk change of a tenant, its one
// suspension failed, as if it had run.
func createTenantBulk(t *testing.T, tenant, account, prefix string) tenantBulk {
	t.Helper()
	ctx := context.Background()
	id := uuid.NewString()
	iccid := devices(t, prefix, "", 1)[0].ICCID
	_, _, err := st.Store.CreateBulkChange(ctx, db.NewBulkChange{ID: id, Tenant: tenant, AccountName: account,
		SourceName: "t.csv", SubmittedBy: "alice", Batches: 1, WorkflowID: api.BulkChangeWorkflowID(id),
		Devices: []db.NewDeviceChange{{Seq: 1, RowNumber: 2, ICCID: iccid, Operation: change.Suspend, BatchNo: 1}}})
	require.NoError(t, err)
	var dc int64
	require.NoError(t, st.Store.Pool.QueryRow(ctx, `SELECT id FROM device_changes WHERE bulk_change_id = $1`, id).Scan(&dc))
	_, _, err = st.Store.Complete(ctx, db.Completion{DeviceChangeID: dc, Status: change.Failed,
		ErrorCode: "REQUEST_FAILED.DeviceNotFound"})
	require.NoError(t, err)
	_, _, err = st.Store.FinishBulkChange(ctx, id, change.BulkFinished)
	require.NoError(t, err)
	return tenantBulk{ID: id, Devices: []string{iccid}}
}
