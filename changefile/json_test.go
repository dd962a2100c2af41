package changefile

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
)

func TestParseJSONValidSampleMatchesCSV(t *testing.T) {
	fromJSON, fromCSV := validSample(t, "json"), validSample(t, "csv")
	require.Len(t, fromJSON, len(fromCSV))
	for i := range fromJSON {
		assert.Equal(t, i+1, fromJSON[i].Row, "JSON rows are array positions")
		want := fromCSV[i]
		want.Row = i + 1
		assert.Equal(t, want, fromJSON[i])
	}
}

func TestParseJSONErrorSample(t *testing.T) {
	_, err := ParseFile("testdata/errors.json", Options{})
	// Same problems as errors.csv, numbered by array index (no header, no
	// blank line) and ordered by canonical column order (iccid first).
	ve := requireProblems(t, err,
		want{1, "imei", "is required for activate unless sku_number is given"},
		want{2, "iccid", "check digit is wrong"},
		want{3, "iccid", "already on row 1"},
		want{4, "iccid", "must be 19 or 20 digits, has 4"},
		want{4, "operation", `unknown operation "frobnicate"`},
		want{5, "imei", "check digit is wrong"},
		want{5, "service_plan", "is required for activate"},
		want{5, "mdn_zip_code", "5-digit ZIP"},
		want{6, "service_plan", "only used by activate"},
		want{6, "reason_code", "only used by deactivate"},
		want{7, "reason_code", "2 letters or digits"},
		want{7, "etf_waiver", "true or false"},
		want{8, "ppu_last_name", "is required"},
		want{8, "ppu_address_line1", "PO box"},
		want{8, "ppu_state", "US state"},
		want{8, "ppu_zip", "5-digit ZIP"},
		want{8, "ppu_country", "US or USA"},
		want{9, "rev_customer_id", "is required"},
		want{9, "rev_service_type_id", "positive whole number"},
		want{9, "rev_provider_id", "is required"},
		want{9, "rev_product_ids", "item 2 must be a positive whole number"},
		want{9, "rev_rates", "has 1 rate but rev_product_ids has 2 products"},
		want{10, "", "must be a JSON object"},
		want{11, "iccid", "is required"},
		want{12, "iccid", "scientific notation"},
		want{13, "operation", "is required"},
		want{14, "ppu_city", "only used by activate"},
		want{15, "iccid", "already on row 14"},
		want{15, "rev_provider_id", "is required"},
		want{15, "rev_rates", "at most 4 decimal places"},
	)
	assertNoPPU(
		t,
		ve.Error(),
		PPU{FirstName: "Zebulon", AddressLine1: "PO Box 4242", City: "Quahog", Country: "Canada"},
	)
}

func TestParseJSONKeysAndTypes(t *testing.T) {
	tests := []struct {
		name  string
		json  string
		wants []want
		check func(t *testing.T, reqs []DeviceRequest)
	}{
		{name: "unknown key", json: `[{"iccid":"` + iccidA + `","operation":"suspend","color":"red"}]`, wants: []want{
			{1, "color", "unknown key; valid keys are iccid, operation"}}},
		{name: "key case", json: `[{"ICCID":"` + iccidA + `","operation":"suspend"}]`, wants: []want{
			{1, "iccid", "is required"}, {1, "ICCID", "keys are lower case without spaces, as in iccid"}}},
		{
			name: "duplicate key",
			json: `[{"iccid":"` + iccidA + `","operation":"suspend","operation":"restore"}]`,
			wants: []want{
				{1, "operation", "key appears more than once"}},
		},
		{name: "iccid as number", json: `[{"iccid":89148000001234567898,"operation":"suspend"}]`, wants: []want{
			{1, "iccid", "must be a JSON string"}}},
		{
			name: "wrong types",
			json: `[{"iccid":"` + iccidA + `","operation":true,"service_plan":["a"],"mdn_zip_code":98801,"ppu_city":{}}]`,
			wants: []want{
				{1, "operation", "must be a JSON string"}, {1, "service_plan", "must be a JSON string"},
				{1, "mdn_zip_code", "must be a JSON string"}, {1, "ppu_city", "must be a JSON string"}},
		},
		{
			name: "bad typed values still count as given",
			json: `[{"iccid":"` + iccidA + `","operation":"activate","sku_number":"SKU-1","service_plan":"p","mdn_zip_code":"98801","ppu_city":7}]`,
			wants: []want{
				{
					1,
					"ppu_first_name",
					"is required",
				}, {1, "ppu_last_name", "is required"}, {1, "ppu_address_line1", "is required"},
				{1, "ppu_city", "must be a JSON string"},
				{1, "ppu_state", "is required"}, {1, "ppu_zip", "is required"}, {1, "ppu_country", "is required"}},
		},
		{
			name:  "etf types",
			json:  `[{"iccid":"` + iccidA + `","operation":"deactivate","etf_waiver":1},{"iccid":"` + iccidB + `","operation":"deactivate","etf_waiver":"Y"},{"iccid":"` + iccidC + `","operation":"deactivate","etf_waiver":false}]`,
			wants: []want{{1, "etf_waiver", "must be true, false or a string"}},
		},
		{
			name: "etf bool and string",
			json: `[{"iccid":"` + iccidB + `","operation":"deactivate","etf_waiver":"Y"},{"iccid":"` + iccidC + `","operation":"deactivate","etf_waiver":false}]`,
			check: func(t *testing.T, reqs []DeviceRequest) {
				assert.True(t, reqs[0].EtfWaiver)
				assert.False(t, reqs[1].EtfWaiver)
			},
		},
		{
			name: "delete after deactivation types",
			json: `[{"iccid":"` + iccidA + `","operation":"deactivate","delete_after_deactivation":true},` +
				`{"iccid":"` + iccidB + `","operation":"deactivate","delete_after_deactivation":"no"},` +
				`{"iccid":"` + iccidC + `","operation":"deactivate","delete_after_deactivation":null}]`,
			check: func(t *testing.T, reqs []DeviceRequest) {
				require.NotNil(t, reqs[0].DeleteAfterDeactivation)
				assert.True(t, *reqs[0].DeleteAfterDeactivation)
				require.NotNil(t, reqs[1].DeleteAfterDeactivation)
				assert.False(t, *reqs[1].DeleteAfterDeactivation)
				assert.Nil(t, reqs[2].DeleteAfterDeactivation, "null: the worker's setting")
			},
		},
		{
			name: "delete after deactivation and SKU as numbers",
			json: `[{"iccid":"` + iccidA + `","operation":"deactivate","delete_after_deactivation":1},` +
				`{"iccid":"` + iccidB + `","operation":"activate","service_plan":"p","mdn_zip_code":"98801","sku_number":4711}]`,
			wants: []want{
				{1, "delete_after_deactivation", "must be true, false or a string"},
				{2, "sku_number", "must be a JSON string"},
			},
		},
		{
			name: "nulls are empty",
			json: `[{"iccid":"` + iccidA + `","operation":null,"imei":null,"ppu_city":null,"rev_rates":null}]`,
			check: func(t *testing.T, reqs []DeviceRequest) {
				assert.Equal(t, []DeviceRequest{{Row: 1, ICCID: iccidA, Operation: change.Restore}}, reqs)
			},
		},
		{
			name: "list forms",
			json: `[{"iccid":"` + iccidA + `","operation":"activate","sku_number":"SKU-1","service_plan":"p","mdn_zip_code":"98801","rev_customer_id":"1","rev_service_type_id":2,"rev_provider_id":"3","rev_product_ids":"3; 4","rev_rates":[1.5," 2 "]},` +
				`{"iccid":"` + iccidB + `","operation":"activate","sku_number":"SKU-1","service_plan":"p","mdn_zip_code":"98801","rev_customer_id":1,"rev_service_type_id":2,"rev_provider_id":3,"rev_product_ids":9,"rev_rates":0.25}]`,
			check: func(t *testing.T, reqs []DeviceRequest) {
				assert.Equal(
					t,
					&Billing{CustomerID: 1, ServiceTypeID: 2, ProviderID: 3, ProductIDs: []int64{3, 4}, Rates: []string{"1.5", "2"}},
					reqs[0].Billing,
				)
				assert.Equal(
					t,
					&Billing{CustomerID: 1, ServiceTypeID: 2, ProviderID: 3, ProductIDs: []int64{9}, Rates: []string{"0.25"}},
					reqs[1].Billing,
				)
			},
		},
		{
			name: "numeric id forms",
			json: `[{"iccid":"` + iccidA + `","operation":"activate","sku_number":"SKU-1","service_plan":"p","mdn_zip_code":"98801","rev_customer_id":1.5,"rev_service_type_id":-2,"rev_provider_id":1e2,"rev_product_ids":[1,null],"rev_rates":[{}]}]`,
			wants: []want{
				{1, "rev_customer_id", "positive whole number"},
				{1, "rev_service_type_id", "positive whole number"},
				{
					1,
					"rev_provider_id",
					"positive whole number",
				},
				{1, "rev_product_ids", "item 2 must be a number or a string"},
				{1, "rev_rates", "item 1 must be a number or a string"},
			},
		},
		{
			name: "rate text precision kept",
			json: `[{"iccid":"` + iccidA + `","operation":"activate","sku_number":"SKU-1","service_plan":"p","mdn_zip_code":"98801","rev_customer_id":1,"rev_service_type_id":2,"rev_provider_id":3,"rev_product_ids":[1],"rev_rates":[0.1000]}]`,
			check: func(t *testing.T, reqs []DeviceRequest) {
				assert.Equal(t, []string{"0.1000"}, reqs[0].Billing.Rates)
			},
		},
		{
			name: "non-object elements",
			json: `[1, "x", null, [], {"iccid":"` + iccidA + `","operation":"suspend"}]`,
			wants: []want{
				{
					1,
					"",
					"must be a JSON object",
				}, {2, "", "must be a JSON object"}, {3, "", "must be a JSON object"}, {4, "", "must be a JSON object"}},
		},
		{name: "empty array", json: ` [ ] `, wants: []want{{0, "", "no device rows"}}},
		{name: "empty file", json: "  \n", wants: []want{{0, "", "file is empty"}}},
		{
			name: "BOM",
			json: "\uFEFF[{\"iccid\":\"" + iccidA + "\",\"operation\":\"Deactive\"}]",
			check: func(t *testing.T, reqs []DeviceRequest) {
				assert.Equal(
					t,
					[]DeviceRequest{{Row: 1, ICCID: iccidA, Operation: change.Deactivate, ReasonCode: "FF"}},
					reqs,
				)
			},
		},
		{
			name: "duplicates",
			json: `[{"iccid":"` + iccidA + `"},{"iccid":"` + iccidB + `"},{"iccid":" ` + iccidA + `"}]`,
			wants: []want{
				{3, "iccid", "already on row 1"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reqs, err := parseJSON(t, tt.json, Options{DefaultOperation: change.Restore})
			if len(tt.wants) > 0 {
				requireProblems(t, err, tt.wants...)
				return
			}
			require.NoError(t, err)
			if tt.check != nil {
				tt.check(t, reqs)
			}
		})
	}
}

func TestParseJSONRowLimit(t *testing.T) {
	text := `[{"iccid":"` + iccidA + `"},{"iccid":"` + iccidB + `"},{"iccid":"bad"}]`
	_, err := parseJSON(t, text, Options{DefaultOperation: change.Suspend, MaxRows: 2})
	requireProblems(t, err, want{0, "", "file has 3 device rows; at most 2"})
}

func TestParseJSONSyntaxErrorsArePlain(t *testing.T) {
	for name, text := range map[string]string{
		"not an array":  `{"iccid":"` + iccidA + `"}`,
		"a string":      `"hello"`,
		"truncated":     `[{"iccid":"` + iccidA + `"}`,
		"bad element":   `[{"iccid":}]`,
		"missing comma": `[{"iccid":"1"} {"iccid":"2"}]`,
		"trailing data": `[{"iccid":"` + iccidA + `"}] []`,
	} {
		_, err := parseJSON(t, text, Options{DefaultOperation: change.Suspend})
		require.Error(t, err, name)
		var ve *ValidationError
		assert.False(t, errors.As(err, &ve), "%s: %v", name, err)
		assert.Contains(t, err.Error(), "read JSON", name)
	}
}
