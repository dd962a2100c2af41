package simulator

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// route identifies an API operation.
type route struct {
	key     string // stats key, e.g. "GET /v1/Services/{id}"
	id      int64  // path id, when the route has one
	badID   bool   // path id present but not a positive integer
	known   bool   // the path exists
	allowed string // methods of the path, for 405
}

// match resolves a path case-insensitively.
func match(method, p string) route {
	lp := strings.TrimRight(strings.ToLower(p), "/")
	segs := strings.Split(strings.TrimPrefix(lp, "/"), "/")
	r := route{key: method + " " + lp}
	pathID := func(s string) {
		n, err := strconv.ParseInt(s, 10, 64)
		r.id, r.badID = n, err != nil || n <= 0
	}
	switch {
	case len(segs) == 2 && segs[0] == "v1" && segs[1] == "systemstatus":
		r.key, r.known, r.allowed = method+" /v1/SystemStatus", true, "GET"
	case len(segs) == 2 && segs[0] == "v1" && segs[1] == "services":
		r.key, r.known, r.allowed = method+" /v1/Services", true, "GET, POST"
	case len(segs) == 3 && segs[0] == "v1" && segs[1] == "services":
		r.key, r.known, r.allowed = method+" /v1/Services/{id}", true, "GET, PATCH"
		pathID(segs[2])
	case len(segs) == 2 && segs[0] == "v1" && segs[1] == "serviceproduct":
		r.key, r.known, r.allowed = method+" /v1/ServiceProduct", true, "GET, POST, DELETE"
	case len(segs) == 3 && segs[0] == "v1" && segs[1] == "serviceproduct":
		r.key, r.known, r.allowed = method+" /v1/ServiceProduct/{id}", true, "GET"
		pathID(segs[2])
	}
	return r
}

// Handler serves the API and the /admin endpoints.
func (s *Simulator) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/admin/", s.serveAdmin)
	mux.HandleFunc("/", s.serveAPI)
	return mux
}

// statusRecorder remembers the status for the statistics.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (s *Simulator) serveAPI(w http.ResponseWriter, r *http.Request) {
	rt := match(r.Method, r.URL.Path)
	rec := &statusRecorder{ResponseWriter: w}
	defer func() {
		if rec.status == 0 {
			return // the caller went away during a stall; nothing was answered
		}
		s.mu.Lock()
		s.stats.Statuses[rec.status]++
		switch rec.status {
		case http.StatusTooManyRequests:
			s.stats.RateLimited++
		case http.StatusUnauthorized:
			s.stats.AuthFailures++
		}
		s.mu.Unlock()
	}()

	s.mu.Lock()
	s.stats.Calls[rt.key]++
	s.stats.Total++
	faults := s.faults
	s.mu.Unlock()

	if faults.Latency > 0 && !s.sleep(r.Context(), faults.Latency) {
		return
	}

	// Gateway (APIM) checks first: subscription key, then the rate window.
	key := r.Header.Get("Ocp-Apim-Subscription-Key")
	switch {
	case key == "":
		writeJSON(
			rec,
			http.StatusUnauthorized,
			apimError{
				StatusCode: 401,
				Message:    "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.",
			},
		)
		return
	case !secretEqual(key, s.cfg.SubscriptionKey):
		writeJSON(
			rec,
			http.StatusUnauthorized,
			apimError{
				StatusCode: 401,
				Message:    "Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription.",
			},
		)
		return
	}

	s.mu.Lock()
	wait := s.admitLocked(s.now())
	limited := wait == 0 && s.chanceLocked(faults.RateLimitRate)
	if limited && s.cfg.CallsPerMinute >= 0 {
		// Answered 429, so it does not use up a slot of the window.
		s.window = s.window[:len(s.window)-1]
	}
	failed := wait == 0 && !limited && rt.known && s.chanceLocked(faults.ErrorRate)
	s.mu.Unlock()
	if wait > 0 || limited {
		secs := 1
		if wait > 0 {
			secs = int(math.Ceil(wait.Seconds()))
		}
		rec.Header().Set("Retry-After", strconv.Itoa(secs))
		writeJSON(
			rec,
			http.StatusTooManyRequests,
			apimError{StatusCode: 429, Message: fmt.Sprintf("Rate limit is exceeded. Try again in %d seconds.", secs)},
		)
		return
	}

	if !rt.known {
		writeJSON(rec, http.StatusNotFound, apimError{StatusCode: 404, Message: "Resource not found"})
		return
	}
	if !strings.Contains(", "+rt.allowed+",", ", "+r.Method+",") {
		rec.Header().Set("Allow", rt.allowed)
		writeJSON(
			rec,
			http.StatusMethodNotAllowed,
			revError{Message: "The requested resource does not support http method '" + r.Method + "'."},
		)
		return
	}

	if failed {
		// Alternate shapes so clients meet both a JSON and a text 5xx.
		if s.flip() {
			writeJSON(rec, http.StatusInternalServerError, revError{Message: "An error has occurred."})
		} else {
			rec.Header().Set("Content-Type", "text/plain; charset=utf-8")
			rec.WriteHeader(http.StatusServiceUnavailable)
			_, _ = rec.Write([]byte("Service Unavailable"))
		}
		return
	}

	if !s.basicOK(r.Header.Get("Authorization")) {
		rec.Header().Set("WWW-Authenticate", `Basic realm="Rev.io"`)
		writeJSON(rec, http.StatusUnauthorized, revError{Message: "Authorization has been denied for this request."})
		return
	}

	if rt.badID {
		badRequest(rec, "id", "the id in the path must be a positive integer")
		return
	}

	switch rt.key {
	case "GET /v1/SystemStatus":
		writeJSON(rec, http.StatusOK, map[string]any{"ok": true, "status": "Online"})
	case "POST /v1/Services":
		s.createService(rec, r, faults)
	case "GET /v1/Services":
		s.listServices(rec, r)
	case "GET /v1/Services/{id}":
		s.getService(rec, rt.id)
	case "PATCH /v1/Services/{id}":
		s.patchService(rec, r, rt.id)
	case "POST /v1/ServiceProduct":
		s.createServiceProduct(rec, r)
	case "GET /v1/ServiceProduct":
		s.listServiceProducts(rec, r)
	case "GET /v1/ServiceProduct/{id}":
		s.getServiceProduct(rec, rt.id)
	case "DELETE /v1/ServiceProduct":
		s.disconnectServiceProduct(rec, r)
	}
}

func (s *Simulator) flip() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rng.IntN(2) == 0
}

// sleep waits d unless the caller leaves or the simulator closes; it
// reports whether to carry on answering.
func (s *Simulator) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.closed:
		return true
	case <-ctx.Done():
		return false
	}
}

func secretEqual(got, want string) bool {
	if want == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// basicOK checks "Basic base64(login@clientcode:password)".
func (s *Simulator) basicOK(h string) bool {
	scheme, cred, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return false
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok || s.cfg.Login == "" || s.cfg.ClientCode == "" {
		return false
	}
	wantUser := s.cfg.Login + "@" + s.cfg.ClientCode
	return secretEqual(pass, s.cfg.Password) && strings.EqualFold(user, wantUser)
}

func today(now time.Time) string { return now.UTC().Format("2006-01-02") }

func (s *Simulator) createService(w http.ResponseWriter, r *http.Request, faults Faults) {
	s.mu.Lock()
	fail := s.chanceLocked(faults.FailCreateServiceRate)
	s.mu.Unlock()
	if fail {
		writeJSON(w, http.StatusInternalServerError, revError{Message: "An error has occurred."})
		return
	}
	o, ok := readObject(w, r)
	if !ok {
		return
	}
	if o.has("service_id") {
		badRequest(w, "service_id", "service_id must not be sent; Rev.io assigns it")
		return
	}
	if err := o.checkFields("customer_id", "provider_id", "service_type_id", "number", "number2",
		"activated_date", "effective_date", "disconnected_date", "package_id", "usage_plan_group_id",
		"description", "provider_account_id", "address_id", "contract_start_date", "contract_end_date",
		"fields"); err != nil {
		badRequest(w, "body", err.Error())
		return
	}
	rec := ServiceRecord{}
	var err error
	get := func(f func() error) {
		if err == nil {
			err = f()
		}
	}
	get(func() (e error) { rec.CustomerID, e = o.id("customer_id"); return })
	get(func() (e error) { rec.ProviderID, e = o.id("provider_id"); return })
	get(func() (e error) { rec.ServiceTypeID, e = o.id("service_type_id"); return })
	get(func() (e error) { rec.PackageID, e = o.id("package_id"); return })
	get(func() (e error) { rec.UsagePlanGroupID, e = o.id("usage_plan_group_id"); return })
	get(func() (e error) { rec.Number, e = o.str("number", 255); return })
	get(func() (e error) { rec.Number2, e = o.str("number2", 255); return })
	get(func() (e error) { rec.Description, e = o.str("description", 1000); return })
	get(func() (e error) { rec.ActivatedDate, e = o.date("activated_date"); return })
	get(func() (e error) { rec.EffectiveDate, e = o.date("effective_date"); return })
	get(func() (e error) { rec.DisconnectedDate, e = o.date("disconnected_date"); return })
	get(func() (e error) { _, e = o.id("provider_account_id"); return })
	get(func() (e error) { _, e = o.id("address_id"); return })
	if err != nil {
		badRequest(w, "body", err.Error())
		return
	}
	if rec.CustomerID == 0 {
		badRequest(w, "customer_id", "customer_id is required")
		return
	}

	s.mu.Lock()
	now := s.now()
	if rec.EffectiveDate == "" {
		rec.EffectiveDate = today(now)
	}
	rec.ServiceID = s.nextServiceID
	s.nextServiceID++
	rec.CreatedAt = now
	s.services[rec.ServiceID] = &rec
	stall := faults.StallCreateService
	if stall > 0 {
		s.stats.StalledCreates++
	}
	s.mu.Unlock()

	// The service exists from here on, whatever happens to this answer.
	if stall > 0 && !s.sleep(r.Context(), stall) {
		return
	}
	w.Header().Set("Location", fmt.Sprintf("/v1/Services/%d", rec.ServiceID))
	writeJSON(w, http.StatusCreated, createdBody{OK: true, ID: rec.ServiceID})
}

// paging reads page and page_size (with or without the search. prefix).
type paging struct{ page, size int }

// filters holds the query parameters with the optional "search." prefix
// removed and names lower-cased.
type filters map[string][]string

func readQuery(q url.Values) filters {
	f := filters{}
	for k, vs := range q {
		name := strings.ToLower(k)
		name = strings.TrimPrefix(name, "search.")
		f[name] = append(f[name], vs...)
	}
	return f
}

func (f filters) paging() (paging, error) {
	p := paging{page: 1, size: 10}
	if v := f["page_size"]; len(v) > 0 {
		n, err := strconv.Atoi(v[0])
		if err != nil || n < 1 {
			return p, fmt.Errorf("page_size must be an integer from 1 to 500")
		}
		p.size = min(n, 500)
	}
	if v := f["page"]; len(v) > 0 {
		n, err := strconv.Atoi(v[0])
		if err != nil || n < 1 {
			return p, fmt.Errorf("page must be a positive integer")
		}
		p.page = n
	}
	return p, nil
}

// ints parses an integer filter; nil means "no filter".
func (f filters) ints(name string) (map[int64]bool, error) {
	vs := f[name]
	if len(vs) == 0 {
		return nil, nil
	}
	out := make(map[int64]bool, len(vs))
	for _, v := range vs {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s must be an integer", name)
		}
		out[n] = true
	}
	return out, nil
}

func (f filters) strs(name string, fold bool) map[string]bool {
	vs := f[name]
	if len(vs) == 0 {
		return nil
	}
	out := make(map[string]bool, len(vs))
	for _, v := range vs {
		if fold {
			v = strings.ToUpper(v)
		}
		out[v] = true
	}
	return out
}

func matchInt(set map[int64]bool, v int64) bool   { return set == nil || set[v] }
func matchStr(set map[string]bool, v string) bool { return set == nil || set[v] }

// writePage answers a collection page of already filtered, sorted items.
func writePage[T any](w http.ResponseWriter, p paging, items []T) {
	if items == nil {
		items = []T{} // "records": [] rather than null
	}
	start := min((p.page-1)*p.size, len(items))
	end := min(start+p.size, len(items))
	writeJSON(w, http.StatusOK, collectionBody{
		OK:          true,
		HasMore:     end < len(items),
		RecordCount: end - start,
		Records:     items[start:end],
	})
}

func (s *Simulator) listServices(w http.ResponseWriter, r *http.Request) {
	f := readQuery(r.URL.Query())
	p, err := f.paging()
	if err != nil {
		badRequest(w, "page", err.Error())
		return
	}
	var cust, prov, stype map[int64]bool
	for _, x := range []struct {
		name string
		dst  *map[int64]bool
	}{{"customer_id", &cust}, {"provider_id", &prov}, {"service_type_id", &stype}} {
		if *x.dst, err = f.ints(x.name); err != nil {
			badRequest(w, x.name, err.Error())
			return
		}
	}
	num, num2 := f.strs("number", false), f.strs("number2", false)

	s.mu.Lock()
	var out []serviceOut
	for _, rec := range s.sortedServicesLocked() {
		if matchInt(cust, rec.CustomerID) && matchInt(prov, rec.ProviderID) && matchInt(stype, rec.ServiceTypeID) &&
			matchStr(num, rec.Number) && matchStr(num2, rec.Number2) {
			out = append(out, toServiceOut(rec))
		}
	}
	s.mu.Unlock()
	writePage(w, p, out)
}

func (s *Simulator) sortedServicesLocked() []*ServiceRecord {
	out := make([]*ServiceRecord, 0, len(s.services))
	for _, r := range s.services {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ServiceID < out[j].ServiceID })
	return out
}

func (s *Simulator) sortedProductsLocked() []*ServiceProductRecord {
	out := make([]*ServiceProductRecord, 0, len(s.products))
	for _, r := range s.products {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ServiceProductID < out[j].ServiceProductID })
	return out
}

func (s *Simulator) getService(w http.ResponseWriter, id int64) {
	s.mu.Lock()
	rec, ok := s.services[id]
	var out serviceOut
	if ok {
		out = toServiceOut(rec)
	}
	s.mu.Unlock()
	if !ok {
		notFound(w, fmt.Sprintf("Service %d was not found.", id))
		return
	}
	writeJSON(w, http.StatusOK, struct {
		OK bool `json:"ok"`
		serviceOut
	}{true, out})
}

type patchOp struct {
	Op    string          `json:"op"`
	Path  string          `json:"path"`
	Value json.RawMessage `json:"value"`
	From  string          `json:"from"`
}

func (s *Simulator) patchService(w http.ResponseWriter, r *http.Request, id int64) {
	if mediaType(r.Header.Get("Content-Type")) != "application/json-patch+json" {
		writeJSON(
			w,
			http.StatusUnsupportedMediaType,
			revError{Message: "Content-Type must be application/json-patch+json"},
		)
		return
	}
	body, err := readBody(r)
	if err != nil {
		badRequest(w, "body", err.Error())
		return
	}
	var ops []patchOp
	if err := json.Unmarshal(body, &ops); err != nil || len(ops) == 0 {
		badRequest(w, "body", "the body must be a non-empty JSON Patch array")
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.services[id]
	if !ok {
		notFound(w, fmt.Sprintf("Service %d was not found.", id))
		return
	}
	// Apply to a copy so that a rejected operation leaves nothing half done.
	next := *rec
	for i, op := range ops {
		var val string
		switch op.Op {
		case "add", "replace":
			if len(op.Value) == 0 {
				badRequest(w, op.Path, fmt.Sprintf("operation %d: value is required", i))
				return
			}
			if string(op.Value) != "null" {
				if err := json.Unmarshal(op.Value, &val); err != nil {
					badRequest(w, op.Path, fmt.Sprintf("operation %d: value must be a string", i))
					return
				}
			}
		case "remove":
		default:
			badRequest(w, op.Path, fmt.Sprintf("operation %d: op %q is not supported", i, op.Op))
			return
		}
		switch op.Path {
		case "/description":
			if len(val) > 1000 {
				badRequest(w, op.Path, "description is longer than 1000 characters")
				return
			}
			next.Description = val
		case "/disconnected_date", "/activated_date":
			d := ""
			if val != "" {
				var ok bool
				if d, ok = parseDate(val); !ok {
					badRequest(w, op.Path, op.Path[1:]+" is not a valid date")
					return
				}
			}
			if d != "" {
				if msg := s.datesAgreeLocked(id, op.Path[1:], d); msg != "" {
					badRequest(w, op.Path, msg)
					return
				}
			}
			if op.Path == "/disconnected_date" {
				next.DisconnectedDate = d
			} else {
				next.ActivatedDate = d
			}
		default:
			badRequest(w, op.Path, fmt.Sprintf("operation %d: path %q is not supported", i, op.Path))
			return
		}
	}
	*rec = next
	writeJSON(w, http.StatusOK, createdBody{OK: true, ID: id})
}

// datesAgreeLocked applies the documented rule: changing a service's
// activated or disconnected date needs every service product to carry the
// same date already.
func (s *Simulator) datesAgreeLocked(serviceID int64, field, d string) string {
	for _, p := range s.products {
		if p.ServiceID != serviceID {
			continue
		}
		switch field {
		case "disconnected_date":
			if p.Status != "DISCONNECTED" || p.CanceledDate != d {
				return fmt.Sprintf(
					"service product %d must be DISCONNECTED with canceled_date %s before the service's disconnected_date can be set",
					p.ServiceProductID,
					d,
				)
			}
		case "activated_date":
			if p.ActivatedDate != d {
				return fmt.Sprintf(
					"service product %d must have activated_date %s before the service's activated_date can be changed",
					p.ServiceProductID,
					d,
				)
			}
		}
	}
	return ""
}

func (s *Simulator) createServiceProduct(w http.ResponseWriter, r *http.Request) {
	o, ok := readObject(w, r)
	if !ok {
		return
	}
	if err := o.checkFields("service_id", "product_id", "customer_id", "rate", "quantity", "generate_proration",
		"effective_date", "activated_date", "package_id", "description", "cost", "tax_included",
		"group_on_bill", "itemized"); err != nil {
		badRequest(w, "body", err.Error())
		return
	}
	rec := ServiceProductRecord{Quantity: 1, Status: "ACTIVE"}
	var err error
	get := func(f func() error) {
		if err == nil {
			err = f()
		}
	}
	get(func() (e error) { rec.ServiceID, e = o.id("service_id"); return })
	get(func() (e error) { rec.ProductID, e = o.id("product_id"); return })
	get(func() (e error) { rec.CustomerID, e = o.id("customer_id"); return })
	get(func() (e error) { rec.PackageID, e = o.id("package_id"); return })
	get(func() (e error) { rec.Rate, e = o.decimal("rate"); return })
	get(func() (e error) { _, e = o.decimal("cost"); return })
	get(func() (e error) { rec.Description, e = o.str("description", 1000); return })
	get(func() (e error) { rec.EffectiveDate, e = o.date("effective_date"); return })
	get(func() (e error) { rec.ActivatedDate, e = o.date("activated_date"); return })
	get(func() (e error) {
		if !o.has("quantity") {
			return nil
		}
		q, e := o.id("quantity")
		if e == nil && (q < 1 || q > math.MaxInt32) {
			e = fmt.Errorf("quantity must be at least 1")
		}
		rec.Quantity = int(q)
		return e
	})
	get(func() (e error) {
		if !o.has("generate_proration") {
			return fmt.Errorf("generate_proration is required")
		}
		rec.GenerateProration, e = o.boolean("generate_proration")
		return
	})
	if err != nil {
		badRequest(w, "body", err.Error())
		return
	}
	for _, req := range []struct {
		name string
		v    int64
	}{{"service_id", rec.ServiceID}, {"product_id", rec.ProductID}, {"customer_id", rec.CustomerID}} {
		if req.v == 0 {
			badRequest(w, req.name, req.name+" is required")
			return
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	svc, ok := s.services[rec.ServiceID]
	switch {
	case !ok:
		badRequest(w, "service_id", fmt.Sprintf("service %d does not exist", rec.ServiceID))
		return
	case svc.CustomerID != rec.CustomerID:
		badRequest(
			w,
			"customer_id",
			fmt.Sprintf("service %d does not belong to customer %d", rec.ServiceID, rec.CustomerID),
		)
		return
	case svc.DisconnectedDate != "":
		badRequest(w, "service_id", fmt.Sprintf("service %d is disconnected", rec.ServiceID))
		return
	}
	now := s.now()
	if rec.ActivatedDate == "" {
		rec.ActivatedDate = today(now)
	}
	if rec.EffectiveDate == "" {
		rec.EffectiveDate = today(now)
	}
	rec.StatusDate = today(now)
	rec.CreatedAt = now
	rec.ServiceProductID = s.nextProductID
	s.nextProductID++
	s.products[rec.ServiceProductID] = &rec
	w.Header().Set("Location", fmt.Sprintf("/v1/ServiceProduct/%d", rec.ServiceProductID))
	writeJSON(w, http.StatusCreated, createdBody{OK: true, ID: rec.ServiceProductID})
}

func (s *Simulator) listServiceProducts(w http.ResponseWriter, r *http.Request) {
	f := readQuery(r.URL.Query())
	p, err := f.paging()
	if err != nil {
		badRequest(w, "page", err.Error())
		return
	}
	var svc, cust, prod map[int64]bool
	for _, x := range []struct {
		name string
		dst  *map[int64]bool
	}{{"service_id", &svc}, {"customer_id", &cust}, {"product_id", &prod}} {
		if *x.dst, err = f.ints(x.name); err != nil {
			badRequest(w, x.name, err.Error())
			return
		}
	}
	status := f.strs("status", true)

	s.mu.Lock()
	var out []serviceProductOut
	for _, rec := range s.sortedProductsLocked() {
		if matchInt(svc, rec.ServiceID) && matchInt(cust, rec.CustomerID) && matchInt(prod, rec.ProductID) &&
			matchStr(status, rec.Status) {
			out = append(out, toServiceProductOut(rec))
		}
	}
	s.mu.Unlock()
	writePage(w, p, out)
}

func (s *Simulator) getServiceProduct(w http.ResponseWriter, id int64) {
	s.mu.Lock()
	rec, ok := s.products[id]
	var out serviceProductOut
	if ok {
		out = toServiceProductOut(rec)
	}
	s.mu.Unlock()
	if !ok {
		notFound(w, fmt.Sprintf("Service product %d was not found.", id))
		return
	}
	writeJSON(w, http.StatusOK, struct {
		OK bool `json:"ok"`
		serviceProductOut
	}{true, out})
}

func (s *Simulator) disconnectServiceProduct(w http.ResponseWriter, r *http.Request) {
	o, ok := readObject(w, r)
	if !ok {
		return
	}
	if err := o.checkFields("service_product_id", "effective_date", "generate_proration"); err != nil {
		badRequest(w, "body", err.Error())
		return
	}
	id, err := o.id("service_product_id")
	if err == nil && id == 0 {
		err = fmt.Errorf("service_product_id is required")
	}
	var eff string
	if err == nil {
		eff, err = o.date("effective_date")
	}
	if err == nil && !o.has("generate_proration") {
		err = fmt.Errorf("generate_proration is required")
	}
	if err == nil {
		_, err = o.boolean("generate_proration")
	}
	if err != nil {
		badRequest(w, "body", err.Error())
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.products[id]
	if !ok {
		notFound(w, fmt.Sprintf("Service product %d was not found.", id))
		return
	}
	if rec.Status == "DISCONNECTED" {
		badRequest(w, "service_product_id", fmt.Sprintf("service product %d is already disconnected", id))
		return
	}
	now := s.now()
	if eff == "" {
		eff = today(now)
	}
	rec.Status = "DISCONNECTED"
	rec.StatusDate = today(now)
	rec.CanceledDate = eff
	writeJSON(w, http.StatusOK, createdBody{OK: true, ID: id})
}
