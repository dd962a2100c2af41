package reviosim

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestServiceProductsLifecycle(t *testing.T) {
	e := newEnv(t)
	sid := e.createService(`{"customer_id":7,"provider_id":5,"number":"1"}`)
	p1 := e.createProduct(sid, 7)
	p2 := e.createProduct(sid, 7)
	assert.Equal(t, int64(700001), p1)

	// Validation.
	for _, tc := range []struct{ body, want string }{
		{fmt.Sprintf(`{"service_id":%d,"product_id":3,"customer_id":7,"rate":1}`, sid), "generate_proration is required"},
		{fmt.Sprintf(`{"service_id":%d,"product_id":3,"customer_id":7,"generateProration":true}`, sid), "unknown field"},
		{fmt.Sprintf(`{"service_id":%d,"product_id":3,"customer_id":8,"generate_proration":false}`, sid), "does not belong"},
		{`{"service_id":5,"product_id":3,"customer_id":7,"generate_proration":false}`, "does not exist"},
		{fmt.Sprintf(`{"service_id":%d,"customer_id":7,"generate_proration":false}`, sid), "product_id is required"},
		{fmt.Sprintf(`{"service_id":%d,"product_id":3,"customer_id":7,"rate":"abc","generate_proration":false}`, sid), "rate must be a number"},
		{fmt.Sprintf(`{"service_id":%d,"product_id":3,"customer_id":7,"quantity":0,"generate_proration":false}`, sid), "quantity"},
	} {
		a := e.call("POST", "/v1/ServiceProduct", "application/json", tc.body)
		assert.Equal(t, 400, a.status, tc.body)
		assert.Contains(t, string(a.body), tc.want)
	}

	p := e.page(fmt.Sprintf("/v1/ServiceProduct?search.service_id=%d&search.status=ACTIVE", sid))
	require.Len(t, p.Records, 2)
	assert.Equal(t, 9.99, p.Records[0]["rate"], "rate is a JSON number")
	assert.Equal(t, "ACTIVE", p.Records[0]["status"])

	// Disconnecting the service needs every product disconnected on that date.
	patch := func(body string) answer {
		return e.call("PATCH", fmt.Sprintf("/v1/Services/%d", sid), "application/json-patch+json", body)
	}
	a := patch(`[{"op":"replace","path":"/disconnected_date","value":"2024-06-01"}]`)
	assert.Equal(t, 400, a.status)
	assert.Contains(t, string(a.body), "DISCONNECTED")

	del := func(body string) answer { return e.call("DELETE", "/v1/ServiceProduct", "application/json", body) }
	assert.Equal(t, 400, del(fmt.Sprintf(`{"service_product_id":%d}`, p1)).status, "generate_proration required")
	assert.Equal(t, 404, del(`{"service_product_id":1,"generate_proration":false}`).status)
	a = del(fmt.Sprintf(`{"service_product_id":%d,"effective_date":"2024-06-01","generate_proration":true}`, p1))
	require.Equal(t, 200, a.status, string(a.body))
	assert.Equal(
		t,
		400,
		del(fmt.Sprintf(`{"service_product_id":%d,"generate_proration":true}`, p1)).status,
		"already disconnected",
	)
	require.Equal(
		t,
		200,
		del(
			fmt.Sprintf(`{"service_product_id":%d,"effective_date":"2024-06-02","generate_proration":true}`, p2),
		).status,
	)

	a = patch(`[{"op":"replace","path":"/disconnected_date","value":"2024-06-01"}]`)
	assert.Equal(t, 400, a.status, "dates differ")
	// Reconnecting p2 is not possible; make the dates agree by disconnecting
	// a fresh service instead.
	p = e.page(fmt.Sprintf("/v1/ServiceProduct?service_id=%d&status=disconnected", sid))
	require.Len(t, p.Records, 2)
	assert.Equal(t, "2024-06-01T00:00:00", p.Records[0]["canceled_date"])

	sid2 := e.createService(`{"customer_id":7,"provider_id":5,"number":"2"}`)
	p3 := e.createProduct(sid2, 7)
	require.Equal(
		t,
		200,
		del(
			fmt.Sprintf(`{"service_product_id":%d,"effective_date":"2024-07-01","generate_proration":false}`, p3),
		).status,
	)
	a = e.call(
		"PATCH",
		fmt.Sprintf("/v1/Services/%d", sid2),
		"application/json",
		`[{"op":"replace","path":"/description","value":"x"}]`,
	)
	assert.Equal(t, 415, a.status, "JSON Patch media type required")
	a = e.call(
		"PATCH",
		fmt.Sprintf("/v1/Services/%d", sid2),
		"application/json-patch+json",
		`[{"op":"replace","path":"/description","value":"gone"},{"op":"replace","path":"/disconnected_date","value":"2024-07-01"}]`,
	)
	require.Equal(t, 200, a.status, string(a.body))
	svc := e.sim.Services()[1]
	assert.Equal(t, "2024-07-01", svc.DisconnectedDate)
	assert.Equal(t, "gone", svc.Description)

	// A rejected op leaves the earlier ones unapplied.
	a = patch(
		`[{"op":"replace","path":"/description","value":"half"},{"op":"replace","path":"/fields/0/value","value":"x"}]`,
	)
	assert.Equal(t, 400, a.status)
	assert.Empty(t, e.sim.Services()[0].Description)

	// Disconnected services accept no new products.
	a = e.call("POST", "/v1/ServiceProduct", "application/json",
		fmt.Sprintf(`{"service_id":%d,"product_id":3,"customer_id":7,"generate_proration":false}`, sid2))
	assert.Equal(t, 400, a.status)

	g := e.call("GET", fmt.Sprintf("/v1/ServiceProduct/%d", p3), "", "").json(t)
	assert.Equal(t, "DISCONNECTED", g["status"])
	assert.Len(t, e.sim.ServiceProducts(), 3)
}
