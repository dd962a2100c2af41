package reviosim

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
	rd := fieldReader{o: o}
	rec := ServiceProductRecord{
		Quantity:   1,
		Status:     "ACTIVE",
		ServiceID:  rd.id("service_id"),
		ProductID:  rd.id("product_id"),
		CustomerID: rd.id("customer_id"),
		PackageID:  rd.id("package_id"),
		Rate:       rd.decimal("rate"),
	}
	// Checked like Rev.io does, but not kept.
	rd.decimal("cost")
	rec.Description = rd.str("description", 1000)
	rec.EffectiveDate = rd.date("effective_date")
	rec.ActivatedDate = rd.date("activated_date")
	rd.check(func() error {
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
	rec.GenerateProration = rd.requiredBool("generate_proration")
	if rd.err != nil {
		badRequest(w, "body", rd.err.Error())
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
	writeCreated(w, "/v1/ServiceProduct", rec.ServiceProductID)
}

func (s *Simulator) listServiceProducts(w http.ResponseWriter, r *http.Request) {
	f, p, ids, ok := readListQuery(w, r, "service_id", "customer_id", "product_id")
	if !ok {
		return
	}
	svc, cust, prod := ids[0], ids[1], ids[2]
	status := f.strs("status", true)

	writeMatching(s, w, p, s.products, func(rec *ServiceProductRecord) bool {
		return matchInt(svc, rec.ServiceID) && matchInt(cust, rec.CustomerID) && matchInt(prod, rec.ProductID) &&
			matchStr(status, rec.Status)
	}, toServiceProductOut)
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
	rd := fieldReader{o: o}
	id := rd.requiredID("service_product_id")
	eff := rd.date("effective_date")
	rd.requiredBool("generate_proration")
	if rd.err != nil {
		badRequest(w, "body", rd.err.Error())
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
