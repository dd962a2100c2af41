package changefile

import (
	"strings"

	"github.com/iot-ops/tsbulk/change"
)

// column is one input field. CSV headers and JSON keys use the same names so
// operators can switch formats without relearning them. The declaration order
// is the order problems are reported in when the file has no column order of
// its own (JSON).
type column int

const (
	colICCID column = iota
	colOperation
	colIMEI
	colServicePlan
	colMdnZipCode
	colSkuNumber
	colReasonCode
	colEtfWaiver
	colDeleteAfter
	colPPUFirstName
	colPPULastName
	colPPUAddressLine1
	colPPUAddressLine2
	colPPUCity
	colPPUState
	colPPUZip
	colPPUCountry
	colRevCustomerID
	colRevServiceTypeID
	colRevProviderID
	colRevProductIDs
	colRevRates
	numColumns
)

var columnNames = [numColumns]string{
	colICCID:            "iccid",
	colOperation:        "operation",
	colIMEI:             "imei",
	colServicePlan:      "service_plan",
	colMdnZipCode:       "mdn_zip_code",
	colSkuNumber:        "sku_number",
	colReasonCode:       "reason_code",
	colEtfWaiver:        "etf_waiver",
	colDeleteAfter:      "delete_after_deactivation",
	colPPUFirstName:     "ppu_first_name",
	colPPULastName:      "ppu_last_name",
	colPPUAddressLine1:  "ppu_address_line1",
	colPPUAddressLine2:  "ppu_address_line2",
	colPPUCity:          "ppu_city",
	colPPUState:         "ppu_state",
	colPPUZip:           "ppu_zip",
	colPPUCountry:       "ppu_country",
	colRevCustomerID:    "rev_customer_id",
	colRevServiceTypeID: "rev_service_type_id",
	colRevProviderID:    "rev_provider_id",
	colRevProductIDs:    "rev_product_ids",
	colRevRates:         "rev_rates",
}

func (c column) String() string { return columnNames[c] }

// columnByName looks up an exact (already lower-cased) column name.
func columnByName(name string) (column, bool) {
	for c, n := range columnNames {
		if n == name {
			return column(c), true
		}
	}
	return 0, false
}

// validColumns is the list quoted in "unknown column" messages.
func validColumns() string { return strings.Join(columnNames[:], ", ") }

// onlyFor names the one operation that reads c, or "" when every operation
// does. A value in a column its row's operation ignores is reported, so an
// operator never believes a setting was applied when it was not.
func (c column) onlyFor() change.Operation {
	switch {
	case c == colServicePlan, c == colMdnZipCode, c == colSkuNumber, c >= colPPUFirstName && c <= colRevRates:
		return change.Activate
	case c == colReasonCode, c == colEtfWaiver, c == colDeleteAfter:
		return change.Deactivate
	}
	return ""
}

func (c column) isPPU() bool { return c >= colPPUFirstName && c <= colPPUCountry }

func (c column) isRev() bool { return c >= colRevCustomerID && c <= colRevRates }

// isList marks the columns that hold several values (";"-separated in CSV,
// an array or a ";" string in JSON).
func (c column) isList() bool { return c == colRevProductIDs || c == colRevRates }

// isNumeric marks the columns that JSON may give as a number.
func (c column) isNumeric() bool {
	return c == colRevCustomerID || c == colRevServiceTypeID || c == colRevProviderID
}
