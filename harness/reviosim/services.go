package reviosim

// The Services resource: POST, GET (list and one) and PATCH /v1/Services.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

func today(now time.Time) string { return now.UTC().Format("2006-01-02") }

func (s *Simulator) createService(w http.ResponseWriter, r *http.Request, faults Faults) {
	s.mu.Lock()
	fail := s.rng.Chance(faults.FailCreateServiceRate)
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
	rd := fieldReader{o: o}
	rec := ServiceRecord{
		CustomerID:       rd.id("customer_id"),
		ProviderID:       rd.id("provider_id"),
		ServiceTypeID:    rd.id("service_type_id"),
		PackageID:        rd.id("package_id"),
		UsagePlanGroupID: rd.id("usage_plan_group_id"),
		Number:           rd.str("number", 255),
		Number2:          rd.str("number2", 255),
		Description:      rd.str("description", 1000),
		ActivatedDate:    rd.date("activated_date"),
		EffectiveDate:    rd.date("effective_date"),
		DisconnectedDate: rd.date("disconnected_date"),
	}
	// Checked like Rev.io does, but not kept.
	rd.id("provider_account_id")
	rd.id("address_id")
	if rd.err != nil {
		badRequest(w, "body", rd.err.Error())
		return
	}
	// Both ids are required by the reference (postv1_services), int32.
	if rec.CustomerID == 0 {
		badRequest(w, "customer_id", "customer_id is required")
		return
	}
	if rec.ProviderID == 0 {
		badRequest(w, "provider_id", "provider_id is required")
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
	writeCreated(w, "/v1/Services", rec.ServiceID)
}

func (s *Simulator) listServices(w http.ResponseWriter, r *http.Request) {
	f, p, ids, ok := readListQuery(w, r, "customer_id", "provider_id", "service_type_id")
	if !ok {
		return
	}
	cust, prov, stype := ids[0], ids[1], ids[2]
	num, num2 := f.strs("number", false), f.strs("number2", false)

	writeMatching(s, w, p, s.services, func(rec *ServiceRecord) bool {
		return matchInt(cust, rec.CustomerID) && matchInt(prov, rec.ProviderID) && matchInt(stype, rec.ServiceTypeID) &&
			matchStr(num, rec.Number) && matchStr(num2, rec.Number2)
	}, toServiceOut)
}

func (s *Simulator) getService(w http.ResponseWriter, id int64) {
	writeRecord(s, w, s.services, id, toServiceOut, "Service %d was not found.")
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
