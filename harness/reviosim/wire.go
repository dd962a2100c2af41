package reviosim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
)

// Wire types of the simulator, written from the Rev.io docs independently of
// package revio.

type apimError struct {
	StatusCode int    `json:"statusCode"`
	Message    string `json:"message"`
}

type revError struct {
	OK      bool   `json:"ok"`
	Message string `json:"message"`
}

type revValidationError struct {
	OK      bool   `json:"ok"`
	ID      int64  `json:"id"`
	Error   string `json:"error"`
	Message string `json:"message"`
}

type createdBody struct {
	OK bool  `json:"ok"`
	ID int64 `json:"id"`
}

type collectionBody struct {
	OK          bool `json:"ok"`
	HasMore     bool `json:"has_more"`
	RecordCount int  `json:"record_count"`
	Records     any  `json:"records"`
}

type customField struct {
	FieldID int64  `json:"field_id"`
	Label   string `json:"label"`
	Value   string `json:"value"`
}

type serviceOut struct {
	ServiceID        int64         `json:"service_id"`
	CustomerID       int64         `json:"customer_id"`
	ProviderID       *int64        `json:"provider_id"`
	ServiceTypeID    *int64        `json:"service_type_id"`
	PackageID        *int64        `json:"package_id"`
	UsagePlanGroupID *int64        `json:"usage_plan_group_id"`
	Number           *string       `json:"number"`
	Number2          *string       `json:"number2"`
	ActivatedDate    *string       `json:"activated_date"`
	EffectiveDate    *string       `json:"effective_date"`
	DisconnectedDate *string       `json:"disconnected_date"`
	Description      *string       `json:"description"`
	Fields           []customField `json:"fields"`
}

type serviceProductOut struct {
	ServiceProductID int64           `json:"service_product_id"`
	CustomerID       int64           `json:"customer_id"`
	ProductID        int64           `json:"product_id"`
	PackageID        *int64          `json:"package_id"`
	ServiceID        int64           `json:"service_id"`
	Description      *string         `json:"description"`
	Rate             json.RawMessage `json:"rate"`
	Cost             json.RawMessage `json:"cost"`
	Quantity         int             `json:"quantity"`
	Status           string          `json:"status"`
	StatusDate       *string         `json:"status_date"`
	ActivatedDate    *string         `json:"activated_date"`
	CanceledDate     *string         `json:"canceled_date"`
	TaxIncluded      bool            `json:"tax_included"`
	GroupOnBill      bool            `json:"group_on_bill"`
	Itemized         bool            `json:"itemized"`
}

func optInt(v int64) *int64 {
	if v == 0 {
		return nil
	}
	return &v
}

func optStr(v string) *string {
	if v == "" {
		return nil
	}
	return &v
}

// wireDate renders a stored yyyy-mm-dd as a .NET-style date-time.
func wireDate(d string) *string {
	if d == "" {
		return nil
	}
	v := d + "T00:00:00"
	return &v
}

func toServiceOut(r *ServiceRecord) serviceOut {
	return serviceOut{
		ServiceID:        r.ServiceID,
		CustomerID:       r.CustomerID,
		ProviderID:       optInt(r.ProviderID),
		ServiceTypeID:    optInt(r.ServiceTypeID),
		PackageID:        optInt(r.PackageID),
		UsagePlanGroupID: optInt(r.UsagePlanGroupID),
		Number:           optStr(r.Number),
		Number2:          optStr(r.Number2),
		ActivatedDate:    wireDate(r.ActivatedDate),
		EffectiveDate:    wireDate(r.EffectiveDate),
		DisconnectedDate: wireDate(r.DisconnectedDate),
		Description:      optStr(r.Description),
		Fields:           []customField{},
	}
}

func toServiceProductOut(r *ServiceProductRecord) serviceProductOut {
	rate := json.RawMessage("null")
	if r.Rate != "" {
		rate = json.RawMessage(r.Rate) // validated decimal text: a JSON number
	}
	return serviceProductOut{
		ServiceProductID: r.ServiceProductID,
		CustomerID:       r.CustomerID,
		ProductID:        r.ProductID,
		PackageID:        optInt(r.PackageID),
		ServiceID:        r.ServiceID,
		Description:      optStr(r.Description),
		Rate:             rate,
		Cost:             json.RawMessage("null"),
		Quantity:         r.Quantity,
		Status:           r.Status,
		StatusDate:       wireDate(r.StatusDate),
		ActivatedDate:    wireDate(r.ActivatedDate),
		CanceledDate:     wireDate(r.CanceledDate),
	}
}

// writeJSON answers with a JSON body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encoding answer", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func badRequest(w http.ResponseWriter, field, msg string) {
	writeJSON(w, http.StatusBadRequest, []revValidationError{{OK: false, Error: field, Message: msg}})
}

// writeCreated answers a creation as Rev.io does: 201 with the new
// record's Location and its id in the body.
func writeCreated(w http.ResponseWriter, collection string, id int64) {
	w.Header().Set("Location", fmt.Sprintf("%s/%d", collection, id))
	writeJSON(w, http.StatusCreated, createdBody{
		OK: true,
		ID: id,
	})
}

func notFound(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusNotFound, revError{Message: msg})
}

// object is a decoded JSON object whose fields are checked one by one, so
// that wrong types and unknown names can be reported precisely.
type object map[string]json.RawMessage

// maxBody bounds request bodies; Rev.io bodies here are a few hundred bytes.
const maxBody = 1 << 20

// readObject decodes a JSON object body after checking the media type.
func readObject(w http.ResponseWriter, r *http.Request) (object, bool) {
	if !isJSONMedia(r.Header.Get("Content-Type")) {
		writeJSON(w, http.StatusUnsupportedMediaType, revError{Message: "Content-Type must be application/json"})
		return nil, false
	}
	body, err := readBody(r)
	if err != nil {
		badRequest(w, "body", err.Error())
		return nil, false
	}
	var o object
	if err := json.Unmarshal(body, &o); err != nil || o == nil {
		badRequest(w, "body", "the request body must be a JSON object")
		return nil, false
	}
	return o, true
}

func readBody(r *http.Request) ([]byte, error) {
	var buf bytes.Buffer
	n, err := buf.ReadFrom(http.MaxBytesReader(nil, r.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("reading body: %v", err)
	}
	if n == 0 {
		return nil, fmt.Errorf("the request body is empty")
	}
	return buf.Bytes(), nil
}

func mediaType(ct string) string {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.ToLower(strings.TrimSpace(mt))
}

func isJSONMedia(ct string) bool {
	switch mediaType(ct) {
	case "application/json", "text/json":
		return true
	}
	return false
}

// checkFields rejects names outside allowed.
func (o object) checkFields(allowed ...string) error {
	ok := make(map[string]bool, len(allowed))
	for _, a := range allowed {
		ok[a] = true
	}
	for k := range o {
		if !ok[k] {
			return fmt.Errorf("unknown field %q", k)
		}
	}
	return nil
}

func (o object) has(k string) bool {
	v, ok := o[k]
	return ok && !bytes.Equal(bytes.TrimSpace(v), []byte("null"))
}

// id reads a non-negative integer; absent or null is 0.
func (o object) id(k string) (int64, error) {
	if !o.has(k) {
		return 0, nil
	}
	raw := bytes.TrimSpace(o[k])
	if raw[0] == '"' {
		return 0, fmt.Errorf("%s must be a JSON number, not a string", k)
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s must be a non-negative integer", k)
	}
	return n, nil
}

func (o object) str(k string, maxLen int) (string, error) {
	if !o.has(k) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(o[k], &s); err != nil {
		return "", fmt.Errorf("%s must be a string", k)
	}
	if utf16Len(s) > maxLen {
		return "", fmt.Errorf("%s is longer than %d characters", k, maxLen)
	}
	return s, nil
}

// utf16Len counts characters the way .NET's string length does (UTF-16
// code units), which is how Rev.io's documented maximum lengths are meant:
// "é" is one character, not two bytes.
func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n += max(utf16.RuneLen(r), 1)
	}
	return n
}

func (o object) boolean(k string) (bool, error) {
	var b bool
	if err := json.Unmarshal(o[k], &b); err != nil {
		return false, fmt.Errorf("%s must be true or false", k)
	}
	return b, nil
}

func (o object) date(k string) (string, error) {
	s, err := o.str(k, 64)
	if err != nil || s == "" {
		return "", err
	}
	d, ok := parseDate(s)
	if !ok {
		return "", fmt.Errorf("%s is not a valid date", k)
	}
	return d, nil
}

// fieldReader reads an object's fields in turn and keeps the first error,
// so that a handler reads them all and checks once; like Rev.io's, the
// answer then names only the first bad field. After an error the remaining
// reads return zero values and are not checked.
type fieldReader struct {
	o   object
	err error
}

func readField[T any](r *fieldReader, k string, get func(string) (T, error)) T {
	var v T
	if r.err == nil {
		v, r.err = get(k)
	}
	return v
}

func (r *fieldReader) id(k string) int64       { return readField(r, k, r.o.id) }
func (r *fieldReader) date(k string) string    { return readField(r, k, r.o.date) }
func (r *fieldReader) decimal(k string) string { return readField(r, k, r.o.decimal) }

func (r *fieldReader) str(k string, maxLen int) string {
	return readField(r, k, func(k string) (string, error) { return r.o.str(k, maxLen) })
}

// requiredID is id for a field that must be sent and not 0.
func (r *fieldReader) requiredID(k string) int64 {
	id := r.id(k)
	if r.err == nil && id == 0 {
		r.err = fmt.Errorf("%s is required", k)
	}
	return id
}

// requiredBool reads a flag that has no default: Rev.io wants it said.
func (r *fieldReader) requiredBool(k string) bool {
	if r.err == nil && !r.o.has(k) {
		r.err = fmt.Errorf("%s is required", k)
	}
	return readField(r, k, r.o.boolean)
}

// check runs a rule of its own (a field with extra limits, a required
// flag) in the same turn as the plain reads.
func (r *fieldReader) check(f func() error) {
	if r.err == nil {
		r.err = f()
	}
}

var decimalText = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?$`)

// decimal reads a JSON number (or numeric string, which .NET would coerce)
// and keeps its text.
func (o object) decimal(k string) (string, error) {
	if !o.has(k) {
		return "", nil
	}
	raw := strings.TrimSpace(string(o[k]))
	if strings.HasPrefix(raw, `"`) {
		if err := json.Unmarshal(o[k], &raw); err != nil {
			return "", fmt.Errorf("%s must be a number", k)
		}
	}
	if !decimalText.MatchString(raw) {
		if f, err := strconv.ParseFloat(raw, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			return strconv.FormatFloat(f, 'f', -1, 64), nil
		}
		return "", fmt.Errorf("%s must be a number", k)
	}
	return raw, nil
}

// parseDate accepts the date forms seen in Rev.io traffic and returns the
// calendar date.
func parseDate(s string) (string, bool) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{
		"2006-01-02",
		"2006-01-02Z07:00",
		"2006-01-02Z",
		time.RFC3339Nano,
		"2006-01-02T15:04:05",
		"2006-01-02T15:04:05.999999999",
	} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.Format("2006-01-02"), true
		}
	}
	return "", false
}
