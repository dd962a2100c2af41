package submission_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/changefile"
	"github.com/iot-ops/tsbulk/config"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/db/dbtest"
	"github.com/iot-ops/tsbulk/submission"
	"github.com/iot-ops/tsbulk/workflows/api"
)

const (
	acmeAccount  = "0000222222-00001"
	acmeUnmapped = "0000222222-00002" // an account of acme's without a Rev.io customer
	globexAcct   = "0000333333-00001"
)

// tenantsYAML: the default tenant (no mappings, no billing), acme (Rev.io
// with mappings, its own site, approval and limits) and globex (Rev.io
// without mappings).
const tenantsYAML = `
dev: true
thingspace:
  base_url: http://127.0.0.1:8090
  client_id: app-key
  username: uws-user
  account: "` + account + `"
bulk:
  default_site: WAREHOUSE-1
  batch_size: 500
limits:
  actions_per_line_per_day: 5
tenants:
  acme:
    name: Acme Fleet
    thingspace:
      client_id: acme-app
      username: acme-user
      accounts: ["` + acmeAccount + `", "` + acmeUnmapped + `"]
    default_site: ACME-DEPOT
    approval:
      operations: [activate]
      min_devices: 2
      expires_after: 5h
    limits:
      actions_per_line_per_day: 3
    revio:
      enabled: true
      base_url: http://127.0.0.1:8091
      login: acme-api
      client_code: ACME
      retry_for: 20m
      customers:
        - account: "` + acmeAccount + `"
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
      accounts: ["` + globexAcct + `"]
    revio:
      enabled: true
      base_url: http://127.0.0.1:8092
      login: globex-api
      client_code: GLOBEX
`

func tenantsConfig(t *testing.T, body string) *config.Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tsbulk.yaml")
	require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
	cfg, err := config.Load(path)
	require.NoError(t, err)
	return cfg
}

// billingOf reads back the billing each device change was written with,
// by ICCID.
func billingOf(t *testing.T, st *db.Store, bulkID string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for iccid, r := range storedRows(t, st, bulkID) {
		out[iccid] = string(r.Billing)
	}
	return out
}

// A tenant's request: its account, options, per-line limit and approval
// rule; the default tenant's are exactly those of before tenants.
func TestForTenant(t *testing.T) {
	t.Parallel()
	cfg := tenantsConfig(t, tenantsYAML)

	def, err := submission.ForTenant(cfg, "", "")
	require.NoError(t, err)
	require.Equal(t, config.DefaultTenant, def.Tenant)
	require.Equal(t, account, def.Account, "thingspace.account")
	require.Equal(t, cfg.BulkChangeOptions(), def.Options)
	require.Equal(t, 5, def.ActionsPerLinePerDay)
	require.Equal(t, submission.NewApprovalRule(cfg.Approval.Operations, cfg.Approval.MinDevices, cfg.Approval.ExpiresAfter),
		def.Approval)
	require.Equal(t, 500, def.BatchSize)
	require.Nil(t, def.Mappings, "no mappings: rows bill by their rev_* columns only, as before")

	acme, err := submission.ForTenant(cfg, "acme", "")
	require.NoError(t, err)
	require.Equal(t, "acme", acme.Tenant)
	require.Equal(t, acmeAccount, acme.Account, "the tenant's first account")
	require.True(t, acme.Options.BillingEnabled)
	require.Equal(t, "ACME-DEPOT", acme.Options.DefaultSite)
	require.Equal(t, 20*time.Minute, acme.Options.Timing.BillingPatience)
	require.Equal(t, 3, acme.ActionsPerLinePerDay)
	require.Equal(t, &submission.ApprovalRule{Operations: []string{"activate"}, MinDevices: 2, ExpiresAfter: 5 * time.Hour},
		acme.Approval)
	require.NotNil(t, acme.Mappings)

	second, err := submission.ForTenant(cfg, "acme", acmeUnmapped)
	require.NoError(t, err)
	require.Equal(t, acmeUnmapped, second.Account)

	globex, err := submission.ForTenant(cfg, "globex", "")
	require.NoError(t, err)
	require.True(t, globex.Options.BillingEnabled)
	require.Nil(t, globex.Mappings, "Rev.io without mappings bills the rows with rev_* columns")

	_, err = submission.ForTenant(cfg, "acme", globexAcct)
	require.ErrorContains(t, err, `account "`+globexAcct+`" is not one of tenant acme's accounts`)
	_, err = submission.ForTenant(cfg, "", acmeAccount)
	require.ErrorContains(t, err, "is not one of tenant default's accounts", "an account belongs to one tenant")
	_, err = submission.ForTenant(cfg, "initech", "")
	require.ErrorContains(t, err, `tenant "initech" is not configured (tenants: default, acme, globex)`)

	// Only named tenants: no tenant named is an error naming them.
	named := tenantsConfig(t, strings.Replace(strings.Replace(tenantsYAML, "  client_id: app-key\n", "", 1),
		`  account: "`+account+`"`+"\n", "", 1))
	_, err = submission.ForTenant(named, "", "")
	require.ErrorContains(t, err, "no default tenant is configured")
	require.ErrorContains(t, err, "acme, globex")
}

// A billed activation file without a rev_* column, for a tenant with
// mappings, is written with each row's Rev.io service from the mappings,
// exactly as if the row had carried it; a row with rev_* columns keeps its
// own; other operations carry none. A row that cannot be billed is refused
// with its row and field, every problem at once, and nothing is written.
func TestMappedBilling(t *testing.T) {
	t.Parallel()
	sub, st, fake := newSubmitter(t)
	ctx := testCtx(t)
	cfg := tenantsConfig(t, tenantsYAML)
	request := func(acct string, data []byte) submission.Request {
		req, err := submission.ForTenant(cfg, "acme", acct)
		require.NoError(t, err)
		req.File, req.Data, req.Format, req.SubmittedBy = "devices.csv", data, "csv", "alice"
		return req
	}

	t.Run("no rev_* column: every activation billed from the mappings", func(t *testing.T) {
		a, b, c := dbtest.NewICCID(), dbtest.NewICCID(), dbtest.NewICCID()
		data := csvFile(activateHeader,
			a+",activate,"+imei(31)+",M2M5GB,98801",
			b+",activate,"+imei(32)+",M2M1GB,98801",
			c+",suspend,,,",
		)
		res, err := sub.Submit(ctx, request("", data))
		require.NoError(t, err)
		require.True(t, res.Created)
		require.Equal(t, "acme", res.BulkChange.Tenant)
		require.Equal(t, acmeAccount, res.BulkChange.AccountName)
		got := billingOf(t, st, res.ID)
		require.JSONEq(t, `{"customerId":501,"serviceTypeId":12,"providerId":3,"productIds":[7001,7002],"rates":["4.99","0.50"]}`,
			got[a])
		require.JSONEq(t, `{"customerId":501,"serviceTypeId":11,"providerId":4}`, got[b])
		require.Empty(t, got[c], "a suspension bills nothing")

		var opts api.Options
		require.NoError(t, json.Unmarshal(res.BulkChange.Options, &opts))
		require.True(t, opts.BillingEnabled)
		require.Equal(t, "ACME-DEPOT", opts.DefaultSite)
		require.Equal(t, &api.Approval{Reason: "2 activate", ExpiresAfter: 5 * time.Hour}, opts.Approval,
			"the tenant's approval rule")

		t.Run("the content is the rows as given: the same file is the same submission", func(t *testing.T) {
			devs, err := changefile.ParseData(data, "csv", changefile.Options{})
			require.NoError(t, err)
			require.Equal(t, submission.ContentHash(acmeAccount, devs), res.BulkChange.ContentHash)
			again, err := sub.Submit(ctx, request("", data))
			require.NoError(t, err)
			require.False(t, again.Created)
			require.Equal(t, res.ID, again.ID)
		})
	})

	t.Run("a row with rev_* columns keeps its own billing", func(t *testing.T) {
		own, mapped := dbtest.NewICCID(), dbtest.NewICCID()
		header := activateHeader + ",rev_customer_id,rev_service_type_id,rev_provider_id,rev_product_ids,rev_rates"
		res, err := sub.Submit(ctx, request("", csvFile(header,
			own+",activate,"+imei(33)+",NOTMAPPED,98801,9001,90,9,99,1.25",
			mapped+",activate,"+imei(34)+",M2M1GB,98801,,,,,",
		)))
		require.NoError(t, err)
		got := billingOf(t, st, res.ID)
		require.JSONEq(t, `{"customerId":9001,"serviceTypeId":90,"providerId":9,"productIds":[99],"rates":["1.25"]}`, got[own],
			"an override needs no mapping, not even of its plan")
		require.JSONEq(t, `{"customerId":501,"serviceTypeId":11,"providerId":4}`, got[mapped])
	})

	t.Run("rows that cannot be billed: refused with row and field, nothing written", func(t *testing.T) {
		before, starts := bulkCount(t, st), len(fake.started())
		a, b := dbtest.NewICCID(), dbtest.NewICCID()
		data := csvFile(activateHeader,
			a+",activate,"+imei(35)+",M2M5GB,98801",
			b+",activate,"+imei(36)+",UNKNOWN_PLAN,98801",
		)
		_, err := sub.Submit(ctx, request("", data))
		var ve *changefile.ValidationError
		require.ErrorAs(t, err, &ve)
		require.Equal(t, []changefile.FieldError{{Row: 3, Field: "service_plan", Message: `service plan "UNKNOWN_PLAN" ` +
			"has no Rev.io plan mapping in tenant acme, and the row has no rev_* columns (map the plan in revio.plans, " +
			"or give rev_customer_id, rev_service_type_id and rev_provider_id)"}}, ve.Errors)

		// The second account of acme has no customer: every activation is
		// refused, the one with an unmapped plan for both reasons.
		_, err = sub.Submit(ctx, request(acmeUnmapped, data))
		require.ErrorAs(t, err, &ve)
		require.Len(t, ve.Errors, 3)
		require.Equal(t, "row 2, field rev_customer_id: no Rev.io customer is mapped for account "+acmeUnmapped+
			" of tenant acme, and the row has no rev_customer_id (map the account in revio.customers, or give the rev_* columns)",
			ve.Errors[0].Error())
		require.Equal(t, []string{"service_plan", "rev_customer_id"}, []string{ve.Errors[1].Field, ve.Errors[2].Field})
		require.Equal(t, 3, ve.Errors[1].Row)
		require.True(t, strings.HasPrefix(ve.Error(), "bulk change file has 3 problems:"), "changefile's report")

		_, err = sub.Plan(ctx, request(acmeUnmapped, data))
		require.ErrorAs(t, err, &ve, "a dry run says the same")
		require.Len(t, ve.Errors, 3)

		require.Equal(t, before, bulkCount(t, st))
		require.Len(t, fake.started(), starts)
	})

	t.Run("a tenant without mappings bills as before: rows with rev_* only", func(t *testing.T) {
		a := dbtest.NewICCID()
		req, err := submission.ForTenant(cfg, "globex", "")
		require.NoError(t, err)
		req.File, req.Data, req.Format, req.SubmittedBy = "devices.csv", csvFile(activateHeader,
			a+",activate,"+imei(37)+",M2M5GB,98801"), "csv", "alice"
		res, err := sub.Submit(ctx, req)
		require.NoError(t, err)
		require.Equal(t, "globex", res.BulkChange.Tenant)
		require.Empty(t, billingOf(t, st, res.ID)[a])
	})
}

// An idempotency key is the tenant's: another tenant using the same key
// gets a bulk change of its own, and is never answered with (nor told of)
// the first tenant's. The same goes for the warning about lines in other
// unfinished bulk changes: another tenant's bulk change is not named.
func TestIdempotencyKeysArePerTenant(t *testing.T) {
	t.Parallel()
	sub, st, _ := newSubmitter(t)
	ctx := testCtx(t)
	shared := dbtest.NewICCID()
	submit := func(tenant, acct string, data []byte) (*submission.Result, error) {
		req := csvRequest(data)
		req.Tenant, req.Account, req.IdempotencyKey = tenant, acct, "nightly-2026-12-01"
		return sub.Submit(ctx, req)
	}

	a, err := submit("acme", acmeAccount, csvFile("iccid,operation", shared+",suspend"))
	require.NoError(t, err)
	require.True(t, a.Created)

	// Another file under the same key: for acme a reused key, for globex a
	// new bulk change.
	other := csvFile("iccid,operation", dbtest.NewICCID()+",suspend", shared+",suspend")
	_, err = submit("acme", acmeAccount, other)
	var reused *submission.KeyReusedError
	require.ErrorAs(t, err, &reused)

	b, err := submit("globex", globexAcct, other)
	require.NoError(t, err, "no KeyReusedError: it would describe acme's bulk change")
	require.True(t, b.Created)
	require.NotEqual(t, a.ID, b.ID)
	require.Equal(t, "globex", b.BulkChange.Tenant)
	require.Equal(t, 2, b.BulkChange.Total)
	for _, w := range b.Plan.Warnings {
		require.NotContains(t, w, a.ID, "acme's bulk change is not named to globex")
	}
	require.Contains(t, strings.Join(b.Plan.Warnings, "\n"), shared+" is also in 1 unfinished bulk change(s) of another tenant")

	// Each tenant's key finds its own, and the same file with the same
	// key in a third tenant is yet another.
	again, err := submit("globex", globexAcct, other)
	require.NoError(t, err)
	require.False(t, again.Created)
	require.Equal(t, b.ID, again.ID)
	again, err = submit("acme", acmeAccount, csvFile("iccid,operation", shared+",suspend"))
	require.NoError(t, err)
	require.Equal(t, a.ID, again.ID)
	c, err := submit("", account, csvFile("iccid,operation", shared+",suspend"))
	require.NoError(t, err)
	require.True(t, c.Created)
	require.Equal(t, config.DefaultTenant, c.BulkChange.Tenant)
	warnings := strings.Join(c.Plan.Warnings, "\n")
	require.NotContains(t, warnings, a.ID)
	require.NotContains(t, warnings, b.ID)
	require.Contains(t, warnings, shared+" is also in 2 unfinished bulk change(s) of another tenant")
	require.Equal(t, 3, bulkCount(t, st))
}

// A re-drive belongs to its original's tenant, and a tenant asking to
// re-drive another's bulk change is refused with nothing written.
func TestRedriveKeepsTheTenant(t *testing.T) {
	t.Parallel()
	sub, st, _ := newSubmitter(t)
	ctx := testCtx(t)
	iccid := dbtest.NewICCID()
	req := csvRequest(csvFile("iccid,operation", iccid+",suspend"))
	req.Tenant, req.Account = "acme", acmeAccount
	orig, err := sub.Submit(ctx, req)
	require.NoError(t, err)
	_, _, err = st.Complete(ctx, db.Completion{DeviceChangeID: changeID(t, st, orig.ID, iccid), Status: change.Failed,
		ErrorCode: notFound})
	require.NoError(t, err)

	_, err = sub.Redrive(ctx, submission.RedriveRequest{Original: orig.ID, Tenant: "globex", SubmittedBy: "bob", BatchSize: 10})
	var other *submission.OtherTenantError
	require.True(t, errors.As(err, &other), "%v", err)
	require.EqualError(t, err, "bulk change "+orig.ID+" belongs to tenant acme, not globex: nothing was done")
	require.Equal(t, 1, bulkCount(t, st))

	for _, asking := range []string{"acme", ""} {
		re, err := sub.Redrive(ctx, submission.RedriveRequest{Original: orig.ID, Tenant: asking, SubmittedBy: "bob",
			BatchSize: 10})
		require.NoError(t, err)
		require.Equal(t, "acme", re.BulkChange.Tenant)
		require.Equal(t, acmeAccount, re.BulkChange.AccountName)
		got, err := st.BulkChangeTenant(ctx, re.ID)
		require.NoError(t, err)
		require.Equal(t, "acme", got)
	}
}
