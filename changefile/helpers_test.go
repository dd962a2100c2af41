package changefile

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
)

// want is an expected problem: row, field and a fragment of the message.
type want struct {
	row   int
	field string
	frag  string
}

// requireProblems asserts that err is a *ValidationError with exactly these
// problems, in this order.
func requireProblems(t *testing.T, err error, wants ...want) *ValidationError {
	t.Helper()
	var ve *ValidationError
	require.True(t, errors.As(err, &ve), "want *ValidationError, got %T: %v", err, err)
	got := make([]string, len(ve.Errors))
	for i, e := range ve.Errors {
		got[i] = fmt.Sprintf("%d %s", e.Row, e.Field)
	}
	exp := make([]string, len(wants))
	for i, w := range wants {
		exp[i] = fmt.Sprintf("%d %s", w.row, w.field)
	}
	require.Equal(t, exp, got, "problems (row field):\n%v", err)
	for i, w := range wants {
		assert.Contains(t, ve.Errors[i].Message, w.frag, "row %d field %s", w.row, w.field)
	}
	return ve
}

// checked wraps a parser for the tests: a failed parse must return no
// requests, only the error.
func checked(
	parse func(io.Reader, Options) ([]DeviceRequest, error),
) func(*testing.T, string, Options) ([]DeviceRequest, error) {
	return func(t *testing.T, text string, opt Options) ([]DeviceRequest, error) {
		t.Helper()
		reqs, err := parse(strings.NewReader(text), opt)
		if err != nil {
			assert.Nil(t, reqs, "no requests on error")
		}
		return reqs, err
	}
}

var (
	parseCSV  = checked(ParseCSV)
	parseJSON = checked(ParseJSON)
)

// validSample parses testdata/valid.csv or testdata/valid.json: the same
// device changes in either format.
func validSample(t *testing.T, format string) []DeviceRequest {
	t.Helper()
	reqs, err := ParseFile("testdata/valid."+format, Options{})
	require.NoError(t, err)
	return reqs
}

// sampleActivation is the activation on the first row of
// testdata/valid.csv, as parsed: every activation field set.
func sampleActivation() DeviceRequest {
	return DeviceRequest{
		Row:         2,
		ICCID:       iccidA,
		IMEI:        imeiWiki,
		Operation:   change.Activate,
		ServicePlan: "m2m_4G",
		MdnZipCode:  "98801",
		PPU: &PPU{
			FirstName:    "Ada",
			LastName:     "Lovelace",
			AddressLine1: "100 Main St, Building 2",
			AddressLine2: "Suite 4",
			City:         "Wenatchee",
			State:        "WA",
			Zip:          "98801-1234",
			Country:      "USA",
		},
		Billing: &Billing{
			CustomerID:    1001,
			ServiceTypeID: 5,
			ProviderID:    3,
			ProductIDs:    []int64{101, 102},
			Rates:         []string{"9.99", "0.5"},
		},
	}
}
