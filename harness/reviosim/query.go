package reviosim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

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

// byID lists the records of m (keyed by their id) in id order.
func byID[T any](m map[int64]*T) []*T {
	ids := make([]int64, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := make([]*T, 0, len(ids))
	for _, id := range ids {
		out = append(out, m[id])
	}
	return out
}

// writeMatching answers page p of the records of m that keep accepts, in
// id order and in their wire form. The records are read under the lock, the
// answer is written after it.
func writeMatching[T, Out any](
	s *Simulator,
	w http.ResponseWriter,
	p paging,
	m map[int64]*T,
	keep func(*T) bool,
	wire func(*T) Out,
) {
	s.mu.Lock()
	var out []Out
	for _, rec := range byID(m) {
		if keep(rec) {
			out = append(out, wire(rec))
		}
	}
	s.mu.Unlock()
	writePage(w, p, out)
}

// writeRecord answers the record of m with that id in its wire form after
// "ok": true, as Rev.io answers one record, or 404 with missing (a format
// taking the id) when there is none.
func writeRecord[T, Out any](
	s *Simulator,
	w http.ResponseWriter,
	m map[int64]*T,
	id int64,
	wire func(*T) Out,
	missing string,
) {
	s.mu.Lock()
	rec, ok := m[id]
	var out Out
	if ok {
		out = wire(rec)
	}
	s.mu.Unlock()
	if !ok {
		notFound(w, fmt.Sprintf(missing, id))
		return
	}
	b, err := json.Marshal(out)
	if err != nil {
		http.Error(w, "encoding answer", http.StatusInternalServerError)
		return
	}
	writeJSON(w, http.StatusOK, json.RawMessage(append([]byte(`{"ok":true,`), b[1:]...)))
}

// readListQuery reads the paging and the integer filters names of a list
// request, in that order; it answers 400 and reports false on the first
// bad one.
func readListQuery(w http.ResponseWriter, r *http.Request, names ...string) (filters, paging, []map[int64]bool, bool) {
	f := readQuery(r.URL.Query())
	p, err := f.paging()
	if err != nil {
		badRequest(w, "page", err.Error())
		return nil, p, nil, false
	}
	ids := make([]map[int64]bool, len(names))
	for i, name := range names {
		if ids[i], err = f.ints(name); err != nil {
			badRequest(w, name, err.Error())
			return nil, p, nil, false
		}
	}
	return f, p, ids, true
}
