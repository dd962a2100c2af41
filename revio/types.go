package revio

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// DateLayout is the format of every date the client sends ("yyyy-mm-dd").
const DateLayout = "2006-01-02"

// FormatDate renders t's calendar date (in t's location) as DateLayout.
func FormatDate(t time.Time) string { return t.Format(DateLayout) }

// Service product statuses (Rev.io has no "suspended").
const (
	StatusPending      = "PENDING"
	StatusActive       = "ACTIVE"
	StatusDenied       = "DENIED"
	StatusDisconnected = "DISCONNECTED"
)

// CreateServiceRequest is the body of POST /v1/Services. Dates are
// "yyyy-mm-dd". Do not set a service id: Rev.io assigns it. CustomerID and
// ProviderID are required (CreateService refuses a request without them).
type CreateServiceRequest struct {
	CustomerID       int64  `json:"customer_id"`
	ProviderID       int64  `json:"provider_id"`
	ServiceTypeID    int64  `json:"service_type_id,omitempty"`
	Number           string `json:"number,omitempty"`  // MSISDN (or the device identifier when there is none)
	Number2          string `json:"number2,omitempty"` // ICCID
	ActivatedDate    string `json:"activated_date,omitempty"`
	EffectiveDate    string `json:"effective_date,omitempty"`
	PackageID        int64  `json:"package_id,omitempty"`
	UsagePlanGroupID int64  `json:"usage_plan_group_id,omitempty"`
	Description      string `json:"description,omitempty"`
}

// Service is a Rev.io service line as returned by GET. Dates are normalised
// to "yyyy-mm-dd" when the server sends a date-time.
type Service struct {
	ServiceID        int64  `json:"service_id"`
	CustomerID       int64  `json:"customer_id"`
	ProviderID       int64  `json:"provider_id"`
	ServiceTypeID    int64  `json:"service_type_id"`
	Number           string `json:"number"`
	Number2          string `json:"number2"`
	ActivatedDate    string `json:"activated_date"`
	DisconnectedDate string `json:"disconnected_date"`
	Description      string `json:"description"`
}

// ServiceSearch selects services; empty/zero fields are not filters, and at
// least one must be set. Matching is exact.
type ServiceSearch struct {
	Number     string
	Number2    string
	CustomerID int64
}

// CreateServiceProductRequest is the body of POST /v1/ServiceProduct.
type CreateServiceProductRequest struct {
	ServiceID  int64 `json:"service_id"`
	ProductID  int64 `json:"product_id"`
	CustomerID int64 `json:"customer_id"`
	// Rate is decimal text ("12.50"), sent as a JSON number; empty omits it.
	Rate string `json:"rate,omitempty"`
	// Quantity 0 is sent as 1.
	Quantity          int    `json:"quantity"`
	GenerateProration bool   `json:"generate_proration"`
	EffectiveDate     string `json:"effective_date,omitempty"`
	ActivatedDate     string `json:"activated_date,omitempty"`
	PackageID         int64  `json:"package_id,omitempty"`
}

// ServiceProduct is a recurring charge on a service line.
type ServiceProduct struct {
	ServiceProductID int64  `json:"service_product_id"`
	ServiceID        int64  `json:"service_id"`
	ProductID        int64  `json:"product_id"`
	CustomerID       int64  `json:"customer_id"`
	Rate             string `json:"rate"` // decimal text as sent by Rev.io
	Quantity         int    `json:"quantity"`
	Status           string `json:"status"`
	ActivatedDate    string `json:"activated_date"`
	CanceledDate     string `json:"canceled_date"`
}

// UnmarshalJSON accepts rate and quantity as JSON numbers or strings, since
// Rev.io's model types them as numbers but third-party code saw both.
func (p *ServiceProduct) UnmarshalJSON(b []byte) error {
	type plain ServiceProduct
	var w struct {
		plain
		Rate     json.RawMessage `json:"rate"`
		Quantity json.RawMessage `json:"quantity"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*p = ServiceProduct(w.plain)
	var err error
	if p.Rate, err = numberText(w.Rate); err != nil {
		return fmt.Errorf("rate: %w", err)
	}
	q, err := numberText(w.Quantity)
	if err != nil {
		return fmt.Errorf("quantity: %w", err)
	}
	if q != "" {
		f, err := strconv.ParseFloat(q, 64)
		if err != nil {
			return fmt.Errorf("quantity: %w", err)
		}
		p.Quantity = int(f)
	}
	p.ActivatedDate = normDate(p.ActivatedDate)
	p.CanceledDate = normDate(p.CanceledDate)
	return nil
}

// numberText turns a JSON number, numeric string or null into its text.
func numberText(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", err
		}
		s = strings.TrimSpace(s)
		if s != "" && !decimalRE.MatchString(s) {
			return "", fmt.Errorf("not a number: %q", s)
		}
		return s, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return "", err
	}
	return n.String(), nil
}

// UnmarshalJSON normalises the dates of a Service.
func (s *Service) UnmarshalJSON(b []byte) error {
	type plain Service
	var w plain
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*s = Service(w)
	s.ActivatedDate = normDate(s.ActivatedDate)
	s.DisconnectedDate = normDate(s.DisconnectedDate)
	return nil
}

var (
	decimalRE    = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?$`)
	datePrefixRE = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}`)
)

// normDate reduces "2024-05-01T00:00:00", "2024-05-01Z" and the like to
// "2024-05-01"; anything else is returned unchanged.
func normDate(s string) string {
	if datePrefixRE.MatchString(s) {
		return s[:10]
	}
	return s
}

// PatchOp is one JSON Patch (RFC 6902) operation, e.g.
// {Op: "replace", Path: "/description", Value: "x"}. Value is omitted for
// "remove" and sent (null included) otherwise.
type PatchOp struct {
	Op    string
	Path  string
	Value any
}

// MarshalJSON writes the RFC 6902 form.
func (o PatchOp) MarshalJSON() ([]byte, error) {
	if o.Op == "remove" {
		return json.Marshal(struct {
			Op   string `json:"op"`
			Path string `json:"path"`
		}{o.Op, o.Path})
	}
	return json.Marshal(struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value any    `json:"value"`
	}{o.Op, o.Path, o.Value})
}

// createServiceProductWire is what actually goes on the wire: the rate as a
// JSON number, the quantity defaulted, the proration flag always present.
type createServiceProductWire struct {
	ServiceID         int64       `json:"service_id"`
	ProductID         int64       `json:"product_id"`
	CustomerID        int64       `json:"customer_id"`
	Rate              json.Number `json:"rate,omitempty"`
	Quantity          int         `json:"quantity"`
	GenerateProration bool        `json:"generate_proration"`
	EffectiveDate     string      `json:"effective_date,omitempty"`
	ActivatedDate     string      `json:"activated_date,omitempty"`
	PackageID         int64       `json:"package_id,omitempty"`
}

type disconnectServiceProductWire struct {
	ServiceProductID  int64  `json:"service_product_id"`
	EffectiveDate     string `json:"effective_date,omitempty"`
	GenerateProration bool   `json:"generate_proration"`
}

// createdWire is Rev.io's create answer {"ok":true,"id":N}.
type createdWire struct {
	OK *bool           `json:"ok"`
	ID json.RawMessage `json:"id"`
}

type pageWire struct {
	OK          *bool             `json:"ok"`
	HasMore     bool              `json:"has_more"`
	RecordCount int               `json:"record_count"`
	Records     []json.RawMessage `json:"records"`
}
