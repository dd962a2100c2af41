package revio_test

// Contract tests: the client against the simulator over real HTTP. The
// simulator has its own wire types, so a field name, media type or status
// the two disagree on fails here.

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/harness/reviosim"
	"github.com/iot-ops/tsbulk/revio"
)

const (
	cLogin    = "INTEGRATIONS"
	cClient   = "ACME"
	cPassword = "contract-Passw0rd"
	cKey      = "contract-subscription-key"
)

type contractEnv struct {
	sim *reviosim.Simulator
	srv *httptest.Server
}

func newContract(t *testing.T, mod ...func(*reviosim.Config)) *contractEnv {
	t.Helper()
	cfg := reviosim.Config{
		Login:           cLogin,
		ClientCode:      cClient,
		Password:        cPassword,
		SubscriptionKey: cKey,
		CallsPerMinute:  -1,
		Seed:            7,
	}
	for _, m := range mod {
		m(&cfg)
	}
	sim := reviosim.New(cfg)
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() { sim.Close(); srv.Close() })
	return &contractEnv{sim: sim, srv: srv}
}

func (e *contractEnv) client(t *testing.T, mod ...func(*revio.Config)) *revio.Client {
	t.Helper()
	cfg := revio.Config{
		BaseURL: e.srv.URL, Login: cLogin, ClientCode: cClient, Password: cPassword, SubscriptionKey: cKey,
		CallsPerMinute: -1, HTTPTimeout: 5 * time.Second,
	}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := revio.New(cfg)
	require.NoError(t, err)
	return c
}

func TestContractServiceLifecycle(t *testing.T) {
	e := newContract(t)
	c := e.client(t)
	ctx := context.Background()

	require.NoError(t, c.CheckAuth(ctx))

	sid, err := c.CreateService(ctx, revio.CreateServiceRequest{
		CustomerID: 7, ProviderID: 5, ServiceTypeID: 9, Number: "15551230001", Number2: "89148000000000000001",
		ActivatedDate: "2024-05-01", EffectiveDate: "2024-05-01", UsagePlanGroupID: 3, Description: "device 1",
	})
	require.NoError(t, err)
	stored := e.sim.Services()
	require.Len(t, stored, 1)
	assert.Equal(t, sid, stored[0].ServiceID)
	assert.Equal(t, "89148000000000000001", stored[0].Number2)
	assert.EqualValues(t, 3, stored[0].UsagePlanGroupID)

	sv, err := c.GetService(ctx, sid)
	require.NoError(t, err)
	assert.Equal(
		t,
		&revio.Service{ServiceID: sid, CustomerID: 7, ProviderID: 5, ServiceTypeID: 9, Number: "15551230001",
			Number2: "89148000000000000001", ActivatedDate: "2024-05-01", Description: "device 1"},
		sv,
	)

	_, err = c.GetService(ctx, sid+1000)
	assert.True(t, revio.IsNotFound(err))

	for _, s := range []revio.ServiceSearch{{Number: "15551230001"}, {Number2: "89148000000000000001"}, {CustomerID: 7}, {Number: "15551230001", CustomerID: 7}} {
		found, err := c.FindServices(ctx, s)
		require.NoError(t, err)
		require.Len(t, found, 1, "%+v", s)
		assert.Equal(t, sid, found[0].ServiceID)
	}
	found, err := c.FindServices(ctx, revio.ServiceSearch{Number: "15551230001", CustomerID: 8})
	require.NoError(t, err)
	assert.Empty(t, found)

	require.NoError(
		t,
		c.UpdateService(ctx, sid, []revio.PatchOp{{Op: "replace", Path: "/description", Value: "renamed"}}),
	)
	sv, err = c.GetService(ctx, sid)
	require.NoError(t, err)
	assert.Equal(t, "renamed", sv.Description)

	var spIDs []int64
	for _, rate := range []string{"12.50", "3"} {
		id, err := c.CreateServiceProduct(ctx, revio.CreateServiceProductRequest{
			ServiceID: sid, ProductID: 11, CustomerID: 7, Rate: rate, GenerateProration: true,
			EffectiveDate: "2024-05-01", ActivatedDate: "2024-05-01",
		})
		require.NoError(t, err)
		spIDs = append(spIDs, id)
	}
	recs := e.sim.ServiceProducts()
	require.Len(t, recs, 2)
	assert.Equal(t, "12.50", recs[0].Rate)
	assert.True(t, recs[0].GenerateProration)
	assert.Equal(t, 1, recs[0].Quantity)

	active, err := c.ListServiceProducts(ctx, sid, revio.StatusActive)
	require.NoError(t, err)
	require.Len(t, active, 2)
	assert.Equal(
		t,
		revio.ServiceProduct{ServiceProductID: spIDs[0], ServiceID: sid, ProductID: 11, CustomerID: 7, Rate: "12.50",
			Quantity: 1, Status: "ACTIVE", ActivatedDate: "2024-05-01"},
		active[0],
	)

	// Clean deactivation: products first, then the service, same date.
	err = c.UpdateService(ctx, sid, []revio.PatchOp{{Op: "replace", Path: "/disconnected_date", Value: "2024-06-01"}})
	var re *revio.Error
	require.ErrorAs(t, err, &re)
	assert.Equal(t, 400, re.HTTPStatus)
	assert.Contains(t, re.Message, "DISCONNECTED")
	assert.False(t, re.Retryable())

	for _, id := range spIDs {
		require.NoError(t, c.DisconnectServiceProduct(ctx, id, "2024-06-01", false))
	}
	err = c.DisconnectServiceProduct(ctx, spIDs[0], "2024-06-01", false)
	require.ErrorAs(t, err, &re)
	assert.Equal(t, 400, re.HTTPStatus, "second disconnect is refused by the simulator")

	active, err = c.ListServiceProducts(ctx, sid, revio.StatusActive)
	require.NoError(t, err)
	assert.Empty(t, active)
	all, err := c.ListServiceProducts(ctx, sid, "")
	require.NoError(t, err)
	require.Len(t, all, 2)
	assert.Equal(t, revio.StatusDisconnected, all[0].Status)
	assert.Equal(t, "2024-06-01", all[0].CanceledDate)

	require.NoError(
		t,
		c.UpdateService(ctx, sid, []revio.PatchOp{{Op: "replace", Path: "/disconnected_date", Value: "2024-06-01"}}),
	)
	sv, err = c.GetService(ctx, sid)
	require.NoError(t, err)
	assert.Equal(t, "2024-06-01", sv.DisconnectedDate)

	// Validation errors from the server come back with their message.
	_, err = c.CreateServiceProduct(ctx, revio.CreateServiceProductRequest{ServiceID: sid, ProductID: 1, CustomerID: 8})
	require.ErrorAs(t, err, &re)
	assert.Equal(t, 400, re.HTTPStatus)
	assert.Contains(t, re.Message, "does not belong to customer 8")
}

func TestContractAuthFailures(t *testing.T) {
	e := newContract(t)
	ctx := context.Background()
	cases := []struct {
		name string
		mod  func(*revio.Config)
		want string
	}{
		{"wrong password", func(c *revio.Config) { c.Password = "wrong-password" }, "Authorization has been denied"},
		{"wrong client code", func(c *revio.Config) { c.ClientCode = "OTHER" }, "Authorization has been denied"},
		{
			"wrong subscription key",
			func(c *revio.Config) { c.SubscriptionKey = "wrong-key" },
			"invalid subscription key",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := e.client(t, tc.mod)
			err := c.CheckAuth(ctx)
			var re *revio.Error
			require.ErrorAs(t, err, &re)
			assert.Equal(t, 401, re.HTTPStatus)
			assert.Contains(t, re.Message, tc.want)
			assert.False(t, re.Retryable())
			assert.NotContains(t, err.Error(), cPassword)
			assert.NotContains(t, err.Error(), cKey)
			_, err = c.CreateService(ctx, revio.CreateServiceRequest{CustomerID: 1, ProviderID: 5})
			require.ErrorAs(t, err, &re)
			assert.Equal(t, 401, re.HTTPStatus)
		})
	}
	assert.Empty(t, e.sim.Services())
	assert.Equal(t, 6, e.sim.Stats().AuthFailures)
}

func TestContractRateLimit(t *testing.T) {
	e := newContract(t, func(c *reviosim.Config) { c.CallsPerMinute = 3 })
	c := e.client(t)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		require.NoError(t, c.CheckAuth(ctx))
	}
	_, err := c.FindServices(ctx, revio.ServiceSearch{CustomerID: 1})
	var re *revio.Error
	require.ErrorAs(t, err, &re)
	assert.Equal(t, 429, re.HTTPStatus)
	assert.True(t, re.Retryable())
	assert.Greater(t, re.RetryAfter, 50*time.Second)
	assert.LessOrEqual(t, re.RetryAfter, time.Minute)
	assert.Equal(t, 4, e.sim.Stats().Total, "429 is not retried by the client")
}

func TestContractClientPacingAvoids429(t *testing.T) {
	// The client's bucket at the simulator's limit keeps a burst of calls
	// under the window (120/min: burst 2, then ~2 calls/s).
	e := newContract(t, func(c *reviosim.Config) { c.CallsPerMinute = 120 })
	c := e.client(t, func(c *revio.Config) { c.CallsPerMinute = 120 })
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); assert.NoError(t, c.CheckAuth(context.Background())) }()
	}
	wg.Wait()
	assert.Zero(t, e.sim.Stats().RateLimited)
}

func TestContractPagingOver500(t *testing.T) {
	e := newContract(t)
	c := e.client(t)
	ctx := context.Background()
	const n = 1105
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			_, err := c.CreateService(
				ctx,
				revio.CreateServiceRequest{CustomerID: 42, ProviderID: 5, Number: fmt.Sprintf("1555%07d", i)},
			)
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	// A few services of another customer must not leak into the result.
	_, err := c.CreateService(ctx, revio.CreateServiceRequest{CustomerID: 43, ProviderID: 5, Number: "x"})
	require.NoError(t, err)

	before := e.sim.Stats().Calls["GET /v1/Services"]
	got, err := c.FindServices(ctx, revio.ServiceSearch{CustomerID: 42})
	require.NoError(t, err)
	require.Len(t, got, n)
	seen := make(map[int64]bool, n)
	for _, s := range got {
		assert.False(t, seen[s.ServiceID], "duplicate %d", s.ServiceID)
		seen[s.ServiceID] = true
		assert.EqualValues(t, 42, s.CustomerID)
	}
	assert.Equal(t, 3, e.sim.Stats().Calls["GET /v1/Services"]-before, "pages of 500")
}

func TestContractServiceProductPaging(t *testing.T) {
	e := newContract(t)
	c := e.client(t)
	ctx := context.Background()
	sid, err := c.CreateService(ctx, revio.CreateServiceRequest{CustomerID: 1, ProviderID: 5})
	require.NoError(t, err)
	for i := 0; i < 503; i++ {
		_, err := c.CreateServiceProduct(
			ctx,
			revio.CreateServiceProductRequest{ServiceID: sid, ProductID: int64(i + 1), CustomerID: 1, Rate: "1.00"},
		)
		require.NoError(t, err)
	}
	got, err := c.ListServiceProducts(ctx, sid, "")
	require.NoError(t, err)
	assert.Len(t, got, 503)
}

func TestContractFaults(t *testing.T) {
	ctx := context.Background()

	t.Run("FailCreateService is not retried and creates nothing", func(t *testing.T) {
		e := newContract(t, func(c *reviosim.Config) { c.Faults.FailCreateServiceRate = 1 })
		_, err := e.client(t).CreateService(ctx, revio.CreateServiceRequest{CustomerID: 1, ProviderID: 5, Number: "1"})
		var re *revio.Error
		require.ErrorAs(t, err, &re)
		assert.Equal(t, 500, re.HTTPStatus)
		assert.True(t, re.Retryable())
		assert.True(t, re.OutcomeUnknown(), "a 500 on POST may hide a created service")
		assert.Equal(t, 1, e.sim.Stats().Calls["POST /v1/Services"])
		assert.Empty(t, e.sim.Services())
	})

	t.Run("ErrorRate: GET retried, POST not", func(t *testing.T) {
		e := newContract(t, func(c *reviosim.Config) { c.Faults.ErrorRate = 1 })
		c := e.client(t)
		err := c.CheckAuth(ctx)
		require.Error(t, err)
		assert.True(t, revio.IsRetryable(err))
		assert.Equal(t, 3, e.sim.Stats().Calls["GET /v1/SystemStatus"])
		_, err = c.CreateServiceProduct(
			ctx,
			revio.CreateServiceProductRequest{ServiceID: 1, ProductID: 1, CustomerID: 1},
		)
		require.Error(t, err)
		assert.Equal(t, 1, e.sim.Stats().Calls["POST /v1/ServiceProduct"])
	})

	t.Run("RateLimitRate", func(t *testing.T) {
		e := newContract(t, func(c *reviosim.Config) { c.Faults.RateLimitRate = 1 })
		err := e.client(t).CheckAuth(ctx)
		var re *revio.Error
		require.ErrorAs(t, err, &re)
		assert.Equal(t, 429, re.HTTPStatus)
		assert.Equal(t, time.Second, re.RetryAfter)
	})

	t.Run("StallCreateService: caller times out after Rev.io created", func(t *testing.T) {
		e := newContract(t, func(c *reviosim.Config) { c.Faults.StallCreateService = 10 * time.Second })
		c := e.client(t, func(c *revio.Config) { c.HTTPTimeout = 150 * time.Millisecond })
		_, err := c.CreateService(ctx, revio.CreateServiceRequest{CustomerID: 1, ProviderID: 5, Number: "15550009999"})
		var re *revio.Error
		require.ErrorAs(t, err, &re)
		assert.True(t, re.Sent)
		assert.True(t, re.OutcomeUnknown())
		assert.True(t, errors.Is(err, context.DeadlineExceeded))
		assert.Equal(t, 1, e.sim.Stats().Calls["POST /v1/Services"], "never re-sent")

		// The documented recovery: search by number before creating again.
		e.sim.SetFaults(reviosim.Faults{})
		found, err := c.FindServices(ctx, revio.ServiceSearch{Number: "15550009999"})
		require.NoError(t, err)
		require.Len(t, found, 1)
		assert.Equal(t, e.sim.Services()[0].ServiceID, found[0].ServiceID)
	})

	t.Run("Latency beyond HTTPTimeout on GET is retried", func(t *testing.T) {
		e := newContract(t, func(c *reviosim.Config) { c.Faults.Latency = time.Second })
		c := e.client(t, func(c *revio.Config) { c.HTTPTimeout = 50 * time.Millisecond })
		err := c.CheckAuth(ctx)
		require.Error(t, err)
		assert.True(t, revio.IsRetryable(err))
		require.Eventually(
			t,
			func() bool { return e.sim.Stats().Calls["GET /v1/SystemStatus"] == 3 },
			2*time.Second,
			10*time.Millisecond,
		)
	})
}

func TestContractObserverAudit(t *testing.T) {
	e := newContract(t)
	var mu sync.Mutex
	var xs []revio.Exchange
	c := e.client(t, func(c *revio.Config) {
		c.Observer = func(_ context.Context, x revio.Exchange) { mu.Lock(); xs = append(xs, x); mu.Unlock() }
	})
	ctx := context.Background()
	sid, err := c.CreateService(ctx, revio.CreateServiceRequest{CustomerID: 3, ProviderID: 5, Number: "1"})
	require.NoError(t, err)
	_, err = c.FindServices(ctx, revio.ServiceSearch{Number: "1"})
	require.NoError(t, err)
	require.Len(t, xs, 2)
	assert.Equal(t, 201, xs[0].StatusCode)
	assert.JSONEq(t, fmt.Sprintf(`{"ok":true,"id":%d}`, sid), string(xs[0].ResponseBody))
	assert.Equal(t, "FindServices", xs[1].Op)
	for _, x := range xs {
		dump := fmt.Sprintf("%+v %s %s", x, x.RequestBody, x.ResponseBody)
		assert.NotContains(t, dump, cPassword)
		assert.NotContains(t, dump, cKey)
	}
}

// Rev.io requires provider_id (postv1_services): the client never sends a
// service without one, and the one it sends carries it.
func TestContractProviderRequired(t *testing.T) {
	e := newContract(t)
	c := e.client(t)
	ctx := context.Background()
	_, err := c.CreateService(ctx, revio.CreateServiceRequest{CustomerID: 7, Number: "15551230001"})
	require.ErrorIs(t, err, revio.ErrInvalidRequest)
	var re *revio.Error
	require.ErrorAs(t, err, &re)
	assert.False(t, re.Retryable())
	assert.Zero(t, e.sim.Stats().Calls["POST /v1/Services"], "refused before sending")
	assert.Empty(t, e.sim.Services())

	_, err = c.CreateService(ctx, revio.CreateServiceRequest{CustomerID: 7, ProviderID: 5, Number: "15551230001"})
	require.NoError(t, err)
	stored := e.sim.Services()
	require.Len(t, stored, 1)
	assert.EqualValues(t, 5, stored[0].ProviderID)
}
