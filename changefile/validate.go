package changefile

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/luhn"
)

// record is one submitted row in a format-neutral shape. CSV and JSON are
// both reduced to it, so the two formats are held to exactly the same rules.
type record struct {
	row  int
	val  [numColumns]string   // trimmed; "" = not given
	list [numColumns][]string // list columns only; items trimmed
	// bad marks columns whose value could not be read (already reported in
	// errs). They count as given, but get no second message.
	bad  [numColumns]bool
	errs []FieldError
	// broken rows (wrong field count, not a JSON object) cannot be mapped to
	// columns at all; only errs is reported for them.
	broken bool
}

// given reports whether the row has a value in c.
func (r *record) given(c column) bool {
	return r.val[c] != "" || len(r.list[c]) > 0 || r.bad[c]
}

func (r *record) anyGiven(in func(column) bool) bool {
	for c := range numColumns {
		if in(c) && r.given(c) {
			return true
		}
	}
	return false
}

// rowErrors collects the problems of one row.
type rowErrors struct {
	rec  *record
	errs []FieldError
}

func (e *rowErrors) fail(c column, format string, args ...any) {
	if e.rec.bad[c] {
		return // the unreadable value was already reported; more would only repeat it
	}
	e.errs = append(e.errs, FieldError{Row: e.rec.row, Field: c.String(), Message: fmt.Sprintf(format, args...)})
}

// validator checks rows one at a time and remembers what it needs across
// rows (row count, ICCIDs seen), so a file is validated in a single pass.
type validator struct {
	defaultOp change.Operation
	maxRows   int
	rows      int
	seen      map[string]int // ICCID → first row it was on
	errs      []FieldError
	out       []DeviceRequest
}

func newValidator(opt Options) (*validator, error) {
	if opt.DefaultOperation != "" && !opt.DefaultOperation.Valid() {
		return nil, fmt.Errorf(
			"bulkchange: invalid default operation %q; valid values: %s",
			opt.DefaultOperation,
			change.OperationNames(),
		)
	}
	maxRows := opt.MaxRows
	if maxRows <= 0 {
		maxRows = defaultMaxRows
	}
	return &validator{defaultOp: opt.DefaultOperation, maxRows: maxRows, seen: map[string]int{}}, nil
}

// accept counts a device row and reports whether it should be validated.
// Rows past the limit are only counted: the file is rejected anyway and has
// to be split, and checking them would let an oversized file use unbounded
// memory for errors.
func (v *validator) accept() bool {
	v.rows++
	return v.rows <= v.maxRows
}

func (v *validator) fileError(row int, field, msg string) {
	v.errs = append(v.errs, FieldError{Row: row, Field: field, Message: msg})
}

// finish returns the requests, or every problem found sorted by rank.
func (v *validator) finish(rank func(string) int) ([]DeviceRequest, error) {
	if v.rows == 0 {
		v.fileError(0, "", "file has no device rows")
	}
	if v.rows > v.maxRows {
		v.fileError(
			0,
			"",
			fmt.Sprintf(
				"file has %d device rows; at most %d are allowed in one file, so split it (rows after the limit were not checked)",
				v.rows,
				v.maxRows,
			),
		)
	}
	if len(v.errs) > 0 {
		sortErrors(v.errs, rank)
		return nil, &ValidationError{Errors: v.errs}
	}
	return v.out, nil
}

// add validates one row and keeps the request if the file is still clean.
func (v *validator) add(rec *record) {
	if rec.broken {
		v.errs = append(v.errs, rec.errs...)
		return
	}
	e := &rowErrors{rec: rec, errs: append([]FieldError(nil), rec.errs...)}
	req := DeviceRequest{Row: rec.row, ICCID: rec.val[colICCID], IMEI: rec.val[colIMEI]}

	v.checkICCID(e)
	if imei := rec.val[colIMEI]; imei != "" {
		if err := ValidateIMEI(imei); err != nil {
			e.fail(colIMEI, "%s", err)
		}
	}
	if op, ok := v.operation(e); ok {
		req.Operation = op
		for c := range numColumns {
			if only := c.onlyFor(); only != "" && only != op && rec.given(c) {
				e.fail(c, "only used by %s; leave it empty on %s rows", only, op)
			}
		}
		switch op {
		case change.Activate:
			checkActivate(e, &req)
		case change.Deactivate:
			checkDeactivate(e, &req)
		}
	}

	if len(e.errs) > 0 {
		v.errs = append(v.errs, e.errs...)
		return
	}
	if len(v.errs) == 0 { // once the file has failed nothing is returned, so stop collecting
		v.out = append(v.out, req)
	}
}

func (v *validator) checkICCID(e *rowErrors) {
	iccid := e.rec.val[colICCID]
	if iccid == "" {
		e.fail(colICCID, "is required")
		return
	}
	if err := ValidateICCID(iccid); err != nil {
		e.fail(colICCID, "%s", err)
		return
	}
	if first, dup := v.seen[iccid]; dup {
		e.fail(colICCID, "ICCID %s is already on row %d; list each device once", iccid, first)
		return
	}
	v.seen[iccid] = e.rec.row
}

// operation resolves the row's operation. ok is false when it is missing or
// unknown; the operation-specific checks are then skipped, since which
// fields are required depends on it.
func (v *validator) operation(e *rowErrors) (change.Operation, bool) {
	if e.rec.bad[colOperation] {
		return "", false
	}
	text := e.rec.val[colOperation]
	if text == "" {
		if v.defaultOp == "" {
			e.fail(colOperation, "is required (no default operation was chosen); valid values: %s", change.OperationNames())
			return "", false
		}
		return v.defaultOp, true
	}
	op, err := change.ParseOperation(text)
	if err != nil {
		e.fail(colOperation, "%s", err)
		return "", false
	}
	return op, true
}

const maxServicePlanLen = 100

func checkActivate(e *rowErrors, req *DeviceRequest) {
	rec := e.rec
	req.ServicePlan = rec.val[colServicePlan]
	if req.ServicePlan == "" {
		e.fail(colServicePlan, "is required for activate")
	} else if msg := textProblem(req.ServicePlan, maxServicePlanLen); msg != "" {
		e.fail(colServicePlan, "%s", msg)
	}
	req.MdnZipCode = rec.val[colMdnZipCode]
	if req.MdnZipCode == "" {
		e.fail(colMdnZipCode, "is required for activate (the ZIP code the phone number is taken from)")
	} else if len(req.MdnZipCode) != 5 || !luhn.AllDigits(req.MdnZipCode) {
		e.fail(colMdnZipCode, "must be a 5-digit ZIP code")
	}
	req.SkuNumber = rec.val[colSkuNumber]
	if req.SkuNumber != "" {
		if msg := skuProblem(req.SkuNumber); msg != "" {
			e.fail(colSkuNumber, "%s", msg)
		}
	}
	if !rec.given(colIMEI) && !rec.given(colSkuNumber) {
		// ThingSpace activates a 4G device named by its ICCID only with its
		// IMEI or, in lieu of it, the device type's SKU (skuNumber). A
		// given but unreadable value was reported already.
		e.fail(colIMEI, "is required for activate unless sku_number is given "+
			"(ThingSpace needs the device's IMEI, or its SKU, to activate it)")
	}

	if rec.anyGiven(column.isPPU) {
		p := PPU{
			FirstName:    rec.val[colPPUFirstName],
			LastName:     rec.val[colPPULastName],
			AddressLine1: rec.val[colPPUAddressLine1],
			AddressLine2: rec.val[colPPUAddressLine2],
			City:         rec.val[colPPUCity],
			State:        rec.val[colPPUState],
			Zip:          rec.val[colPPUZip],
			Country:      rec.val[colPPUCountry],
		}
		for _, fe := range ValidatePPU(p) {
			if c, ok := columnByName(fe.Field); ok {
				e.fail(c, "%s", fe.Message)
			}
		}
		n := normalizePPU(p)
		req.PPU = &n
	}
	if rec.anyGiven(column.isRev) {
		req.Billing = checkBilling(e)
	}
}

func checkDeactivate(e *rowErrors, req *DeviceRequest) {
	rec := e.rec
	req.ReasonCode = defaultReasonCode
	if code := rec.val[colReasonCode]; code != "" {
		if len(code) != 2 || !isAlnum(code) {
			e.fail(colReasonCode, "must be 2 letters or digits (the documented code is FF)")
		}
		// Documented codes are upper case; normalising lets "ff" batch with "FF".
		req.ReasonCode = strings.ToUpper(code)
	}
	if s := rec.val[colEtfWaiver]; s != "" {
		w, ok := parseBool(s)
		if !ok {
			e.fail(colEtfWaiver, "must be true or false (yes/no, y/n and 1/0 also work)")
		}
		req.EtfWaiver = w
	}
	if s := rec.val[colDeleteAfter]; s != "" {
		d, ok := parseBool(s)
		if !ok {
			e.fail(colDeleteAfter, "must be true or false (yes/no, y/n and 1/0 also work), "+
				"or empty for the thingspace.delete_after_deactivation setting")
		}
		req.DeleteAfterDeactivation = &d
	}
}

// maxSKULen bounds a SKU. Verizon publishes no format; device SKUs are short
// codes such as SM-T387VZKAVZW.
const maxSKULen = 64

// skuProblem checks a SKU: at most maxSKULen ASCII letters, digits and
// - _ . / (no spaces: a SKU is a code, and a stray space or a pasted word
// would make ThingSpace refuse the whole request), "" when it is fine.
func skuProblem(s string) string {
	if len(s) > maxSKULen {
		return fmt.Sprintf("is too long: at most %d characters, has %d", maxSKULen, utf8.RuneCountInString(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || strings.IndexByte("-_./", c) >= 0) {
			return "may hold only letters, digits and - _ . / (no spaces)"
		}
	}
	return ""
}

func isAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// parseBool accepts the spellings spreadsheets and people produce;
// strconv.ParseBool would reject yes/no and accept "t"/"F", which nobody types.
func parseBool(s string) (value, ok bool) {
	switch strings.ToLower(s) {
	case "true", "yes", "y", "1":
		return true, true
	case "false", "no", "n", "0":
		return false, true
	}
	return false, false
}
