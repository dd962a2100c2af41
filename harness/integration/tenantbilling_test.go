package integration

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/config"
	revsim "github.com/iot-ops/tsbulk/harness/reviosim"
	"github.com/iot-ops/tsbulk/harness/stack"
	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/submission"
)

// TestBillingFromTenantMappings activates devices from a file without any
// rev_* column for a tenant with Rev.io mappings: each line's Rev.io
// service is created with the customer mapped to the account and the
// service type, provider, products and rates mapped to its service plan;
// a row with rev_* columns is billed with its own. Once for the default
// tenant (top-level revio.customers and revio.plans), once for a named
// tenant with its own ThingSpace and its own Rev.io client, through the
// worker's per-tenant clients.
func TestBillingFromTenantMappings(t *testing.T) {
	mappings := func(account string) ([]config.CustomerMapping, []config.PlanMapping) {
		return []config.CustomerMapping{{Account: account, CustomerID: 777}}, []config.PlanMapping{
			{ServicePlan: "m2m_4G", ServiceTypeID: 21, ProviderID: 5, ProductIDs: []int64{601, 602}, Rates: []string{"3.00", "0.25"}},
			{ServicePlan: "m2m_5G", ServiceTypeID: 22, ProviderID: 6},
		}
	}
	t.Run("default tenant", func(t *testing.T) {
		s := newStackWithWorker(t, stack.Options{
			ThingSpace: simConfig(200*time.Millisecond, 300*time.Millisecond, 21),
			Config: func(c *config.Config) {
				c.Bulk.CallbackTimeout = 10 * time.Second
				c.Revio.Customers, c.Revio.Plans = mappings(c.ThingSpace.Account)
			},
		})
		billFromMappings(t, s, "", s.TS)
	})
	t.Run("named tenant", func(t *testing.T) {
		s := newStackWithWorker(t, stack.Options{
			ThingSpace: simConfig(200*time.Millisecond, 300*time.Millisecond, 22),
			Tenants:    []stack.TenantOptions{{ID: "gamma", ThingSpace: simConfig(200*time.Millisecond, 300*time.Millisecond, 23)}},
			Config: func(c *config.Config) {
				c.Bulk.CallbackTimeout = 10 * time.Second
				g := &c.Tenants[0]
				g.Revio = config.TenantRevio{Enabled: true, BaseURL: c.Revio.BaseURL, Login: c.Revio.Login,
					ClientCode: c.Revio.ClientCode, Password: c.Revio.Password, SubscriptionKey: c.Revio.SubscriptionKey,
					CallsPerMinute: c.Revio.CallsPerMinute, RetryFor: c.Revio.RetryFor}
				g.Revio.Customers, g.Revio.Plans = mappings(g.DefaultAccount())
				// The default tenant bills nothing: only gamma's client may.
				c.Revio.Enabled = false
			},
		})
		billFromMappings(t, s, "gamma", s.TenantTS["gamma"])
	})
}

// billFromMappings activates five devices of tenant's ThingSpace (sim) from
// a file whose rows carry no rev_* column but the last, and checks what
// Rev.io was asked to create.
func billFromMappings(t *testing.T, s *stack.Stack, tenant string, sim *tssim.Simulator) {
	t.Helper()
	require.NoError(t, s.Config.ValidateStarter())
	devs := tssim.GenerateDevices(5, "8914800210", "preactive")
	require.NoError(t, sim.Seed(devs...))
	var rows []row
	for i, d := range devs {
		r := row{"iccid": d.ICCID, "imei": d.IMEI, "operation": "activate", "service_plan": "m2m_4G", "mdn_zip_code": "98801"}
		switch i {
		case 3:
			r["service_plan"] = "m2m_5G"
		case 4:
			for k, v := range map[string]string{"rev_customer_id": "4242", "rev_service_type_id": "7", "rev_provider_id": "3",
				"rev_product_ids": "501", "rev_rates": "9.99"} {
				r[k] = v
			}
		}
		rows = append(rows, r)
	}
	file := writeCSV(t, []string{"iccid", "imei", "operation", "service_plan", "mdn_zip_code", "rev_customer_id",
		"rev_service_type_id", "rev_provider_id", "rev_product_ids", "rev_rates"}, rows)

	req, err := submission.ForTenant(s.Config, tenant, "")
	require.NoError(t, err)
	require.NotNil(t, req.Mappings)
	require.True(t, req.Options.BillingEnabled)
	req.File, req.SubmittedBy = file, "alice"
	sub := &submission.Submitter{Store: s.Store, Temporal: s.Client}
	res, err := sub.Submit(context.Background(), req)
	require.NoError(t, err)
	out := waitBulk(t, s, res, 5*time.Minute)
	require.Zero(t, out.Errors)

	got := results(t, s, res.ID)
	services := map[string][]revsim.ServiceRecord{}
	for _, svc := range s.Revio.Services() {
		services[svc.Number2] = append(services[svc.Number2], svc)
	}
	products := map[int64][]revsim.ServiceProductRecord{}
	for _, p := range s.Revio.ServiceProducts() {
		products[p.ServiceID] = append(products[p.ServiceID], p)
	}
	type billed struct {
		customer, serviceType, provider int64
		products                        map[int64]string
	}
	want := []billed{
		{777, 21, 5, map[int64]string{601: "3.00", 602: "0.25"}},
		{777, 21, 5, map[int64]string{601: "3.00", 602: "0.25"}},
		{777, 21, 5, map[int64]string{601: "3.00", 602: "0.25"}},
		{777, 22, 6, map[int64]string{}},
		{4242, 7, 3, map[int64]string{501: "9.99"}},
	}
	for i, d := range devs {
		r := got[d.ICCID]
		require.EqualValues(t, change.Processed, r.Status, "%s: %s %s", d.ICCID, r.ErrorCode, r.ErrorMessage)
		require.EqualValues(t, "CREATED", r.BillingStatus, "%s: %s", d.ICCID, r.BillingError)
		svcs := services[d.ICCID]
		require.Len(t, svcs, 1, "one Rev.io service for %s", d.ICCID)
		svc := svcs[0]
		require.Equal(t, r.MSISDN, svc.Number)
		require.Equal(t, want[i].customer, svc.CustomerID, "row %d", i+2)
		require.Equal(t, want[i].serviceType, svc.ServiceTypeID, "row %d", i+2)
		require.Equal(t, want[i].provider, svc.ProviderID, "row %d", i+2)
		gotProducts := map[int64]string{}
		for _, p := range products[svc.ServiceID] {
			gotProducts[p.ProductID] = p.Rate
			require.Equal(t, want[i].customer, p.CustomerID)
		}
		require.Equal(t, want[i].products, gotProducts, "row %d", i+2)
	}
	require.Len(t, s.Revio.Services(), len(devs))
}
