package activities

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"time"

	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/metrics"
	"github.com/iot-ops/tsbulk/revio"
	"github.com/iot-ops/tsbulk/thingspace"
)

// Auditor observes the HTTP clients: every exchange with ThingSpace and
// Rev.io goes to the audit log (bodies arrive redacted by the clients),
// under the bulk change and device change of the activity that made it, and
// to the metrics. Its methods are the clients' Observers.
type Auditor struct {
	Store   *db.Store
	Metrics *metrics.Metrics
	Logger  *slog.Logger
}

// exchange is what both clients report of one HTTP attempt.
type exchange struct {
	service, op, method, path string
	request, response         []byte
	status                    int
	code, err                 string
	attempt                   int
	started                   time.Time
	duration                  time.Duration
}

// ThingSpace observes the ThingSpace client.
func (au *Auditor) ThingSpace(ctx context.Context, x thingspace.Exchange) {
	status, failed := au.record(ctx, exchange{service: "thingspace", op: x.Op, method: x.Method, path: x.Path,
		request: x.RequestBody, response: x.ResponseBody, status: x.StatusCode, code: x.Code, err: x.Err,
		attempt: x.Attempt, started: x.Started, duration: x.Duration})
	if au.Metrics == nil {
		return
	}
	au.Metrics.ThingSpaceRequests.WithLabelValues(x.Op, status).Inc()
	if failed {
		code := thingspace.MetricCode(x.Code)
		if code == "" {
			code = status
		}
		au.Metrics.ThingSpaceErrors.WithLabelValues(x.Op, code).Inc()
	}
}

// Revio observes the Rev.io client.
func (au *Auditor) Revio(ctx context.Context, x revio.Exchange) {
	status, _ := au.record(ctx, exchange{service: "revio", op: x.Op, method: x.Method, path: x.Path,
		request: x.RequestBody, response: x.ResponseBody, status: x.StatusCode, err: x.Err,
		attempt: x.Attempt, started: x.Started, duration: x.Duration})
	if au.Metrics != nil {
		au.Metrics.RevioRequests.WithLabelValues(x.Op, status).Inc()
	}
}

// record writes the audit entry of one exchange and returns its status
// label ("error" when no answer came) and whether it failed.
func (au *Auditor) record(ctx context.Context, x exchange) (status string, failed bool) {
	status = "error"
	if x.status != 0 {
		status = strconv.Itoa(x.status)
	}
	failed = x.err != "" || x.status >= 400
	outcome := "ok"
	if failed {
		outcome = "error"
	}
	s := scopeOf(ctx)
	e := db.AuditEntry{
		BulkChangeID:   s.BulkChangeID,
		DeviceChangeID: s.DeviceChangeID,
		Service:        x.service,
		Operation:      x.op,
		Method:         x.method,
		Path:           x.path,
		RequestBody:    string(x.request),
		ResponseBody:   string(x.response),
		HTTPStatus:     x.status,
		Outcome:        outcome,
		ErrorCode:      x.code,
		ErrorMessage:   x.err,
		Attempt:        x.attempt,
		Duration:       x.duration,
		At:             x.started,
	}
	if x.service == "thingspace" {
		e.RequestID = requestIDOf(x.response)
	}
	// The exchange has happened; record it even if the activity's context
	// is being cancelled.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := au.Store.WriteAudit(wctx, e); err != nil {
		au.log().Warn("audit log write failed", "service", e.Service, "operation", e.Operation, "error", err)
	}
	return status, failed
}

func (au *Auditor) log() *slog.Logger {
	if au.Logger != nil {
		return au.Logger
	}
	return slog.Default()
}

// requestIDOf extracts ThingSpace's requestId from an answer, for the audit
// log.
func requestIDOf(body []byte) string {
	if len(body) == 0 || body[0] != '{' {
		return ""
	}
	var v struct {
		RequestID string `json:"requestId"`
	}
	_ = json.Unmarshal(body, &v)
	return v.RequestID
}
