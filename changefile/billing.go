package changefile

import (
	"fmt"
	"regexp"
	"strconv"

	"github.com/iot-ops/tsbulk/luhn"
)

// rateFormat is a non-negative decimal with at most 4 decimal places.
// Signs and exponents are refused: a rate comes from a price list, where
// "1e3" or "-2" is a spreadsheet accident, not a price.
var rateFormat = regexp.MustCompile(`^[0-9]+(\.[0-9]{1,4})?$`)

// checkBilling reads the Rev.io columns of an activate row that has at least
// one of them filled: a half-described billing service would fail in Rev.io
// after the device is already active, so it is refused up front. The
// provider is required because Rev.io requires provider_id on POST
// /v1/Services (reference "postv1_services").
func checkBilling(e *rowErrors) *Billing {
	rec := e.rec
	b := &Billing{}
	required := func(c column, dst *int64, why string) {
		s := rec.val[c]
		if s == "" {
			e.fail(c, "is required when any rev_ column is filled%s", why)
			return
		}
		id, ok := positiveInt(s)
		if !ok {
			e.fail(c, "must be a positive whole number")
		}
		*dst = id
	}
	required(colRevCustomerID, &b.CustomerID, "")
	required(colRevServiceTypeID, &b.ServiceTypeID, "")
	required(colRevProviderID, &b.ProviderID, " (Rev.io creates no service line without its provider)")

	ids, rates := rec.list[colRevProductIDs], rec.list[colRevRates]
	for i, s := range ids {
		id, ok := positiveInt(s)
		if !ok {
			e.fail(colRevProductIDs, "item %d must be a positive whole number", i+1)
		}
		b.ProductIDs = append(b.ProductIDs, id)
	}
	for i, s := range rates {
		if !rateFormat.MatchString(s) {
			e.fail(
				colRevRates,
				"item %d must be a non-negative decimal with at most 4 decimal places, such as 9.99",
				i+1,
			)
		}
		b.Rates = append(b.Rates, s)
	}
	switch {
	case len(ids) > 0 && len(rates) == 0:
		e.fail(colRevRates, "is required when rev_product_ids is given (one rate per product)")
	case len(rates) > 0 && len(ids) == 0:
		e.fail(colRevProductIDs, "is required when rev_rates is given (one product per rate)")
	case len(ids) != len(rates):
		e.fail(
			colRevRates,
			"has %s but rev_product_ids has %s; give one rate per product",
			count(len(rates), "rate"),
			count(len(ids), "product"),
		)
	}
	return b
}

// positiveInt parses a whole number > 0. Only plain digits are accepted:
// strconv alone would also take "+5", and a sign is never meant in an ID.
func positiveInt(s string) (int64, bool) {
	if !luhn.AllDigits(s) {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n > 0
}

// count spells "1 rate" / "2 rates" for messages.
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
