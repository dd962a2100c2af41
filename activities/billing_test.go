package activities_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	revsim "github.com/iot-ops/tsbulk/harness/reviosim"
	"github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/revio"
)

var billingData = db.BillingData{CustomerID: 5001, ServiceTypeID: 17, ProviderID: 3,
	ProductIDs: []int64{901, 902, 901}, Rates: []string{"10.00", "2.50", "10.00"}}

// activated creates an activation with billing data and completes it the
// way the device's workflow does (PROCESSED, MSISDN, billing pending). It
// returns the bulk change and device change ids and the device.
func (h *harness) activated(msisdn string) (string, int64, thingspacesim.DeviceSeed) {
	h.t.Helper()
	dev := devices(1, "89148002"+msisdn[len(msisdn)-4:], "active")[0]
	c := changeSpec{seed: dev, op: "activate", batch: 1, billing: &billingData,
		params: db.ChangeParams{ServicePlan: "M2M_FLEX_5GB", MdnZipCode: "30301"}}
	bulk, ids := h.newBulk(account, c)
	id := ids[dev.ICCID]
	h.exec(
		`UPDATE device_changes SET status = 'SUBMITTED', request_id = 'req-activate', submitted_at = now() WHERE id = $1`,
		id,
	)
	var res activities.CompleteResult
	require.NoError(
		h.t,
		h.run(&res, h.acts.CompleteDeviceChange, activities.CompleteInput{DeviceChangeID: id, Operation: "activate",
			Status: change.Processed, Outcome: "ACTIVATED", FinalState: change.StateActive, MSISDN: msisdn,
			ConfirmedBy: "callback", ConfirmedAt: time.Now(), BillingPending: true, RequestID: "req-activate"}),
	)
	require.Equal(h.t, change.BillingPending, h.change(id).BillingStatus)
	return bulk, id, dev
}

// createBilling runs CreateBillingService, for the tests of its failures.
func (h *harness) createBilling(bulk string, id int64) error {
	h.t.Helper()
	return h.run(nil, h.acts.CreateBillingService, activities.BillingInput{BulkChangeID: bulk, DeviceChangeID: id})
}

// mustCreateBilling runs CreateBillingService, which must succeed.
func (h *harness) mustCreateBilling(bulk string, id int64) *activities.BillingResult {
	h.t.Helper()
	in := activities.BillingInput{BulkChangeID: bulk, DeviceChangeID: id}
	return mustResult[activities.BillingResult](h, h.acts.CreateBillingService, in)
}

// mustDisconnectBilling runs DisconnectBilling, which must succeed.
func (h *harness) mustDisconnectBilling(bulk string, id int64) {
	h.t.Helper()
	in := activities.BillingInput{BulkChangeID: bulk, DeviceChangeID: id}
	require.NoError(h.t, h.run(nil, h.acts.DisconnectBilling, in))
}

// setOutcome records the outcome ThingSpace gave a device change.
func (h *harness) setOutcome(id int64, o change.Outcome) {
	h.t.Helper()
	h.exec(`UPDATE device_changes SET outcome = $2 WHERE id = $1`, id, string(o))
}

// foundBy returns how the stored service and products were obtained.
func (h *harness) foundBy(id int64) (service string, products []string) {
	h.t.Helper()
	require.NoError(
		h.t,
		h.store.Pool.QueryRow(ctx(h.t), `SELECT found_by FROM revio_services WHERE device_change_id = $1`, id).
			Scan(&service),
	)
	ps, err := h.store.RevioProducts(ctx(h.t), id)
	require.NoError(h.t, err)
	for _, p := range ps {
		products = append(products, p.FoundBy)
	}
	return service, products
}

// revioCalls counts the Rev.io simulator's calls of one route.
func (h *harness) revioCalls(route string) int { return h.rsim.Stats().Calls[route] }

// The Rev.io service of an activation is created once, with one service
// product per product; a second run finds the stored ids and calls
// nothing.
func TestCreateBillingServiceCreatesOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	bulk, id, dev := h.activated("3125550101")

	res := h.mustCreateBilling(bulk, id)
	require.True(t, res.Created)
	require.Len(t, res.ServiceProductIDs, 3)

	svcs := h.rsim.Services()
	require.Len(t, svcs, 1)
	s := svcs[0]
	require.Equal(t, res.ServiceID, s.ServiceID)
	require.Equal(t, "3125550101", s.Number, "number is the MSISDN")
	require.Equal(t, dev.ICCID, s.Number2, "number2 is the ICCID")
	require.Equal(t, billingData.CustomerID, s.CustomerID)
	require.Equal(t, billingData.ProviderID, s.ProviderID)
	require.Equal(t, billingData.ServiceTypeID, s.ServiceTypeID)
	require.Equal(t, h.change(id).CompletedAt.UTC().Format("2006-01-02"), s.ActivatedDate)

	prods := h.rsim.ServiceProducts()
	require.Len(t, prods, 3)
	for i, p := range prods {
		require.Equal(t, res.ServiceProductIDs[i], p.ServiceProductID)
		require.Equal(t, s.ServiceID, p.ServiceID)
		require.Equal(t, billingData.ProductIDs[i], p.ProductID)
		require.Equal(t, billingData.Rates[i], p.Rate)
		require.Equal(t, billingData.CustomerID, p.CustomerID)
		require.Equal(t, "ACTIVE", p.Status)
	}
	svc, products := h.foundBy(id)
	require.Equal(t, "created", svc)
	require.Equal(t, []string{"created", "created", "created"}, products)
	dc := h.change(id)
	require.Equal(t, change.BillingCreated, dc.BillingStatus)
	// Even a first attempt searches before it creates: a step stranded in
	// PENDING is retried as a first attempt too.
	require.Equal(t, 1, h.revioCalls("GET /v1/Services"))
	require.Equal(t, 1, h.revioCalls("POST /v1/Services"))
	require.Equal(t, 3, h.revioCalls("POST /v1/ServiceProduct"))

	calls := h.rsim.Stats().Total
	again := h.mustCreateBilling(bulk, id)
	require.Equal(t, res, again)
	require.Equal(t, calls, h.rsim.Stats().Total, "stored ids: no call to Rev.io")
	require.Len(t, h.rsim.Services(), 1)
	require.Len(t, h.rsim.ServiceProducts(), 3)

	// Every Rev.io exchange is audited under its device change, without
	// the credentials.
	revioRows := 0
	for _, r := range h.audit(bulk) {
		if r.Service != "revio" {
			continue
		}
		revioRows++
		require.Equal(t, id, r.DeviceChangeID)
		text := r.Path + r.RequestBody + r.ResponseBody + r.ErrorMessage
		require.NotContains(t, text, revioPass)
		require.NotContains(t, text, revioSubKey)
	}
	require.Equal(t, 5, revioRows)
}

// Rev.io created the service and its products but the ids were never
// stored (worker killed in between): the retry finds them by search and
// creates nothing.
func TestCreateBillingServiceFindsWhatWasNeverStored(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	bulk, id, _ := h.activated("3125550102")
	first := h.mustCreateBilling(bulk, id)

	h.exec(`DELETE FROM revio_service_products WHERE device_change_id = $1`, id)
	h.exec(`DELETE FROM revio_services WHERE device_change_id = $1`, id)
	require.NoError(
		t,
		h.run(
			nil,
			h.acts.RecordBillingFailure,
			activities.RecordBillingFailureInput{DeviceChangeID: id, Message: "worker lost"},
		),
	)
	var failed []int64
	require.NoError(
		t,
		h.run(&failed, h.acts.ListBillingFailures, activities.ListBillingFailuresInput{BulkChangeID: bulk, Limit: 10}),
	)
	require.Equal(t, []int64{id}, failed)

	posts := h.revioCalls("POST /v1/Services") + h.revioCalls("POST /v1/ServiceProduct")
	res := h.mustCreateBilling(bulk, id)
	require.False(t, res.Created)
	require.Equal(t, first.ServiceID, res.ServiceID)
	require.Equal(t, first.ServiceProductIDs, res.ServiceProductIDs, "each product matched once, none duplicated")
	require.Equal(
		t,
		posts,
		h.revioCalls("POST /v1/Services")+h.revioCalls("POST /v1/ServiceProduct"),
		"nothing created",
	)
	require.Len(t, h.rsim.Services(), 1)
	require.Len(t, h.rsim.ServiceProducts(), 3)

	svc, products := h.foundBy(id)
	require.Equal(t, "search", svc)
	require.Equal(t, []string{"search", "search", "search"}, products)
	require.Equal(t, change.BillingCreated, h.change(id).BillingStatus)
}

// The service was created at Rev.io (its answer lost) before anything was
// stored: a later attempt finds it and adds only the products.
func TestCreateBillingServiceFindsServiceCreatedWithoutAnswer(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	bulk, id, dev := h.activated("3125550103")
	serviceID, err := h.acts.Revio.CreateService(ctx(t), revio.CreateServiceRequest{CustomerID: billingData.CustomerID,
		ProviderID: billingData.ProviderID, ServiceTypeID: billingData.ServiceTypeID,
		Number: "3125550103", Number2: dev.ICCID})
	require.NoError(t, err)
	// An unrelated service of the same customer is not taken for it.
	_, err = h.acts.Revio.CreateService(ctx(t), revio.CreateServiceRequest{CustomerID: billingData.CustomerID,
		ProviderID: billingData.ProviderID, Number: "3125559999", Number2: "89148009999999999999"})
	require.NoError(t, err)
	require.NoError(t, h.store.SetBillingStatus(ctx(t), id, change.BillingError, "", "timeout"))

	res := h.mustCreateBilling(bulk, id)
	require.False(t, res.Created)
	require.Equal(t, serviceID, res.ServiceID)
	require.Len(t, h.rsim.Services(), 2, "no new service")
	prods := h.rsim.ServiceProducts()
	require.Len(t, prods, 3)
	for _, p := range prods {
		require.Equal(t, serviceID, p.ServiceID)
	}
	svc, products := h.foundBy(id)
	require.Equal(t, "search", svc)
	require.Equal(t, []string{"created", "created", "created"}, products)
}

// Rev.io failures: 5xx and 429 are retried (429 after its Retry-After),
// a refusal (401) is not. Nothing is created by a failed call.
func TestCreateBillingServiceRevioErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	bulk, id, _ := h.activated("3125550104")

	h.rsim.SetFaults(revsim.Faults{FailCreateServiceRate: 1})
	err := h.createBilling(bulk, id)
	ae := appError(t, err)
	require.False(t, ae.NonRetryable())
	require.Equal(t, activities.ErrTypeRevio, ae.Type())
	require.Contains(t, ae.Error(), "500")
	require.Empty(t, h.rsim.Services())

	h.rsim.SetFaults(revsim.Faults{RateLimitRate: 1})
	err = h.createBilling(bulk, id)
	ae = appError(t, err)
	require.False(t, ae.NonRetryable())
	require.Equal(t, activities.ErrTypeRevio, ae.Type())
	require.Equal(t, time.Second, ae.NextRetryDelay())

	h.rsim.SetFaults(revsim.Faults{ErrorRate: 1})
	err = h.createBilling(bulk, id)
	ae = appError(t, err)
	require.False(t, ae.NonRetryable())
	require.Empty(t, h.rsim.Services())
	require.Equal(t, change.BillingPending, h.change(id).BillingStatus)

	h.rsim.SetFaults(revsim.Faults{})
	good := h.acts.Revio
	bad, err := revio.New(revio.Config{BaseURL: h.revioURL, Login: revioLogin, ClientCode: revioCode,
		Password: "wrong-password", SubscriptionKey: revioSubKey, CallsPerMinute: -1, MaxRetries: -1})
	require.NoError(t, err)
	h.acts.Revio = bad
	err = h.createBilling(bulk, id)
	ae = appError(t, err)
	require.True(t, ae.NonRetryable(), "a refusal is not retried")
	require.Equal(t, activities.ErrTypeRevio, ae.Type())
	require.Contains(t, ae.Error(), "401")
	require.NotContains(t, ae.Error(), "wrong-password")
	h.acts.Revio = good

	// Once Rev.io is back, the service is created exactly once.
	res := h.mustCreateBilling(bulk, id)
	require.True(t, res.Created)
	require.Len(t, h.rsim.Services(), 1)
	require.Len(t, h.rsim.ServiceProducts(), 3)
}

// A billing row written before rev_provider_id was required (stranded in
// PostgreSQL, or retried with billing-retry) has no provider: Rev.io
// refuses such a service, so the step fails at once, not retryable, with a
// message naming provider_id, and nothing is sent to create it.
func TestCreateBillingServiceWithoutProvider(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	bulk, id, _ := h.activated("3125550106")
	h.exec(`UPDATE device_changes SET billing = '{"customerId":5001,"serviceTypeId":17}' WHERE id = $1`, id)

	for _, status := range []change.BillingStatus{change.BillingPending, change.BillingError} {
		require.NoError(t, h.store.SetBillingStatus(ctx(t), id, status, "", ""))
		err := h.createBilling(bulk, id)
		ae := appError(t, err)
		require.True(t, ae.NonRetryable(), "no retry can supply the provider")
		require.Equal(t, activities.ErrTypeRevio, ae.Type())
		require.Contains(t, ae.Error(), "provider_id is required")
		require.Zero(t, h.revioCalls("POST /v1/Services"), "refused before sending")
		require.Empty(t, h.rsim.Services())
	}
}

// A deactivated device's Rev.io products and service are disconnected
// with one date; a second run has nothing left to do.
func TestDisconnectBilling(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	bulk, id, dev := h.activated("3125550105")
	created := h.mustCreateBilling(bulk, id)

	off, ids := h.newBulk(account, changes("deactivate", 1, dev)...)
	offID := ids[dev.ICCID]
	h.exec(`UPDATE device_changes SET status = 'SUBMITTED', submitted_at = now() WHERE id = $1`, offID)
	require.NoError(
		t,
		h.run(nil, h.acts.CompleteDeviceChange, activities.CompleteInput{DeviceChangeID: offID, Operation: "deactivate",
			Status: change.Processed, Outcome: "DEACTIVATED", FinalState: change.StateDeactive, ReleaseMSISDN: true,
			ConfirmedBy: "callback", ConfirmedAt: time.Now()}),
	)

	h.mustDisconnectBilling(off, offID)
	date := h.change(offID).CompletedAt.UTC().Format("2006-01-02")
	svcs := h.rsim.Services()
	require.Len(t, svcs, 1)
	require.Equal(t, created.ServiceID, svcs[0].ServiceID)
	require.Equal(t, date, svcs[0].DisconnectedDate)
	prods := h.rsim.ServiceProducts()
	require.Len(t, prods, 3)
	for _, p := range prods {
		require.Equal(t, "DISCONNECTED", p.Status)
		require.Equal(t, date, p.CanceledDate, "same date as the service")
	}
	var open int
	require.NoError(
		t,
		h.store.Pool.QueryRow(ctx(t), `SELECT (SELECT count(*) FROM revio_services WHERE disconnected_at IS NULL)
		+ (SELECT count(*) FROM revio_service_products WHERE disconnected_at IS NULL)`).Scan(&open),
	)
	require.Zero(t, open)

	calls := h.rsim.Stats().Total
	h.mustDisconnectBilling(off, offID)
	require.Equal(t, calls, h.rsim.Stats().Total, "already disconnected: nothing to do")
}

// A step stranded in PENDING (its worker died after Rev.io created the
// service, before the id was stored) is run again by a billing retry as a
// first attempt: it finds the service its change created, by search, and
// creates no second line.
func TestCreateBillingServiceStrandedCreateFoundOnFirstAttempt(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	bulk, id, dev := h.activated("3125550111")
	// What the dead step did at Rev.io: the service, with its change's mark.
	made, err := h.acts.Revio.CreateService(ctx(t), revio.CreateServiceRequest{
		CustomerID: billingData.CustomerID, ProviderID: billingData.ProviderID,
		ServiceTypeID: billingData.ServiceTypeID, Number: "3125550111", Number2: dev.ICCID,
		ActivatedDate: time.Now().UTC().Format("2006-01-02"), Description: "tsbulk device change " + itoa(id),
	})
	require.NoError(t, err)
	require.Equal(t, change.BillingPending, h.change(id).BillingStatus, "stranded: pending, no id stored")

	res := h.mustCreateBilling(bulk, id)
	require.Equal(t, made, res.ServiceID)
	require.False(t, res.Created)
	require.Len(t, h.rsim.Services(), 1, "no second Rev.io line")
	require.Len(t, h.rsim.ServiceProducts(), 3)
	svc, _ := h.foundBy(id)
	require.Equal(t, "search", svc)
}

// A stranded step whose service id was stored but whose products' ids were
// not (the worker died after Rev.io created them) lists the service's
// products on its retry, a first attempt, instead of creating them again.
func TestCreateBillingServiceStrandedProductsFoundOnFirstAttempt(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	bulk, id, _ := h.activated("3125550112")
	first := h.mustCreateBilling(bulk, id)
	h.exec(`DELETE FROM revio_service_products WHERE device_change_id = $1`, id)
	h.exec(`UPDATE device_changes SET billing_status = 'PENDING' WHERE id = $1`, id)

	res := h.mustCreateBilling(bulk, id)
	require.Equal(t, first.ServiceProductIDs, res.ServiceProductIDs)
	require.Len(t, h.rsim.ServiceProducts(), 3, "no product created twice")
}

// Two Rev.io steps of the same device change running at once (two billing
// retries, or an attempt overlapping the one it replaces) create one
// service: the second waits for the first's lock, backing off retryably,
// and then finds what the first stored.
func TestCreateBillingServiceConcurrentStepsCreateOneService(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	bulk, id, _ := h.activated("3125550113")
	// Each Rev.io call takes a while, so that the two steps overlap.
	h.rsim.SetFaults(revsim.Faults{Latency: 300 * time.Millisecond})

	in := activities.BillingInput{BulkChangeID: bulk, DeviceChangeID: id}
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range errs {
		var suite testsuite.WorkflowTestSuite
		env := suite.NewTestActivityEnvironment()
		env.RegisterActivity(h.acts)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = env.ExecuteActivity(h.acts.CreateBillingService, in)
		}()
	}
	wg.Wait()

	require.Len(t, h.rsim.Services(), 1, "one Rev.io line for one device change")
	for _, err := range errs {
		if err == nil {
			continue
		}
		ae := appError(t, err)
		require.Equal(t, activities.ErrTypeRevio, ae.Type())
		require.False(t, ae.NonRetryable(), "the step that found the lock held tries again later")
	}
	// The step that backed off, run again, finds the service.
	res := h.mustCreateBilling(bulk, id)
	require.Equal(t, h.rsim.Services()[0].ServiceID, res.ServiceID)
	require.Len(t, h.rsim.Services(), 1)
	require.Len(t, h.rsim.ServiceProducts(), 3)
}

// More Rev.io steps of different device changes run at once than the store
// has connections (the test store has 8): each holding a connection for
// its lock would leave none for the steps' own queries, and every step
// would wait for ever. The lease on the row holds no connection.
func TestCreateBillingServiceStepsOutnumberingThePoolAllFinish(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const steps = 12
	type step struct {
		bulk string
		id   int64
	}
	var all []step
	for i := range steps {
		bulk, id, _ := h.activated(fmt.Sprintf("31255502%02d", i))
		all = append(all, step{bulk, id})
	}
	h.rsim.SetFaults(revsim.Faults{Latency: 200 * time.Millisecond})

	errs := make([]error, steps)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i, s := range all {
		var suite testsuite.WorkflowTestSuite
		env := suite.NewTestActivityEnvironment()
		env.RegisterActivity(h.acts)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = env.ExecuteActivity(h.acts.CreateBillingService,
				activities.BillingInput{BulkChangeID: s.bulk, DeviceChangeID: s.id})
		}()
	}
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("%d Rev.io steps on a store of 8 connections did not finish: the pool is starved", steps)
	}
	for i, err := range errs {
		require.NoError(t, err, "step %d", i)
	}
	require.Len(t, h.rsim.Services(), steps, "one Rev.io line per device change")
}
