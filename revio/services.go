package revio

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
)

// pageSize is Rev.io's documented maximum page size.
const pageSize = 500

// maxPages stops a listing whose server keeps saying has_more (250,000
// records is far beyond one customer's lines or one service's products).
const maxPages = 500

const (
	contentJSON      = "application/json"
	contentJSONPatch = "application/json-patch+json"
)

// CheckAuth verifies both credentials with GET /v1/SystemStatus.
func (c *Client) CheckAuth(ctx context.Context) error {
	_, err := c.do(ctx, request{op: "CheckAuth", method: http.MethodGet, path: "/v1/SystemStatus"})
	return err
}

// CreateService creates a service line with POST /v1/Services and returns its
// service_id. It is never retried once sent: on an *Error with
// OutcomeUnknown, search by number before creating again.
func (c *Client) CreateService(ctx context.Context, req CreateServiceRequest) (int64, error) {
	const op = "CreateService"
	if err := validateCreateService(req); err != nil {
		return 0, invalid(op, err)
	}
	resp, err := c.sendJSON(ctx, op, http.MethodPost, "/v1/Services", contentJSON, req)
	if err != nil {
		return 0, err
	}
	return c.createdID(op, resp)
}

// validateCreateService applies the rules of Rev.io's reference
// (postv1_services): customer_id and provider_id required, number and
// number2 at most 255 characters, description at most 1000. A service
// without its provider would only be refused by Rev.io, so it is refused
// here without being sent.
func validateCreateService(r CreateServiceRequest) error {
	switch {
	case r.CustomerID <= 0:
		return fmt.Errorf("customer_id is required")
	case r.ProviderID <= 0:
		return fmt.Errorf("provider_id is required (Rev.io requires a service's provider)")
	case r.ServiceTypeID < 0, r.PackageID < 0, r.UsagePlanGroupID < 0:
		return fmt.Errorf("ids must not be negative")
	case textLen(r.Number) > 255:
		return fmt.Errorf("number longer than 255 characters")
	case textLen(r.Number2) > 255:
		return fmt.Errorf("number2 longer than 255 characters")
	case textLen(r.Description) > 1000:
		return fmt.Errorf("description longer than 1000 characters")
	}
	if err := checkDate("activated_date", r.ActivatedDate); err != nil {
		return err
	}
	return checkDate("effective_date", r.EffectiveDate)
}

// FindServices lists the services matching every non-empty criterion,
// following pages while has_more. Records the server returns that do not
// match exactly are dropped (see the package doc).
func (c *Client) FindServices(ctx context.Context, s ServiceSearch) ([]Service, error) {
	const op = "FindServices"
	s.Number = strings.TrimSpace(s.Number)
	s.Number2 = strings.TrimSpace(s.Number2)
	if s.Number == "" && s.Number2 == "" && s.CustomerID <= 0 {
		// An empty search would page through every line of the tenant.
		return nil, invalid(op, fmt.Errorf("at least one of number, number2, customer_id is required"))
	}
	q := url.Values{}
	if s.Number != "" {
		q.Set("search.number", s.Number)
	}
	if s.Number2 != "" {
		q.Set("search.number2", s.Number2)
	}
	if s.CustomerID > 0 {
		q.Set("search.customer_id", strconv.FormatInt(s.CustomerID, 10))
	}
	var out []Service
	err := c.list(ctx, op, "/v1/Services", q, func(raw json.RawMessage) (int64, error) {
		var sv Service
		if err := json.Unmarshal(raw, &sv); err != nil {
			return 0, err
		}
		if (s.Number == "" || sv.Number == s.Number) &&
			(s.Number2 == "" || sv.Number2 == s.Number2) &&
			(s.CustomerID <= 0 || sv.CustomerID == s.CustomerID) {
			out = append(out, sv)
		}
		return sv.ServiceID, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// GetService reads one service with GET /v1/Services/{id}. A missing service
// is an *Error with HTTPStatus 404 (see IsNotFound).
func (c *Client) GetService(ctx context.Context, id int64) (*Service, error) {
	const op = "GetService"
	if id <= 0 {
		return nil, invalid(op, fmt.Errorf("service id is required"))
	}
	resp, err := c.do(ctx, request{op: op, method: http.MethodGet, path: "/v1/Services/" + strconv.FormatInt(id, 10)})
	if err != nil {
		return nil, err
	}
	if err := c.checkOK(op, resp); err != nil {
		return nil, err
	}
	var sv Service
	if err := json.Unmarshal(resp.body, &sv); err != nil {
		return nil, c.unexpected(op, resp, fmt.Errorf("decoding service: %w", err))
	}
	if sv.ServiceID == 0 {
		sv.ServiceID = id
	}
	return &sv, nil
}

// UpdateService applies a JSON Patch to a service with PATCH
// /v1/Services/{id}, e.g. "/description" or "/disconnected_date" (Rev.io
// requires every service product to carry that date already).
func (c *Client) UpdateService(ctx context.Context, id int64, ops []PatchOp) error {
	const op = "UpdateService"
	if id <= 0 {
		return invalid(op, fmt.Errorf("service id is required"))
	}
	if len(ops) == 0 {
		return invalid(op, fmt.Errorf("no patch operations"))
	}
	for i, o := range ops {
		if o.Op == "" || o.Path == "" {
			return invalid(op, fmt.Errorf("patch operation %d needs op and path", i))
		}
		if strings.HasSuffix(o.Path, "_date") {
			if s, ok := o.Value.(string); ok {
				if err := checkDate(o.Path, s); err != nil {
					return invalid(op, err)
				}
			}
		}
	}
	resp, err := c.sendJSON(ctx, op, http.MethodPatch, "/v1/Services/"+strconv.FormatInt(id, 10), contentJSONPatch, ops)
	if err != nil {
		return err
	}
	return c.checkOK(op, resp)
}

// CreateServiceProduct adds a recurring product to a service with POST
// /v1/ServiceProduct and returns its service_product_id. Like CreateService
// it is never retried once sent.
func (c *Client) CreateServiceProduct(ctx context.Context, req CreateServiceProductRequest) (int64, error) {
	const op = "CreateServiceProduct"
	switch {
	case req.ServiceID <= 0:
		return 0, invalid(op, fmt.Errorf("service_id is required"))
	case req.ProductID <= 0:
		return 0, invalid(op, fmt.Errorf("product_id is required"))
	case req.CustomerID <= 0:
		return 0, invalid(op, fmt.Errorf("customer_id is required"))
	case req.Quantity < 0:
		return 0, invalid(op, fmt.Errorf("quantity must not be negative"))
	case req.PackageID < 0:
		return 0, invalid(op, fmt.Errorf("package_id must not be negative"))
	}
	rate := strings.TrimSpace(req.Rate)
	if rate != "" && !decimalRE.MatchString(rate) {
		return 0, invalid(op, fmt.Errorf("rate must be decimal text like 12.50"))
	}
	for _, d := range [][2]string{{"effective_date", req.EffectiveDate}, {"activated_date", req.ActivatedDate}} {
		if err := checkDate(d[0], d[1]); err != nil {
			return 0, invalid(op, err)
		}
	}
	w := createServiceProductWire{
		ServiceID:         req.ServiceID,
		ProductID:         req.ProductID,
		CustomerID:        req.CustomerID,
		Rate:              json.Number(rate),
		Quantity:          max(req.Quantity, 1),
		GenerateProration: req.GenerateProration,
		EffectiveDate:     req.EffectiveDate,
		ActivatedDate:     req.ActivatedDate,
		PackageID:         req.PackageID,
	}
	resp, err := c.sendJSON(ctx, op, http.MethodPost, "/v1/ServiceProduct", contentJSON, w)
	if err != nil {
		return 0, err
	}
	return c.createdID(op, resp)
}

// ListServiceProducts lists the products of a service, optionally only those
// with status (e.g. StatusActive; "" for all), following pages.
func (c *Client) ListServiceProducts(ctx context.Context, serviceID int64, status string) ([]ServiceProduct, error) {
	const op = "ListServiceProducts"
	if serviceID <= 0 {
		return nil, invalid(op, fmt.Errorf("service id is required"))
	}
	status = strings.ToUpper(strings.TrimSpace(status))
	q := url.Values{}
	q.Set("search.service_id", strconv.FormatInt(serviceID, 10))
	if status != "" {
		q.Set("search.status", status)
	}
	var out []ServiceProduct
	err := c.list(ctx, op, "/v1/ServiceProduct", q, func(raw json.RawMessage) (int64, error) {
		var p ServiceProduct
		if err := json.Unmarshal(raw, &p); err != nil {
			return 0, err
		}
		if p.ServiceID == serviceID && (status == "" || strings.EqualFold(p.Status, status)) {
			out = append(out, p)
		}
		return p.ServiceProductID, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DisconnectServiceProduct ends a service product with DELETE
// /v1/ServiceProduct and a JSON body. effectiveDate may be "" (Rev.io then
// picks the date, possibly shifted by product or bill-profile settings).
// Disconnecting an already disconnected product may be refused: check
// ListServiceProducts when a retry after an unknown outcome fails.
func (c *Client) DisconnectServiceProduct(
	ctx context.Context,
	id int64,
	effectiveDate string,
	generateProration bool,
) error {
	const op = "DisconnectServiceProduct"
	if id <= 0 {
		return invalid(op, fmt.Errorf("service product id is required"))
	}
	if err := checkDate("effective_date", effectiveDate); err != nil {
		return invalid(op, err)
	}
	w := disconnectServiceProductWire{
		ServiceProductID:  id,
		EffectiveDate:     effectiveDate,
		GenerateProration: generateProration,
	}
	resp, err := c.sendJSON(ctx, op, http.MethodDelete, "/v1/ServiceProduct", contentJSON, w)
	if err != nil {
		return err
	}
	return c.checkOK(op, resp)
}

// sendJSON sends v as the request body. A body that does not marshal is the
// caller's mistake (ErrInvalidRequest), found before anything is sent.
func (c *Client) sendJSON(ctx context.Context, op, method, p, contentType string, v any) (*response, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, invalid(op, err)
	}
	return c.do(ctx, request{op: op, method: method, path: p, body: body, contentType: contentType})
}

// list walks a collection. each decodes one record and returns its id, used
// to notice a server that ignores the page parameter and repeats a page.
func (c *Client) list(
	ctx context.Context,
	op, p string,
	q url.Values,
	each func(json.RawMessage) (int64, error),
) error {
	seen := make(map[int64]bool)
	q.Set("search.page_size", strconv.Itoa(pageSize))
	for page := 1; ; page++ {
		if page > maxPages {
			return &Error{
				Op:      op,
				Sent:    true,
				Message: fmt.Sprintf("more than %d pages", maxPages),
				Err:     ErrUnexpectedResponse,
			}
		}
		q.Set("search.page", strconv.Itoa(page))
		resp, err := c.do(ctx, request{op: op, method: http.MethodGet, path: p, query: q})
		if err != nil {
			return err
		}
		var pw pageWire
		if err := json.Unmarshal(resp.body, &pw); err != nil {
			return c.unexpected(op, resp, fmt.Errorf("decoding page %d: %w", page, err))
		}
		if pw.OK != nil && !*pw.OK {
			return c.unexpected(op, resp, fmt.Errorf("page %d answered ok=false", page))
		}
		fresh := 0
		for _, raw := range pw.Records {
			id, err := each(raw)
			if err != nil {
				return c.unexpected(op, resp, fmt.Errorf("decoding record on page %d: %w", page, err))
			}
			if !seen[id] {
				seen[id] = true
				fresh++
			}
		}
		if !pw.HasMore {
			return nil
		}
		if fresh == 0 {
			// has_more with nothing new would loop forever.
			return c.unexpected(op, resp, fmt.Errorf("page %d has no new records but has_more is true", page))
		}
	}
}

// createdID reads {"ok":true,"id":N}, falling back to the Location header
// when the body lacks the id.
func (c *Client) createdID(op string, resp *response) (int64, error) {
	if err := c.checkOK(op, resp); err != nil {
		return 0, err
	}
	var w createdWire
	if len(bytes.TrimSpace(resp.body)) > 0 {
		if err := json.Unmarshal(resp.body, &w); err != nil {
			return 0, c.unexpected(op, resp, fmt.Errorf("decoding create answer: %w", err))
		}
	}
	if s, err := numberText(w.ID); err == nil && s != "" {
		if id, err := strconv.ParseInt(s, 10, 64); err == nil && id > 0 {
			return id, nil
		}
	}
	if loc := resp.header.Get("Location"); loc != "" {
		if u, err := url.Parse(loc); err == nil {
			if id, err := strconv.ParseInt(path.Base(u.Path), 10, 64); err == nil && id > 0 {
				return id, nil
			}
		}
	}
	return 0, c.unexpected(op, resp, fmt.Errorf("create answer carries no id"))
}

// checkOK rejects a 2xx whose body says "ok": false.
func (c *Client) checkOK(op string, resp *response) error {
	b := bytes.TrimSpace(resp.body)
	if len(b) == 0 || b[0] != '{' {
		return nil
	}
	var w struct {
		OK *bool `json:"ok"`
	}
	if err := json.Unmarshal(b, &w); err == nil && w.OK != nil && !*w.OK {
		return c.unexpected(op, resp, fmt.Errorf("answer has ok=false"))
	}
	return nil
}

func (c *Client) unexpected(op string, resp *response, err error) *Error {
	// The message describes what was wrong, not the body: a 2xx body is
	// data (possibly a whole page), not an error text.
	return &Error{
		Op:         op,
		HTTPStatus: resp.status,
		Message:    string(c.redact([]byte(shorten(err.Error())))),
		Sent:       true,
		Err:        ErrUnexpectedResponse,
	}
}

func invalid(op string, err error) *Error {
	return &Error{Op: op, Message: err.Error(), Err: ErrInvalidRequest}
}

// checkDate accepts "" (not sent) or a valid yyyy-mm-dd.
func checkDate(field, s string) error {
	if s == "" {
		return nil
	}
	if _, err := time.Parse(DateLayout, s); err != nil {
		return fmt.Errorf("%s must be yyyy-mm-dd", field)
	}
	return nil
}

// textLen counts characters as Rev.io's .NET limits do (UTF-16 code units),
// so that "é" counts once, not as its two bytes.
func textLen(s string) int {
	n := 0
	for _, r := range s {
		n += max(utf16.RuneLen(r), 1)
	}
	return n
}
