package revio

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/harness/nettest"
)

const (
	testLogin    = "INTEGRATIONS"
	testClient   = "ACME"
	testPassword = "s3cret-Passw0rd"
	testKey      = "0123456789abcdef0123456789abcdef"
)

// wantBasic is computed independently of the client code.
var wantBasic = "Basic " + base64.StdEncoding.EncodeToString([]byte("INTEGRATIONS@ACME:s3cret-Passw0rd"))

func testConfig(base string) Config {
	return Config{
		BaseURL:         base,
		Login:           testLogin,
		ClientCode:      testClient,
		Password:        testPassword,
		SubscriptionKey: testKey,
		CallsPerMinute:  -1,
		HTTPTimeout:     2 * time.Second,
	}
}

func newTestClient(t *testing.T, base string, mod ...func(*Config)) *Client {
	t.Helper()
	cfg := testConfig(base)
	for _, m := range mod {
		m(&cfg)
	}
	c, err := New(cfg)
	require.NoError(t, err)
	c.backoff = func(int) time.Duration { return time.Millisecond }
	return c
}

// recorded is one request seen by a test server.
type recorded struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Body                   []byte
}

type fakeServer struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []recorded
}

func newFake(t *testing.T, h func(w http.ResponseWriter, r *http.Request, n int)) *fakeServer {
	t.Helper()
	f := &fakeServer{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, recorded{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), b})
		n := len(f.reqs)
		f.mu.Unlock()
		h(w, r, n)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeServer) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

func writeJSONBody(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// answerJSON answers every request with status and body.
func answerJSON(status int, body string) func(http.ResponseWriter, *http.Request, int) {
	return func(w http.ResponseWriter, _ *http.Request, _ int) { writeJSONBody(w, status, body) }
}

func asError(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	require.ErrorAs(t, err, &e)
	return e
}

func TestNewValidation(t *testing.T) {
	base := testConfig("https://api.example.test")
	cases := []struct {
		name  string
		mod   func(*Config)
		field string
	}{
		{"no login", func(c *Config) { c.Login = "" }, "Config.Login"},
		{"email login", func(c *Config) { c.Login = "ops@example.com" }, "Config.Login"},
		{"no client code", func(c *Config) { c.ClientCode = "" }, "Config.ClientCode"},
		{"no password", func(c *Config) { c.Password = "" }, "Config.Password"},
		{"no key", func(c *Config) { c.SubscriptionKey = "" }, "Config.SubscriptionKey"},
		{"bad url", func(c *Config) { c.BaseURL = "ftp://x" }, "Config.BaseURL"},
		{"userinfo url", func(c *Config) { c.BaseURL = "https://u:" + testPassword + "@host" }, "Config.BaseURL"},
		{"negative timeout", func(c *Config) { c.HTTPTimeout = -time.Second }, "Config.HTTPTimeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.mod(&cfg)
			_, err := New(cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.field)
			assert.NotContains(t, err.Error(), testPassword)
			assert.NotContains(t, err.Error(), testKey)
		})
	}
	c, err := New(Config{Login: "u", ClientCode: "c", Password: "p", SubscriptionKey: "k"})
	require.NoError(t, err)
	assert.Equal(t, DefaultBaseURL, c.base.String())
	assert.Equal(t, DefaultHTTPTimeout, c.timeout)
	assert.Equal(t, DefaultMaxRetries, c.maxRetries)
	require.NotNil(t, c.limiter)
}

func TestLimiterNeverExceedsWindow(t *testing.T) {
	for _, n := range []int{1, 2, 59, 60, 500, 1200} {
		l := newLimiter(n)
		// Tokens available in any minute: the burst plus one minute's refill.
		perMinute := float64(l.Burst()) + float64(l.Limit())*60
		assert.LessOrEqual(t, perMinute, float64(max(n, 2))+1e-9, "n=%d", n)
	}
	assert.Nil(t, newLimiter(-1))
	l := newLimiter(500)
	assert.Equal(t, 8, l.Burst())
}

func TestPacingSharedAcrossGoroutines(t *testing.T) {
	f := newFake(t, answerJSON(200, `{"ok":true}`))
	// 1200/min: burst 20, refill 1180/min (~19.7/s): 26 calls need ~0.3s.
	c := newTestClient(t, f.URL, func(c *Config) { c.CallsPerMinute = 1200 })
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < 26; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, c.CheckAuth(context.Background()))
		}()
	}
	wg.Wait()
	assert.GreaterOrEqual(t, time.Since(start), 250*time.Millisecond)
}

func TestHeadersAndCreateService(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Location", "/v1/Services/4242")
		writeJSONBody(w, http.StatusCreated, `{"ok":true,"id":4242}`)
	})
	c := newTestClient(t, f.URL+"/")
	id, err := c.CreateService(context.Background(), CreateServiceRequest{
		CustomerID: 77, ProviderID: 5, ServiceTypeID: 9, Number: "15551234567", Number2: "89148000000000000001",
		ActivatedDate: "2024-05-01", UsagePlanGroupID: 3, Description: "dev 1",
	})
	require.NoError(t, err)
	assert.EqualValues(t, 4242, id)

	reqs := f.requests()
	require.Len(t, reqs, 1)
	r := reqs[0]
	assert.Equal(t, http.MethodPost, r.Method)
	assert.Equal(t, "/v1/Services", r.Path)
	assert.Equal(t, wantBasic, r.Header.Get("Authorization"))
	assert.Equal(t, testKey, r.Header.Get("Ocp-Apim-Subscription-Key"))
	assert.Equal(t, "application/json", r.Header.Get("Accept"))
	assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
	assert.JSONEq(t, `{"customer_id":77,"provider_id":5,"service_type_id":9,"number":"15551234567",
		"number2":"89148000000000000001","activated_date":"2024-05-01","usage_plan_group_id":3,"description":"dev 1"}`, string(r.Body))
}

func TestCreateServiceIDFromLocation(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Location", "https://api.example/v1/Services/987")
		writeJSONBody(w, http.StatusCreated, `{"ok":true}`)
	})
	id, err := newTestClient(t, f.URL).CreateService(context.Background(), CreateServiceRequest{CustomerID: 1, ProviderID: 5})
	require.NoError(t, err)
	assert.EqualValues(t, 987, id)
}

func TestCreateServiceWithoutIDIsOutcomeUnknown(t *testing.T) {
	f := newFake(t, answerJSON(http.StatusCreated, `{"ok":true}`))
	_, err := newTestClient(t, f.URL).CreateService(context.Background(), CreateServiceRequest{CustomerID: 1, ProviderID: 5})
	e := asError(t, err)
	assert.ErrorIs(t, err, ErrUnexpectedResponse)
	assert.True(t, e.OutcomeUnknown())
	assert.False(t, e.Retryable())
	assert.Len(t, f.requests(), 1)
}

func TestValidationErrorsAreNotSent(t *testing.T) {
	f := newFake(t, answerJSON(201, `{"ok":true,"id":1}`))
	c := newTestClient(t, f.URL)
	ctx := context.Background()
	checks := []error{
		func() error { _, err := c.CreateService(ctx, CreateServiceRequest{}); return err }(),
		func() error {
			_, err := c.CreateService(ctx, CreateServiceRequest{CustomerID: 1, ProviderID: 5, ActivatedDate: "2024-05-01T00:00:00Z"})
			return err
		}(),
		func() error {
			_, err := c.CreateServiceProduct(
				ctx,
				CreateServiceProductRequest{ServiceID: 1, ProductID: 2, CustomerID: 3, Rate: "12,50"},
			)
			return err
		}(),
		func() error { _, err := c.FindServices(ctx, ServiceSearch{}); return err }(),
		c.DisconnectServiceProduct(ctx, 1, "05/01/2024", false),
		c.UpdateService(ctx, 1, nil),
	}
	for i, err := range checks {
		e := asError(t, err)
		assert.ErrorIs(t, err, ErrInvalidRequest, "check %d", i)
		assert.False(t, e.Sent)
		assert.False(t, e.Retryable())
		assert.Contains(t, err.Error(), "invalid request")
	}
	assert.Empty(t, f.requests())
}

// Rev.io requires provider_id on POST /v1/Services (postv1_services): a
// service without one is refused here, before anything is sent, as an
// invalid request that no retry can cure.
func TestCreateServiceRequiresProvider(t *testing.T) {
	f := newFake(t, answerJSON(201, `{"ok":true,"id":1}`))
	c := newTestClient(t, f.URL)
	for _, req := range []CreateServiceRequest{
		{CustomerID: 1, Number: "15551234567"},
		{CustomerID: 1, ProviderID: -3},
	} {
		_, err := c.CreateService(context.Background(), req)
		e := asError(t, err)
		assert.ErrorIs(t, err, ErrInvalidRequest)
		assert.Zero(t, e.HTTPStatus)
		assert.False(t, e.Sent)
		assert.False(t, e.Retryable())
		assert.False(t, e.OutcomeUnknown())
		assert.Contains(t, err.Error(), "provider_id is required")
	}
	assert.Empty(t, f.requests())
}

// The documented maximum lengths (number, number2 255; description 1000)
// are characters: a value at the limit in accented letters is sent, one
// character more is refused before sending.
func TestCreateServiceLengthsInCharacters(t *testing.T) {
	f := newFake(t, answerJSON(201, `{"ok":true,"id":1}`))
	c := newTestClient(t, f.URL)
	ctx := context.Background()
	_, err := c.CreateService(ctx, CreateServiceRequest{CustomerID: 1, ProviderID: 5,
		Number: strings.Repeat("é", 255), Number2: strings.Repeat("ü", 255), Description: strings.Repeat("ñ", 1000)})
	require.NoError(t, err)
	require.Len(t, f.requests(), 1)
	for field, req := range map[string]CreateServiceRequest{
		"number":      {CustomerID: 1, ProviderID: 5, Number: strings.Repeat("é", 256)},
		"number2":     {CustomerID: 1, ProviderID: 5, Number2: strings.Repeat("8", 256)},
		"description": {CustomerID: 1, ProviderID: 5, Description: strings.Repeat("d", 1001)},
	} {
		_, err := c.CreateService(ctx, req)
		assert.ErrorIs(t, err, ErrInvalidRequest, field)
		assert.Contains(t, err.Error(), field+" longer than", field)
	}
	assert.Len(t, f.requests(), 1, "nothing more sent")
}

func TestFindServicesPagingAndExactMatch(t *testing.T) {
	// 3 pages; the server also returns a record with a different number, as
	// a server doing a partial match or ignoring the filter would.
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		q := r.URL.Query()
		page, _ := strconv.Atoi(q.Get("search.page"))
		var recs []string
		for i := 0; i < 2; i++ {
			id := page*10 + i
			recs = append(
				recs,
				fmt.Sprintf(
					`{"service_id":%d,"customer_id":7,"number":"1555","number2":"8901","activated_date":"2024-05-0%dT00:00:00","disconnected_date":null,"provider_id":null}`,
					id,
					i+1,
				),
			)
		}
		if page == 2 {
			recs = append(recs, `{"service_id":99,"customer_id":7,"number":"15550","number2":"8901"}`)
		}
		writeJSONBody(
			w,
			200,
			fmt.Sprintf(
				`{"ok":true,"has_more":%v,"record_count":%d,"records":[%s]}`,
				page < 3,
				len(recs),
				strings.Join(recs, ","),
			),
		)
	})
	c := newTestClient(t, f.URL)
	got, err := c.FindServices(context.Background(), ServiceSearch{Number: "1555", Number2: "8901", CustomerID: 7})
	require.NoError(t, err)
	require.Len(t, got, 6)
	assert.Equal(
		t,
		Service{ServiceID: 10, CustomerID: 7, Number: "1555", Number2: "8901", ActivatedDate: "2024-05-01"},
		got[0],
	)

	reqs := f.requests()
	require.Len(t, reqs, 3)
	for i, r := range reqs {
		q := mustQuery(t, r.RawQuery)
		assert.Equal(t, "/v1/Services", r.Path)
		assert.Equal(t, "1555", q.Get("search.number"))
		assert.Equal(t, "8901", q.Get("search.number2"))
		assert.Equal(t, "7", q.Get("search.customer_id"))
		assert.Equal(t, "500", q.Get("search.page_size"))
		assert.Equal(t, strconv.Itoa(i+1), q.Get("search.page"))
	}
}

func TestListStopsOnRepeatedPage(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		writeJSONBody(
			w,
			200,
			`{"ok":true,"has_more":true,"record_count":1,"records":[{"service_product_id":5,"service_id":1,"rate":12.5,"quantity":"1","status":"ACTIVE"}]}`,
		)
	})
	_, err := newTestClient(t, f.URL).ListServiceProducts(context.Background(), 1, "active")
	assert.ErrorIs(t, err, ErrUnexpectedResponse)
	assert.Len(t, f.requests(), 2)
	q := mustQuery(t, f.requests()[0].RawQuery)
	assert.Equal(t, "1", q.Get("search.service_id"))
	assert.Equal(t, "ACTIVE", q.Get("search.status"))
}

func TestServiceProductDecoding(t *testing.T) {
	f := newFake(t, answerJSON(200, `{"ok":true,"has_more":false,"record_count":3,"records":[
			{"service_product_id":5,"service_id":1,"product_id":2,"customer_id":3,"rate":12.50,"quantity":1,"status":"ACTIVE","activated_date":"2024-05-01T00:00:00","canceled_date":null},
			{"service_product_id":6,"service_id":1,"rate":"7.25","quantity":2.0,"status":"DISCONNECTED","canceled_date":"2024-06-01T00:00:00"},
			{"service_product_id":7,"service_id":2,"rate":1,"status":"ACTIVE"}]}`))
	got, err := newTestClient(t, f.URL).ListServiceProducts(context.Background(), 1, "")
	require.NoError(t, err)
	require.Len(t, got, 2, "the record of another service is dropped")
	assert.Equal(
		t,
		ServiceProduct{
			ServiceProductID: 5,
			ServiceID:        1,
			ProductID:        2,
			CustomerID:       3,
			Rate:             "12.50",
			Quantity:         1,
			Status:           "ACTIVE",
			ActivatedDate:    "2024-05-01",
		},
		got[0],
	)
	assert.Equal(t, "7.25", got[1].Rate)
	assert.Equal(t, 2, got[1].Quantity)
	assert.Equal(t, "2024-06-01", got[1].CanceledDate)
}

func TestCreateServiceProductWire(t *testing.T) {
	f := newFake(
		t,
		answerJSON(201, `{"ok":true,"id":"55"}`),
	)
	c := newTestClient(t, f.URL)
	id, err := c.CreateServiceProduct(context.Background(), CreateServiceProductRequest{
		ServiceID: 1, ProductID: 2, CustomerID: 3, Rate: "12.50", EffectiveDate: "2024-05-01", ActivatedDate: "2024-05-01",
	})
	require.NoError(t, err)
	assert.EqualValues(t, 55, id)
	r := f.requests()[0]
	assert.Equal(t, "/v1/ServiceProduct", r.Path)
	assert.JSONEq(
		t,
		`{"service_id":1,"product_id":2,"customer_id":3,"rate":12.50,"quantity":1,"generate_proration":false,
		"effective_date":"2024-05-01","activated_date":"2024-05-01"}`,
		string(r.Body),
	)
	assert.Contains(t, string(r.Body), `"rate":12.50`, "rate is a JSON number with its digits kept")
}

func TestUpdateServicePatch(t *testing.T) {
	f := newFake(t, answerJSON(200, `{"ok":true}`))
	c := newTestClient(t, f.URL)
	err := c.UpdateService(context.Background(), 12, []PatchOp{
		{Op: "replace", Path: "/description", Value: "x"},
		{Op: "remove", Path: "/disconnected_date"},
		{Op: "replace", Path: "/activated_date", Value: nil},
	})
	require.NoError(t, err)
	r := f.requests()[0]
	assert.Equal(t, http.MethodPatch, r.Method)
	assert.Equal(t, "/v1/Services/12", r.Path)
	assert.Equal(t, "application/json-patch+json", r.Header.Get("Content-Type"))
	assert.JSONEq(t, `[{"op":"replace","path":"/description","value":"x"},{"op":"remove","path":"/disconnected_date"},
		{"op":"replace","path":"/activated_date","value":null}]`, string(r.Body))
}

func TestOKFalseIsAnError(t *testing.T) {
	f := newFake(t, answerJSON(200, `{"ok":false,"message":"nope"}`))
	err := newTestClient(
		t,
		f.URL,
	).UpdateService(context.Background(), 12, []PatchOp{{Op: "replace", Path: "/description", Value: "x"}})
	assert.ErrorIs(t, err, ErrUnexpectedResponse)
}

func TestDisconnectServiceProductWire(t *testing.T) {
	f := newFake(t, answerJSON(200, `{"ok":true,"id":5}`))
	require.NoError(t, newTestClient(t, f.URL).DisconnectServiceProduct(context.Background(), 5, "2024-06-01", true))
	r := f.requests()[0]
	assert.Equal(t, http.MethodDelete, r.Method)
	assert.Equal(t, "/v1/ServiceProduct", r.Path)
	assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
	assert.JSONEq(t, `{"service_product_id":5,"effective_date":"2024-06-01","generate_proration":true}`, string(r.Body))
}

func TestGetService(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if strings.HasSuffix(r.URL.Path, "/404") {
			writeJSONBody(w, 404, `{"ok":false,"message":"Service 404 was not found."}`)
			return
		}
		writeJSONBody(
			w,
			200,
			`{"ok":true,"service_id":12,"customer_id":7,"provider_id":5,"service_type_id":9,"number":"1555","number2":"8901",
			"activated_date":"2024-05-01Z","disconnected_date":null,"description":"d","fields":[{"field_id":1,"label":"x","value":"y"}]}`,
		)
	})
	c := newTestClient(t, f.URL)
	sv, err := c.GetService(context.Background(), 12)
	require.NoError(t, err)
	assert.Equal(
		t,
		&Service{
			ServiceID:     12,
			CustomerID:    7,
			ProviderID:    5,
			ServiceTypeID: 9,
			Number:        "1555",
			Number2:       "8901",
			ActivatedDate: "2024-05-01",
			Description:   "d",
		},
		sv,
	)

	_, err = c.GetService(context.Background(), 404)
	assert.True(t, IsNotFound(err))
	e := asError(t, err)
	assert.Equal(t, "Service 404 was not found.", e.Message)
	assert.False(t, e.Retryable())
	assert.Len(t, f.requests(), 2, "404 is not retried")
}

func TestErrorBodyShapes(t *testing.T) {
	cases := []struct {
		name, ctype, body string
		status            int
		want              string
	}{
		{
			"rev object",
			"application/json",
			`{"ok":false,"message":"customer_id is required"}`,
			400,
			"customer_id is required",
		},
		{
			"altaworx array",
			"application/json",
			`[{"ok":false,"id":0,"error":"Bad Request","message":"customer_id is required"},{"ok":false,"id":0,"message":"number too long"}]`,
			400,
			"customer_id is required; Bad Request; number too long",
		},
		{
			"apim",
			"application/json",
			`{"statusCode":401,"message":"Access denied due to invalid subscription key."}`,
			401,
			"Access denied due to invalid subscription key.",
		},
		{
			"modelstate",
			"application/json",
			`{"Message":"The request is invalid.","ModelState":{"model.customer_id":["The customer_id field is required."]}}`,
			400,
			"The request is invalid.; model.customer_id: The customer_id field is required.",
		},
		{
			"problem",
			"application/problem+json",
			`{"title":"Bad Request","detail":"bad date"}`,
			400,
			"bad date; Bad Request",
		},
		{"text", "text/plain", "  Service\n Unavailable  ", 403, "Service Unavailable"},
		{"html", "text/html", "<html><body><h1>Forbidden</h1></body></html>", 403, "Forbidden"},
		{"empty", "", "", 405, "Method Not Allowed"},
		{"json string", "application/json", `"nope"`, 400, "nope"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if tc.ctype != "" {
					w.Header().Set("Content-Type", tc.ctype)
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			})
			err := newTestClient(t, f.URL).CheckAuth(context.Background())
			e := asError(t, err)
			assert.Equal(t, tc.status, e.HTTPStatus)
			assert.Equal(t, tc.want, e.Message)
			assert.False(t, e.Retryable())
			assert.Contains(t, err.Error(), fmt.Sprintf("HTTP %d", tc.status))
		})
	}
}

func TestRateLimitedNotRetried(t *testing.T) {
	for _, ra := range []struct {
		header string
		want   time.Duration
	}{
		{"7", 7 * time.Second},
		{"", 0},
		{time.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat), 30 * time.Second},
	} {
		f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
			if ra.header != "" {
				w.Header().Set("Retry-After", ra.header)
			}
			writeJSONBody(w, 429, `{"statusCode":429,"message":"Rate limit is exceeded. Try again in 7 seconds."}`)
		})
		c := newTestClient(t, f.URL)
		_, err := c.FindServices(context.Background(), ServiceSearch{Number: "1"})
		e := asError(t, err)
		assert.Equal(t, 429, e.HTTPStatus)
		assert.True(t, e.Retryable())
		assert.True(t, IsRetryable(err))
		assert.False(t, e.OutcomeUnknown())
		assert.InDelta(t, ra.want.Seconds(), e.RetryAfter.Seconds(), 1.5)
		assert.Len(t, f.requests(), 1, "429 is left to the caller")
	}
}

func TestGETRetriedOn5xxButPOSTNot(t *testing.T) {
	var fail atomic.Int32
	fail.Store(2)
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if fail.Add(-1) >= 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		writeJSONBody(w, 200, `{"ok":true,"service_id":1,"customer_id":2}`)
	})
	var attempts []int
	var mu sync.Mutex
	c := newTestClient(t, f.URL, func(c *Config) {
		c.Observer = func(_ context.Context, x Exchange) { mu.Lock(); attempts = append(attempts, x.Attempt); mu.Unlock() }
	})
	_, err := c.GetService(context.Background(), 1)
	require.NoError(t, err)
	assert.Len(t, f.requests(), 3)
	assert.Equal(t, []int{1, 2, 3}, attempts)

	// GET gives up after MaxRetries.
	fail.Store(100)
	err = c.CheckAuth(context.Background())
	e := asError(t, err)
	assert.Equal(t, 503, e.HTTPStatus)
	assert.True(t, e.Retryable())
	assert.Len(t, f.requests(), 6)

	// POST is sent once even though a 500 is "retryable" for the caller.
	_, err = c.CreateService(context.Background(), CreateServiceRequest{CustomerID: 1, ProviderID: 5})
	e = asError(t, err)
	assert.Equal(t, 503, e.HTTPStatus)
	assert.True(t, e.Sent)
	assert.True(t, e.OutcomeUnknown())
	assert.Len(t, f.requests(), 7)

	// PATCH and DELETE likewise.
	require.Error(
		t,
		c.UpdateService(context.Background(), 1, []PatchOp{{Op: "replace", Path: "/description", Value: "x"}}),
	)
	require.Error(t, c.DisconnectServiceProduct(context.Background(), 1, "", false))
	assert.Len(t, f.requests(), 9)
}

// closedURL returns a URL on which nothing listens, for dial errors.
func closedURL(t *testing.T) string {
	t.Helper()
	return "http://" + nettest.FreeAddr(t)
}

func TestPOSTRetriedOnlyWhenNotSent(t *testing.T) {
	var xs []Exchange
	c := newTestClient(t, closedURL(t), func(c *Config) {
		c.Observer = func(_ context.Context, x Exchange) { xs = append(xs, x) }
	})
	_, err := c.CreateService(context.Background(), CreateServiceRequest{CustomerID: 1, ProviderID: 5})
	e := asError(t, err)
	assert.False(t, e.Sent)
	assert.True(t, e.Retryable(), "dial failures are transport errors")
	assert.False(t, e.OutcomeUnknown())
	assert.Contains(t, err.Error(), "request not sent")
	require.Len(t, xs, 3, "1 attempt + 2 retries")
	for i, x := range xs {
		assert.Equal(t, i+1, x.Attempt)
		assert.NotEmpty(t, x.Err)
		assert.Zero(t, x.StatusCode)
	}
}

func TestPOSTTimeoutAfterWriteIsSentAndNotRetried(t *testing.T) {
	release := make(chan struct{})
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	c := newTestClient(t, f.URL, func(c *Config) { c.HTTPTimeout = 100 * time.Millisecond })
	_, err := c.CreateService(context.Background(), CreateServiceRequest{CustomerID: 1, ProviderID: 5, Number: "1555"})
	e := asError(t, err)
	assert.True(t, e.Sent)
	assert.Zero(t, e.HTTPStatus)
	assert.True(t, e.Retryable())
	assert.True(t, e.OutcomeUnknown())
	assert.Contains(t, err.Error(), "outcome unknown")
	assert.Len(t, f.requests(), 1)

	// A GET that times out is retried.
	_, err = c.GetService(context.Background(), 1)
	require.Error(t, err)
	assert.Len(t, f.requests(), 4)
}

func TestPOSTConnectionDroppedAfterSendNotRetried(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	})
	_, err := newTestClient(t, f.URL).CreateService(context.Background(), CreateServiceRequest{CustomerID: 1, ProviderID: 5})
	e := asError(t, err)
	assert.True(t, e.Sent)
	assert.True(t, e.OutcomeUnknown())
	assert.Len(t, f.requests(), 1)
}

func TestCallerCancellationNotRetryable(t *testing.T) {
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) { <-r.Context().Done() })
	c := newTestClient(t, f.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := c.CheckAuth(ctx)
	e := asError(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.False(t, e.Retryable())
	assert.Len(t, f.requests(), 1)
}

func TestRedactionInObserverAndErrors(t *testing.T) {
	// A misbehaving gateway echoes the credentials back in its error body.
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		body, _ := json.Marshal(map[string]string{
			"message": "bad auth " + r.Header.Get(
				"Authorization",
			) + " key=" + r.Header.Get(
				"Ocp-Apim-Subscription-Key",
			) + " pw=" + testPassword,
		})
		writeJSONBody(w, 400, string(body))
	})
	var xs []Exchange
	c := newTestClient(t, f.URL, func(c *Config) {
		c.Observer = func(_ context.Context, x Exchange) { xs = append(xs, x) }
	})
	_, err := c.CreateService(context.Background(), CreateServiceRequest{CustomerID: 1, ProviderID: 5, Description: "hello"})
	require.Error(t, err)
	secrets := []string{testPassword, testKey, strings.TrimPrefix(wantBasic, "Basic ")}
	for _, s := range secrets {
		assert.NotContains(t, err.Error(), s)
		assert.NotContains(t, fmt.Sprintf("%+v", err), s)
	}
	require.Len(t, xs, 1)
	x := xs[0]
	assert.Equal(t, "CreateService", x.Op)
	assert.Equal(t, http.MethodPost, x.Method)
	assert.Equal(t, "/v1/Services", x.Path)
	assert.Equal(t, 400, x.StatusCode)
	assert.Equal(t, 1, x.Attempt)
	assert.False(t, x.Started.IsZero())
	assert.JSONEq(t, `{"customer_id":1,"provider_id":5,"description":"hello"}`, string(x.RequestBody))
	assert.Contains(t, string(x.ResponseBody), "[REDACTED]")
	dump := fmt.Sprintf("%+v %s %s", x, x.RequestBody, x.ResponseBody)
	for _, s := range secrets {
		assert.NotContains(t, dump, s)
	}
}

func TestObserverSeesQuery(t *testing.T) {
	f := newFake(t, answerJSON(200, `{"ok":true,"has_more":false,"record_count":0,"records":[]}`))
	var paths []string
	c := newTestClient(t, f.URL, func(c *Config) {
		c.Observer = func(_ context.Context, x Exchange) { paths = append(paths, x.Path) }
	})
	got, err := c.FindServices(context.Background(), ServiceSearch{Number2: "8901"})
	require.NoError(t, err)
	assert.Empty(t, got)
	assert.Equal(t, []string{"/v1/Services?search.number2=8901&search.page=1&search.page_size=500"}, paths)
}

func TestRedirectNotFollowed(t *testing.T) {
	other := newFake(t, answerJSON(200, `{}`))
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, n int) {
		http.Redirect(w, r, other.URL+"/v1/SystemStatus", http.StatusFound)
	})
	err := newTestClient(t, f.URL).CheckAuth(context.Background())
	e := asError(t, err)
	assert.Equal(t, http.StatusFound, e.HTTPStatus)
	assert.Empty(t, other.requests(), "the subscription key must not travel to another host")
}

func TestErrorsAsAndIs(t *testing.T) {
	var err error = &Error{Op: "X", HTTPStatus: 502, Message: "bad gateway"}
	wrapped := fmt.Errorf("activity: %w", err)
	assert.True(t, IsRetryable(wrapped))
	assert.False(t, IsRetryable(errors.New("plain")))
	assert.Equal(t, "revio: X: HTTP 502: bad gateway", err.Error())
}

func mustQuery(t *testing.T, raw string) url.Values {
	t.Helper()
	q, err := url.ParseQuery(raw)
	require.NoError(t, err)
	return q
}
