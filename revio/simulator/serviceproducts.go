package simulator

// The ServiceProduct resource: POST, GET (list and one) and DELETE
// /v1/ServiceProduct.

import (
	"fmt"
	"math"
	"net/http"
)

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
	f, p, ids, ok := readListQuery(w, r, "service_id", "customer_id", "product_id")
	if !ok {
		return
	}
	svc, cust, prod := ids[0], ids[1], ids[2]
	status := f.strs("status", true)

	s.mu.Lock()
	var out []serviceProductOut
	for _, rec := range byID(s.products) {
		if matchInt(svc, rec.ServiceID) && matchInt(cust, rec.CustomerID) && matchInt(prod, rec.ProductID) &&
			matchStr(status, rec.Status) {
			out = append(out, toServiceProductOut(rec))
		}
	}
	s.mu.Unlock()
	writePage(w, p, out)
}
func (s *Simulator) getServiceProduct(w http.ResponseWriter, id int64) {
	writeRecord(s, w, s.products, id, toServiceProductOut, "Service product %d was not found.")
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
