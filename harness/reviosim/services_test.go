package reviosim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRoutesCaseInsensitiveAnd404And405(t *testing.T) {
	e := newEnv(t)
	assert.Equal(t, 200, e.call("GET", "/V1/systemstatus/", "", "").status)
	id := e.createService(`{"customer_id":1,"provider_id":5}`)
	assert.Equal(t, 200, e.call("GET", fmt.Sprintf("/v1/services/%d", id), "", "").status)
	assert.Equal(t, 200, e.call("GET", "/v1/serviceProduct?search.service_id=1", "", "").status)
	assert.Equal(t, 404, e.call("GET", "/v1/Nope", "", "").status)
	a := e.call("PUT", "/v1/Services", "application/json", "{}")
	assert.Equal(t, 405, a.status)
	assert.Equal(t, "GET, POST", a.header.Get("Allow"))
	assert.Equal(t, 400, e.call("GET", "/v1/Services/abc", "", "").status)
	assert.Equal(t, 404, e.call("GET", "/v1/Services/999", "", "").status)
	assert.Equal(t, 3, e.sim.Stats().Calls["GET /v1/Services/{id}"])
	assert.Equal(t, 1, e.sim.Stats().Calls["GET /v1/nope"], "unknown routes are counted by path")
}

func TestCreateService(t *testing.T) {
	e := newEnv(t)
	a := e.call(
		"POST",
		"/v1/Services",
		"application/json",
		`{"customer_id":7,"provider_id":5,"service_type_id":9,"number":"15551234567","number2":"8901","activated_date":"2024-05-01Z","usage_plan_group_id":3,"description":"d"}`,
	)
	require.Equal(t, 201, a.status, string(a.body))
	assert.JSONEq(t, `{"ok":true,"id":100001}`, string(a.body))
	assert.Equal(t, "/v1/Services/100001", a.header.Get("Location"))

	got := e.sim.Services()
	require.Len(t, got, 1)
	assert.Equal(t, "2024-05-01", got[0].ActivatedDate)
	assert.NotEmpty(t, got[0].EffectiveDate, "effective_date defaults to today")

	g := e.call("GET", "/v1/Services/100001", "", "").json(t)
	assert.Equal(t, true, g["ok"])
	assert.Equal(t, "2024-05-01T00:00:00", g["activated_date"])
	assert.Nil(t, g["disconnected_date"])
	assert.Equal(t, "8901", g["number2"])
	assert.Equal(t, float64(7), g["customer_id"])
}

func TestCreateServiceValidation(t *testing.T) {
	e := newEnv(t)
	cases := []struct{ name, ctype, body, want string }{
		{"no customer", "application/json", `{"provider_id":5,"number":"1"}`, "customer_id is required"},
		{"no provider", "application/json", `{"customer_id":7,"number":"1"}`, "provider_id is required"},
		{"provider null", "application/json", `{"customer_id":7,"provider_id":null}`, "provider_id is required"},
		{"provider 0", "application/json", `{"customer_id":7,"provider_id":0}`, "provider_id is required"},
		{"string id", "application/json", `{"customer_id":"7","provider_id":5}`, "must be a JSON number"},
		{"camelCase", "application/json", `{"customerId":7}`, `unknown field \"customerId\"`},
		{"service_id", "application/json", `{"customer_id":7,"provider_id":5,"service_id":1}`, "service_id must not be sent"},
		{"bad date", "application/json", `{"customer_id":7,"provider_id":5,"activated_date":"05/01/2024"}`, "not a valid date"},
		{
			"long number",
			"application/json",
			`{"customer_id":7,"provider_id":5,"number":"` + strings.Repeat("1", 256) + `"}`,
			"number is longer than 255",
		},
		{
			"long number2",
			"application/json",
			`{"customer_id":7,"provider_id":5,"number2":"` + strings.Repeat("8", 256) + `"}`,
			"number2 is longer than 255",
		},
		{
			"long description",
			"application/json",
			`{"customer_id":7,"provider_id":5,"description":"` + strings.Repeat("d", 1001) + `"}`,
			"description is longer than 1000",
		},
		{"not object", "application/json", `[1]`, "JSON object"},
		{"empty", "application/json", ``, "empty"},
	}
	for _, tc := range cases {
		a := e.call("POST", "/v1/Services", tc.ctype, tc.body)
		assert.Equal(t, 400, a.status, tc.name)
		// Validation errors are an array of {ok,id,error,message}.
		var arr []map[string]any
		require.NoError(t, json.Unmarshal(a.body, &arr), tc.name)
		require.Len(t, arr, 1)
		assert.Equal(t, false, arr[0]["ok"])
		assert.Contains(t, string(a.body), tc.want, tc.name)
	}
	assert.Equal(t, 415, e.call("POST", "/v1/Services", "text/plain", `{"customer_id":7,"provider_id":5}`).status)
	assert.Empty(t, e.sim.Services())
}

// Rev.io's limits on number, number2 (255) and description (1000) are
// characters, not bytes: a value at the limit in accented letters is taken.
func TestCreateServiceLimitsCountCharacters(t *testing.T) {
	e := newEnv(t)
	body := fmt.Sprintf(`{"customer_id":7,"provider_id":5,"number":%q,"number2":%q,"description":%q}`,
		strings.Repeat("é", 255), strings.Repeat("ü", 255), strings.Repeat("ñ", 1000))
	a := e.call("POST", "/v1/Services", "application/json", body)
	require.Equal(t, 201, a.status, string(a.body))
	got := e.sim.Services()
	require.Len(t, got, 1)
	assert.Equal(t, int64(5), got[0].ProviderID)
	assert.Equal(t, strings.Repeat("ñ", 1000), got[0].Description)
}

func TestPagingAndFilters(t *testing.T) {
	e := newEnv(t)
	seedServices(t, e, 23, 7)
	seedServices(t, e, 2, 8)

	p := e.page("/v1/Services")
	assert.True(t, p.OK)
	assert.True(t, p.HasMore)
	assert.Equal(t, 10, p.RecordCount, "default page size")

	var ids []float64
	for pg := 1; ; pg++ {
		p := e.page(fmt.Sprintf("/v1/Services?search.customer_id=7&search.page_size=10&search.page=%d", pg))
		assert.Equal(t, len(p.Records), p.RecordCount)
		for _, r := range p.Records {
			ids = append(ids, r["service_id"].(float64))
			assert.Equal(t, float64(7), r["customer_id"])
		}
		if !p.HasMore {
			assert.Equal(t, 3, pg)
			break
		}
	}
	assert.Len(t, ids, 23)
	assert.IsIncreasing(t, ids)

	// Bare names work as well as the search. prefix.
	p = e.page("/v1/Services?customer_id=8&page_size=1&page=2")
	assert.Equal(t, 1, p.RecordCount)
	assert.False(t, p.HasMore)

	p = e.page("/v1/Services?search.number=15550003")
	require.Len(t, p.Records, 1)
	assert.Equal(t, "89010003", p.Records[0]["number2"])
	p = e.page("/v1/Services?search.number2=89010001&search.customer_id=8")
	require.Len(t, p.Records, 1)
	p = e.page("/v1/Services?search.number2=89010001&search.number2=89010002&search.customer_id=7")
	assert.Len(t, p.Records, 2, "repeated filters match any value")
	p = e.page("/v1/Services?search.number=1555")
	assert.Empty(t, p.Records, "number is an exact match")
	assert.NotNil(t, p.Records)

	// Past the end.
	p = e.page("/v1/Services?page=99")
	assert.Equal(t, 0, p.RecordCount)
	assert.False(t, p.HasMore)

	assert.Equal(t, 400, e.call("GET", "/v1/Services?page_size=0", "", "").status)
	assert.Equal(t, 400, e.call("GET", "/v1/Services?page=0", "", "").status)
	assert.Equal(t, 400, e.call("GET", "/v1/Services?search.customer_id=x", "", "").status)
}

func TestPageSizeCappedAt500(t *testing.T) {
	e := newEnv(t)
	seedServices(t, e, 501, 1)
	p := e.page("/v1/Services?search.page_size=1000")
	assert.Equal(t, 500, p.RecordCount)
	assert.True(t, p.HasMore)
	p = e.page("/v1/Services?search.page_size=500&search.page=2")
	assert.Equal(t, 1, p.RecordCount)
	assert.False(t, p.HasMore)
}

func TestConcurrentCreatesGetDistinctIDs(t *testing.T) {
	e := newEnv(t)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			req, _ := http.NewRequest(
				"POST",
				e.srv.URL+"/v1/Services",
				strings.NewReader(fmt.Sprintf(`{"customer_id":%d,"provider_id":5}`, i+1)),
			)
			req.Header.Set("Authorization", goodBasic())
			req.Header.Set("Ocp-Apim-Subscription-Key", subKey)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if assert.NoError(t, err) {
				resp.Body.Close()
				assert.Equal(t, 201, resp.StatusCode)
			}
		}(i)
	}
	wg.Wait()
	svcs := e.sim.Services()
	require.Len(t, svcs, 20)
	for i, s := range svcs {
		assert.Equal(t, int64(100001+i), s.ServiceID)
	}
}
