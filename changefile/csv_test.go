package changefile

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
)

func TestParseCSVValidSample(t *testing.T) {
	reqs := validSample(t, "csv")
	require.Len(t, reqs, 7)

	assert.Equal(t, sampleActivation(), reqs[0])
	assert.Equal(
		t,
		DeviceRequest{
			Row:         3,
			ICCID:       iccidB,
			Operation:   change.Activate,
			ServicePlan: "m2m_4G",
			MdnZipCode:  "98801",
			SkuNumber:   "SM-T387VZKAVZW",
			PPU:         sampleActivation().PPU,
		},
		reqs[1],
	)
	assert.Equal(t, DeviceRequest{Row: 4, ICCID: iccidC, Operation: change.Suspend}, reqs[2])
	// Line 5 is blank, so restore is on line 6.
	assert.Equal(t, DeviceRequest{Row: 6, ICCID: iccidD, Operation: change.Restore}, reqs[3])
	assert.Equal(
		t,
		DeviceRequest{Row: 7, ICCID: iccidE, Operation: change.Deactivate, ReasonCode: "FF", EtfWaiver: true},
		reqs[4],
	)
	assert.Equal(t, DeviceRequest{Row: 8, ICCID: iccid19A, Operation: change.Deactivate, ReasonCode: "FF"}, reqs[5])
	assert.Equal(t, DeviceRequest{Row: 9, ICCID: iccid19B, IMEI: imeiB, Operation: change.Inventory}, reqs[6])

	assert.NotEqual(t, reqs[0].BatchKey(), reqs[1].BatchKey(), "the SKU is request-level: it splits batches")
	noSKU := reqs[1]
	noSKU.SkuNumber = ""
	assert.Equal(t, reqs[0].BatchKey(), noSKU.BatchKey(), "same plan, ZIP and PPU batch together")
	assert.NotEqual(t, reqs[4].BatchKey(), reqs[5].BatchKey(), "waiver yes vs 0 cannot share a request")
	waived := reqs[5]
	waived.EtfWaiver = true
	assert.Equal(t, reqs[4].BatchKey(), waived.BatchKey(), "deactive vs deactivate and ff vs FF do not split batches")
}

func TestParseCSVErrorSample(t *testing.T) {
	_, err := ParseFile("testdata/errors.csv", Options{})
	ve := requireProblems(
		t,
		err,
		want{2, "imei", "is required for activate unless sku_number is given"},
		want{3, "iccid", "check digit is wrong"},
		want{4, "iccid", "already on row 2"},
		want{
			5,
			"operation",
			`unknown operation "frobnicate"; valid values: activate, suspend, restore, deactivate, inventory`,
		},
		want{5, "iccid", "must be 19 or 20 digits, has 4"},
		want{6, "imei", "check digit is wrong"},
		want{6, "service_plan", "is required for activate"},
		want{6, "mdn_zip_code", "5-digit ZIP"},
		want{7, "service_plan", "only used by activate; leave it empty on suspend rows"},
		want{7, "reason_code", "only used by deactivate"},
		want{9, "reason_code", "2 letters or digits"},
		want{9, "etf_waiver", "true or false"},
		want{10, "ppu_last_name", "is required"},
		want{10, "ppu_address_line1", "PO box"},
		want{10, "ppu_state", "US state"},
		want{10, "ppu_zip", "5-digit ZIP"},
		want{10, "ppu_country", "US or USA"},
		want{11, "rev_customer_id", "is required"},
		want{11, "rev_service_type_id", "positive whole number"},
		want{11, "rev_product_ids", "item 2 must be a positive whole number"},
		want{11, "rev_rates", "has 1 rate but rev_product_ids has 2 products"},
		want{11, "rev_provider_id", "is required when any rev_ column is filled"},
		want{12, "", "has 2 fields but the header has 18"},
		want{13, "iccid", "is required"},
		want{14, "iccid", "scientific notation"},
		want{15, "operation", "is required"},
		want{16, "ppu_city", "only used by activate"},
		want{17, "iccid", "already on row 16"},
		want{17, "rev_rates", "at most 4 decimal places"},
		want{17, "rev_provider_id", "is required"},
	)
	msg := ve.Error()
	assert.True(
		t,
		strings.HasPrefix(msg, "bulk change file has 30 problems:\nrow 2, field imei: is required for activate"),
		msg,
	)
	assert.Len(t, strings.Split(msg, "\n"), 31, "a header line plus one line per problem")
	assertNoPPU(t, msg, PPU{FirstName: "Zebulon", AddressLine1: "PO Box 4242", City: "Quahog", Country: "Canada"})
	assert.NotContains(t, msg, "4242")
}

func TestParseCSVBOMUppercaseHeaderAndDefaultOperation(t *testing.T) {
	text := "\uFEFF ICCID , Operation,IMEI\n" +
		iccidA + ",,\n" +
		iccidB + ",RESTORE," + imeiWiki + "\n"
	reqs, err := parseCSV(t, text, Options{DefaultOperation: change.Suspend})
	require.NoError(t, err)
	assert.Equal(t, []DeviceRequest{
		{Row: 2, ICCID: iccidA, Operation: change.Suspend},
		{Row: 3, ICCID: iccidB, IMEI: imeiWiki, Operation: change.Restore},
	}, reqs)

	// Without an operation column every row takes the default.
	reqs, err = parseCSV(t, "iccid\n"+iccidA+"\n", Options{DefaultOperation: change.Deactivate})
	require.NoError(t, err)
	assert.Equal(t, []DeviceRequest{{Row: 2, ICCID: iccidA, Operation: change.Deactivate, ReasonCode: "FF"}}, reqs)

	// And without a default, it is an error on each row.
	_, err = parseCSV(t, "iccid\n"+iccidA+"\n"+iccidB+"\n", Options{})
	requireProblems(
		t,
		err,
		want{2, "operation", "is required (no default operation was chosen)"},
		want{3, "operation", "is required"},
	)

	// Problems in columns the file lacks are listed after the file's own
	// columns, in canonical order.
	_, err = parseCSV(t, "imei,iccid,operation\n,"+iccidA+",activate\n"+imeiBadDoc+",123,\n", Options{})
	requireProblems(t, err,
		want{2, "imei", "is required for activate"}, want{2, "service_plan", "is required"},
		want{2, "mdn_zip_code", "is required"}, want{3, "imei", "check digit"}, want{3, "iccid", "19 or 20 digits"}, want{3, "operation", "is required"})

	_, err = parseCSV(t, "iccid\n"+iccidA+"\n", Options{DefaultOperation: "delete"})
	require.Error(t, err)
	var ve *ValidationError
	assert.False(t, errors.As(err, &ve), "a bad default is the caller's mistake, not the file's")
}

func TestParseCSVBlankLinesAndQuotedNewlines(t *testing.T) {
	text := "iccid,operation,service_plan,mdn_zip_code,sku_number\r\n" +
		"\r\n" +
		",,,,\r\n" +
		"  ,  ,,,\r\n" +
		iccidA + ",activate,\"m2m\n4G\",98801,SM-T387VZKAVZW\r\n" + // quoted line break: one record over lines 5-6
		iccidB + ",suspend,,,\r\n" +
		"\r\n"
	_, err := parseCSV(t, text, Options{})
	requireProblems(t, err, want{5, "service_plan", "control character"})

	reqs, err := parseCSV(t, strings.ReplaceAll(text, "m2m\n4G", "m2m_4G"), Options{})
	require.NoError(t, err)
	require.Len(t, reqs, 2)
	assert.Equal(t, 5, reqs[0].Row)
	assert.Equal(t, 6, reqs[1].Row)
}

func TestParseCSVHeaderProblems(t *testing.T) {
	t.Run("unknown and duplicate columns are named", func(t *testing.T) {
		text := "iccid,operation,servce_plan,Operation,ppu_first_name\n" +
			iccidA + ",suspend,x,suspend,\n" +
			"123,suspend,,suspend,\n"
		_, err := parseCSV(t, text, Options{})
		ve := requireProblems(t, err,
			// Header problems follow the column order too; a duplicate sits at its first position.
			want{1, "operation", "column appears more than once (columns 2 and 4)"},
			want{1, "servce_plan", "unknown column; valid columns are iccid, operation, imei"},
			want{3, "iccid", "must be 19 or 20 digits"}, // rows are still checked
		)
		assert.Contains(t, ve.Error(), "row 1, field servce_plan: unknown column")
	})
	t.Run("missing iccid column", func(t *testing.T) {
		_, err := parseCSV(t, "operation,imei\nsuspend,"+imeiWiki+"\nsuspend,\n", Options{})
		requireProblems(t, err, want{1, "iccid", "required column is missing"})
	})
	t.Run("header missing: data is not echoed", func(t *testing.T) {
		line := iccidA + ",activate,m2m_4G,98801,Zebulon,Quixote,12 Rocinante Way,Toboso,TX,75001,US"
		_, err := parseCSV(t, line+"\n"+line+"\n", Options{})
		ve := requireProblems(t, err, want{1, "", "first line must be a header"})
		assert.NotContains(t, ve.Error(), "Zebulon")
		assert.NotContains(t, ve.Error(), "Rocinante")
	})
	t.Run("unnamed column tolerated while empty", func(t *testing.T) {
		reqs, err := parseCSV(t, "iccid,operation,\n"+iccidA+",suspend,\n", Options{})
		require.NoError(t, err)
		require.Len(t, reqs, 1)
		_, err = parseCSV(t, "iccid,operation,\n"+iccidA+",suspend,oops\n", Options{})
		requireProblems(t, err, want{2, "", "column 3 has a value but no name"})
	})
	t.Run("empty file", func(t *testing.T) {
		_, err := parseCSV(t, "", Options{})
		requireProblems(t, err, want{0, "", "file is empty"})
		_, err = parseCSV(t, "\uFEFF\n\n", Options{})
		requireProblems(t, err, want{0, "", "file is empty"})
	})
	t.Run("header only", func(t *testing.T) {
		_, err := parseCSV(t, "iccid,operation\n\n,\n", Options{})
		requireProblems(t, err, want{0, "", "no device rows"})
	})
}

func TestParseCSVRowLimit(t *testing.T) {
	rows := "iccid,operation\n" + iccidA + ",suspend\n" + iccidB + ",suspend\n" + iccidC + ",suspend\n"
	reqs, err := parseCSV(t, rows, Options{MaxRows: 3})
	require.NoError(t, err)
	assert.Len(t, reqs, 3)

	_, err = parseCSV(t, rows+"bad,suspend\n", Options{MaxRows: 3})
	requireProblems(t, err, want{0, "", "file has 4 device rows; at most 3"}) // the row past the limit is not checked

	_, err = parseCSV(t, "iccid,operation\n"+iccidA+",suspend\n"+iccidA+",restore\n", Options{MaxRows: 1})
	requireProblems(t, err, want{0, "", "file has 2 device rows; at most 1"})
}

func TestParseCSVSyntaxErrorIsReportedOnItsRow(t *testing.T) {
	// A stray quote is a problem of its row and column like any other, in
	// the report (exit status 2), without encoding/csv's wording; later rows
	// are still checked.
	_, err := parseCSV(
		t,
		"iccid,operation,ppu_first_name\n"+iccidA+",suspend,Dana \"DJ\" Reyes\nbad,suspend,\n",
		Options{},
	)
	ve := requireProblems(t, err,
		want{2, "ppu_first_name", "column 3 has a double quote inside a value"},
		want{3, "iccid", "must contain only digits"})
	assert.NotContains(t, ve.Error(), "bare")
	assert.NotContains(t, ve.Error(), "Reyes", "the value may be a PPU and is not quoted")

	// An unclosed quote runs to the end of the file.
	_, err = parseCSV(t, "iccid,operation\n"+iccidA+",\"suspend\n"+iccidB+",suspend\n", Options{})
	requireProblems(t, err, want{2, "operation", "column 2 (line 3) has a value in double quotes that is not closed"})

	_, err = parseCSV(t, "iccid,\"oper\"ation\n", Options{})
	requireProblems(t, err, want{1, "", "header line: column 2 has a value in double quotes that is not closed"})

	// Classic Mac line endings make one long header line: reported once,
	// without quoting the values as unknown column names.
	_, err = parseCSV(t, "iccid,operation,ppu_first_name\r"+iccidA+",activate,Zebulon\r", Options{})
	ve = requireProblems(t, err, want{0, "", "no device rows"}, want{1, "", "carriage return only"})
	assert.NotContains(t, ve.Error(), "Zebulon")
}

func TestParseCSVOperationRules(t *testing.T) {
	header := strings.Join(columnNames[:], ",") + "\n"
	// row builds one data line from column=value pairs.
	row := func(kv ...string) string {
		vals := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			vals[kv[i]] = kv[i+1]
		}
		cells := make([]string, numColumns)
		for c := range numColumns {
			cells[c] = vals[c.String()]
			delete(vals, c.String())
		}
		require.Empty(t, vals, "typo in test column names")
		return strings.Join(cells, ",") + "\n"
	}
	activate := []string{"iccid", iccidA, "operation", "activate", "imei", imeiWiki, "service_plan", "m2m_4G",
		"mdn_zip_code", "98801"}
	byICCID := []string{"iccid", iccidA, "operation", "activate", "service_plan", "m2m_4G", "mdn_zip_code", "98801"}
	ppu := []string{
		"ppu_first_name",
		"Ada",
		"ppu_last_name",
		"Lovelace",
		"ppu_address_line1",
		"1 Main St",
		"ppu_city",
		"Yakima",
		"ppu_state",
		"WA",
		"ppu_zip",
		"98901",
		"ppu_country",
		"USA",
	}
	with := func(base []string, more ...string) []string { return append(append([]string{}, base...), more...) }

	tests := []struct {
		name  string
		kv    []string
		wants []want
		check func(t *testing.T, r DeviceRequest)
	}{
		{name: "activate minimal", kv: activate, check: func(t *testing.T, r DeviceRequest) {
			assert.Nil(t, r.PPU)
			assert.Nil(t, r.Billing)
			assert.Empty(t, r.ReasonCode)
		}},
		{name: "activate with PPU", kv: with(activate, ppu...), check: func(t *testing.T, r DeviceRequest) {
			assert.Equal(
				t,
				&PPU{
					FirstName:    "Ada",
					LastName:     "Lovelace",
					AddressLine1: "1 Main St",
					City:         "Yakima",
					State:        "WA",
					Zip:          "98901",
					Country:      "USA",
				},
				r.PPU,
			)
		}},
		{
			// ThingSpace refuses ' < \ (INPUT_INVALID.Request.InvalidCharacter).
			name:  "PPU with an apostrophe",
			kv:    with(with(activate, ppu...), "ppu_last_name", "O'Brien", "ppu_city", `Coeur d\Alene`),
			wants: []want{{2, "ppu_last_name", "an apostrophe (')"}, {2, "ppu_city", "a backslash"}},
		},
		{name: "one PPU column asks for all", kv: with(activate, "ppu_address_line2", "Unit 1"), wants: []want{
			{
				2,
				"ppu_first_name",
				"is required",
			}, {2, "ppu_last_name", "is required"}, {2, "ppu_address_line1", "is required"},
			{
				2,
				"ppu_city",
				"is required",
			}, {2, "ppu_state", "is required"}, {2, "ppu_zip", "is required"}, {2, "ppu_country", "is required"}}},
		{name: "activate needs plan and zip", kv: []string{"iccid", iccidA, "operation", "activate", "imei", imeiWiki},
			wants: []want{
				{2, "service_plan", "is required for activate"}, {2, "mdn_zip_code", "is required for activate"}}},
		{
			name:  "mdn zip not zip+4",
			kv:    with(activate[:8], "mdn_zip_code", "98801-1234"),
			wants: []want{{2, "mdn_zip_code", "5-digit"}},
		},
		{
			name:  "activation without IMEI or SKU",
			kv:    byICCID,
			wants: []want{{2, "imei", "is required for activate unless sku_number is given"}},
		},
		{
			name: "SKU without IMEI",
			kv:   with(byICCID, "sku_number", "SM-T387VZKAVZW"),
			check: func(t *testing.T, r DeviceRequest) {
				assert.Empty(t, r.IMEI)
				assert.Equal(t, "SM-T387VZKAVZW", r.SkuNumber)
			},
		},
		{
			name: "SKU with IMEI",
			kv:   with(activate, "sku_number", "VZW/4G_modem.2"),
			check: func(t *testing.T, r DeviceRequest) {
				assert.Equal(t, imeiWiki, r.IMEI)
				assert.Equal(t, "VZW/4G_modem.2", r.SkuNumber)
			},
		},
		{
			name:  "SKU characters",
			kv:    with(byICCID, "sku_number", "SM T387"),
			wants: []want{{2, "sku_number", "only letters, digits and - _ . / (no spaces)"}},
		},
		{
			name:  "SKU length",
			kv:    with(byICCID, "sku_number", strings.Repeat("S", 65)),
			wants: []want{{2, "sku_number", "at most 64 characters, has 65"}},
		},
		{
			name: "16-digit IMEI",
			kv:   with(byICCID, "imei", imeiSV),
			check: func(t *testing.T, r DeviceRequest) {
				assert.Equal(t, imeiSV, r.IMEI)
			},
		},
		{
			name:  "17-digit IMEI",
			kv:    with(byICCID, "imei", imeiSV+"1"),
			wants: []want{{2, "imei", "must be 15 digits (IMEI) or 16 (IMEISV), has 17"}},
		},
		{
			name:  "SKU on a suspend",
			kv:    []string{"iccid", iccidA, "operation", "suspend", "sku_number", "SM-T387VZKAVZW"},
			wants: []want{{2, "sku_number", "only used by activate; leave it empty on suspend rows"}},
		},
		{
			name: "billing full",
			kv: with(activate, "rev_customer_id", "10", "rev_service_type_id", "20", "rev_provider_id", "30",
				"rev_product_ids", " 1 ; 2;3", "rev_rates", "0;12.5;0.1234"),
			check: func(t *testing.T, r DeviceRequest) {
				assert.Equal(
					t,
					&Billing{
						CustomerID:    10,
						ServiceTypeID: 20,
						ProviderID:    30,
						ProductIDs:    []int64{1, 2, 3},
						Rates:         []string{"0", "12.5", "0.1234"},
					},
					r.Billing,
				)
			},
		},
		{
			name: "billing without products",
			kv:   with(activate, "rev_customer_id", "10", "rev_service_type_id", "20", "rev_provider_id", "30"),
			check: func(t *testing.T, r DeviceRequest) {
				assert.Equal(t, &Billing{CustomerID: 10, ServiceTypeID: 20, ProviderID: 30}, r.Billing)
			},
		},
		{
			// Rev.io requires provider_id to create the service line
			// (postv1_services): without it every billing step would fail
			// after the device is active.
			name: "billing row without rev_provider_id",
			kv: with(activate, "rev_customer_id", "10", "rev_service_type_id", "20",
				"rev_product_ids", "1", "rev_rates", "9.99"),
			wants: []want{{2, "rev_provider_id", "is required when any rev_ column is filled (Rev.io"}},
		},
		{name: "any rev column asks for ids", kv: with(activate, "rev_provider_id", "3"), wants: []want{
			{
				2,
				"rev_customer_id",
				"is required when any rev_ column is filled",
			}, {2, "rev_service_type_id", "is required"}}},
		{
			name: "rev numbers",
			kv: with(activate, "rev_customer_id", "-1", "rev_service_type_id", "+2", "rev_provider_id", "0",
				"rev_product_ids", "1;;99999999999999999999", "rev_rates", "1;-2;1e3"),
			wants: []want{
				{2, "rev_customer_id", "positive whole number"}, {2, "rev_service_type_id", "positive whole number"},
				{2, "rev_provider_id", "positive whole number"},
				{2, "rev_product_ids", "item 2 "}, {2, "rev_product_ids", "item 3 "},
				{2, "rev_rates", "item 2 must be a non-negative decimal"}, {2, "rev_rates", "item 3 "}},
		},
		{
			name: "rates without products",
			kv: with(activate, "rev_customer_id", "1", "rev_service_type_id", "2", "rev_provider_id", "3",
				"rev_rates", "1.00"),
			wants: []want{
				{2, "rev_product_ids", "is required when rev_rates is given"}},
		},
		{
			name: "products without rates",
			kv: with(activate, "rev_customer_id", "1", "rev_service_type_id", "2", "rev_provider_id", "3",
				"rev_product_ids", "7"),
			wants: []want{
				{2, "rev_rates", "is required when rev_product_ids is given"}},
		},
		{
			name: "rate decimals",
			kv: with(
				activate,
				"rev_customer_id",
				"1",
				"rev_service_type_id",
				"2",
				"rev_provider_id",
				"3",
				"rev_product_ids",
				"7;8;9",
				"rev_rates",
				"1.;.5;1.00001",
			),
			wants: []want{
				{2, "rev_rates", "item 1 "}, {2, "rev_rates", "item 2 "}, {2, "rev_rates", "item 3 "}},
		},
		{
			name: "deactivate defaults",
			kv:   []string{"iccid", iccidA, "operation", "deactivate"},
			check: func(t *testing.T, r DeviceRequest) {
				assert.Equal(t, "FF", r.ReasonCode)
				assert.False(t, r.EtfWaiver)
				assert.Nil(t, r.DeleteAfterDeactivation, "empty: the worker's setting decides")
			},
		},
		{
			name: "deactivate keeping the device in ThingSpace",
			kv:   []string{"iccid", iccidA, "operation", "deactivate", "delete_after_deactivation", "No"},
			check: func(t *testing.T, r DeviceRequest) {
				require.NotNil(t, r.DeleteAfterDeactivation)
				assert.False(t, *r.DeleteAfterDeactivation)
			},
		},
		{
			name: "deactivate removing the device from ThingSpace",
			kv:   []string{"iccid", iccidA, "operation", "deactivate", "delete_after_deactivation", "true"},
			check: func(t *testing.T, r DeviceRequest) {
				require.NotNil(t, r.DeleteAfterDeactivation)
				assert.True(t, *r.DeleteAfterDeactivation)
			},
		},
		{
			name:  "delete after deactivation spelling",
			kv:    []string{"iccid", iccidA, "operation", "deactivate", "delete_after_deactivation", "remove"},
			wants: []want{{2, "delete_after_deactivation", "true or false"}},
		},
		{
			name:  "delete after deactivation on a suspend",
			kv:    []string{"iccid", iccidA, "operation", "suspend", "delete_after_deactivation", "false"},
			wants: []want{{2, "delete_after_deactivation", "only used by deactivate; leave it empty on suspend rows"}},
		},
		{
			name: "deactivate with code and waiver",
			kv:   []string{"iccid", iccidA, "operation", "DEACTIVE", "reason_code", "a1", "etf_waiver", "TRUE"},
			check: func(t *testing.T, r DeviceRequest) {
				assert.Equal(t, change.Deactivate, r.Operation)
				assert.Equal(t, "A1", r.ReasonCode)
				assert.True(t, r.EtfWaiver)
			},
		},
		{
			name:  "reason code length",
			kv:    []string{"iccid", iccidA, "operation", "deactivate", "reason_code", "FFF"},
			wants: []want{{2, "reason_code", "2 letters or digits"}},
		},
		{
			name:  "etf waiver spelling",
			kv:    []string{"iccid", iccidA, "operation", "deactivate", "etf_waiver", "ja"},
			wants: []want{{2, "etf_waiver", "true or false"}},
		},
		{
			name: "suspend ignores nothing silently",
			kv:   with([]string{"iccid", iccidA, "operation", "suspend", "etf_waiver", "no"}, ppu[:2]...),
			wants: []want{
				{
					2,
					"etf_waiver",
					"only used by deactivate; leave it empty on suspend rows",
				}, {2, "ppu_first_name", "only used by activate"}},
		},
		{
			name: "restore with billing",
			kv:   []string{"iccid", iccidA, "operation", "restore", "rev_customer_id", "1", "rev_rates", "1"},
			wants: []want{
				{2, "rev_customer_id", "only used by activate"}, {2, "rev_rates", "only used by activate"}},
		},
		{
			name: "inventory with plan",
			kv:   []string{"iccid", iccidA, "operation", "inventory", "mdn_zip_code", "98801"},
			wants: []want{
				{2, "mdn_zip_code", "only used by activate; leave it empty on inventory rows"}},
		},
		{
			name:  "activate with reason",
			kv:    with(activate, "reason_code", "FF"),
			wants: []want{{2, "reason_code", "only used by deactivate"}},
		},
		{
			name: "unknown operation skips operation rules",
			kv:   []string{"iccid", iccidA, "operation", "delete", "service_plan", "x"},
			wants: []want{
				{2, "operation", `unknown operation "delete"`}},
		},
		{
			name:  "imei optional but checked",
			kv:    []string{"iccid", iccidA, "operation", "suspend", "imei", imeiBadDoc},
			wants: []want{{2, "imei", "check digit is wrong"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reqs, err := parseCSV(t, header+row(tt.kv...), Options{})
			if len(tt.wants) > 0 {
				requireProblems(t, err, tt.wants...)
				return
			}
			require.NoError(t, err)
			require.Len(t, reqs, 1)
			if tt.check != nil {
				tt.check(t, reqs[0])
			}
		})
	}
}

func TestParseCSVDuplicateICCIDs(t *testing.T) {
	text := "iccid,operation\n" +
		iccidA + ",suspend\n" +
		iccidB + ",suspend\n" +
		iccidA + ",restore\n" +
		"\n" +
		" " + iccidA + " ,deactivate\n" +
		iccidB + ",suspend\n"
	_, err := parseCSV(t, text, Options{})
	requireProblems(t, err,
		want{4, "iccid", "ICCID " + iccidA + " is already on row 2"},
		want{6, "iccid", "already on row 2"},
		want{7, "iccid", "already on row 3"},
	)
}
