// Package simulator is an in-memory stand-in for the Rev.io REST API, enough
// to run the billing step of bulk changes end to end: the two-header
// authentication, the 500 calls/min window of the APIM gateway, services,
// service products, paging, and injectable faults.
//
// It deliberately does not import package revio: it has its own wire types,
// so a contract test of the client against it catches a wrong field name,
// content type or status code instead of sharing the mistake.
//
// Where Rev.io's behaviour is unconfirmed the simulator makes a documented
// choice, often the stricter one, so that client mistakes surface here rather
// than in production:
//
//   - Paths are case-insensitive; a trailing slash is ignored.
//   - The subscription key is checked first (401 in Azure APIM's JSON form),
//     then the rate window, then the route (404/405), then faults, then
//     HTTP Basic (401). Only the Ocp-Apim-Subscription-Key header is
//     accepted, not APIM's subscription-key query parameter: keys in URLs
//     end up in logs. The Basic user id "login@clientcode" is compared
//     case-insensitively, the password exactly.
//   - Calls with a missing or wrong subscription key do not count towards the
//     rate window (APIM cannot attribute them); every other call does,
//     except the ones answered 429.
//   - Request bodies must be JSON objects (application/json or text/json)
//     whose fields are documented ones with the right JSON types; unknown
//     fields are rejected with 400 because the real API would silently drop
//     them (a misspelt "generate_proration" would bill the wrong way).
//     Ids must be JSON numbers.
//   - POST /v1/Services requires customer_id and provider_id (both marked
//     required in the reference, postv1_services; absent, null or 0 is a
//     400 naming the field) and limits number and number2 to 255
//     characters, description to 1000. Lengths count characters as .NET
//     does (UTF-16 code units), not bytes.
//   - Dates are accepted as yyyy-mm-dd, yyyy-mm-ddZ or RFC 3339 and stored as
//     the date; they are answered as "yyyy-mm-ddT00:00:00" (the .NET
//     date-time form the docs' date-time type suggests) or null.
//   - Validation errors (400) are a JSON array of {ok,id,error,message}
//     (the shape Altaworx parsed); 404/401/415 are {"ok":false,"message"};
//     gateway errors are APIM's {"statusCode","message"}; injected 503s are
//     plain text.
//   - page_size above 500 is capped at 500; below 1, or page below 1, is a
//     400. Repeated filter parameters match any of their values; unknown
//     filters are ignored.
//   - POST /v1/ServiceProduct requires generate_proration, a service that
//     exists, is not disconnected and belongs to customer_id.
//     Quantity defaults to 1. Packages do not add products.
//   - DELETE /v1/ServiceProduct of a product already DISCONNECTED is a 400
//     (idempotency is not promised by the docs).
//   - PATCH /v1/Services/{id} supports add/replace/remove of /description,
//     /activated_date and /disconnected_date; setting a date requires every
//     service product of the service to carry the same date already
//     (disconnected_date: DISCONNECTED with that canceled_date).
package reviosim

import (
	"sync"
	"time"

	"github.com/iot-ops/tsbulk/harness/simrand"
)

// Config configures a Simulator. Empty credentials never match, so every
// call is refused with 401.
type Config struct {
	Login           string
	ClientCode      string
	Password        string
	SubscriptionKey string
	// CallsPerMinute is the rolling-minute limit, default 500; negative
	// turns the limit off. Calls over it are answered 429 with Retry-After.
	CallsPerMinute int
	Faults         Faults
	// Seed makes the fault draws reproducible.
	Seed int64
}

// Faults are injected failures. Rates are fractions in [0,1].
type Faults struct {
	// ErrorRate answers this fraction of calls 500 or 503 before processing.
	ErrorRate float64
	// RateLimitRate answers this fraction of calls 429 with Retry-After: 1.
	RateLimitRate float64
	// Latency delays every API call.
	Latency time.Duration
	// StallCreateService makes POST /v1/Services create the service, then
	// wait this long before answering, so a test can kill the caller between
	// Rev.io's create and the caller recording the id. 0 is off.
	StallCreateService time.Duration
	// FailCreateServiceRate answers this fraction of POST /v1/Services 500
	// before creating anything.
	FailCreateServiceRate float64
}

// ServiceRecord is a service as stored. Dates are yyyy-mm-dd or "".
type ServiceRecord struct {
	ServiceID        int64     `json:"service_id"`
	CustomerID       int64     `json:"customer_id"`
	ProviderID       int64     `json:"provider_id"`
	ServiceTypeID    int64     `json:"service_type_id"`
	PackageID        int64     `json:"package_id"`
	UsagePlanGroupID int64     `json:"usage_plan_group_id"`
	Number           string    `json:"number"`
	Number2          string    `json:"number2"`
	ActivatedDate    string    `json:"activated_date"`
	EffectiveDate    string    `json:"effective_date"`
	DisconnectedDate string    `json:"disconnected_date"`
	Description      string    `json:"description"`
	CreatedAt        time.Time `json:"created_at"`
}

// ServiceProductRecord is a service product as stored. Rate is the decimal
// text received.
type ServiceProductRecord struct {
	ServiceProductID  int64     `json:"service_product_id"`
	ServiceID         int64     `json:"service_id"`
	ProductID         int64     `json:"product_id"`
	CustomerID        int64     `json:"customer_id"`
	PackageID         int64     `json:"package_id"`
	Rate              string    `json:"rate"`
	Quantity          int       `json:"quantity"`
	Status            string    `json:"status"`
	StatusDate        string    `json:"status_date"`
	ActivatedDate     string    `json:"activated_date"`
	EffectiveDate     string    `json:"effective_date"`
	CanceledDate      string    `json:"canceled_date"`
	GenerateProration bool      `json:"generate_proration"`
	Description       string    `json:"description"`
	CreatedAt         time.Time `json:"created_at"`
}

// Stats counts API calls (admin calls are not counted).
type Stats struct {
	// Calls by "METHOD /route", e.g. "POST /v1/Services",
	// "GET /v1/Services/{id}"; unknown routes use the lower-cased path.
	Calls map[string]int `json:"calls"`
	// Statuses counts answers by HTTP status.
	Statuses map[int]int `json:"statuses"`
	// RateLimited counts 429 answers (window and injected).
	RateLimited int `json:"rate_limited"`
	// AuthFailures counts 401 answers (subscription key or Basic).
	AuthFailures int `json:"auth_failures"`
	Total        int `json:"total"`
	// StalledCreates counts services created under StallCreateService
	// (their answer held back, or never sent when the caller gave up).
	StalledCreates int `json:"stalled_creates"`
}

// First ids differ by range so a service id passed where a service product
// id is expected (or the reverse) hits a 404 instead of the wrong record.
const (
	firstServiceID        = 100001
	firstServiceProductID = 700001
)

// Simulator is an in-memory Rev.io. It is safe for concurrent use.
type Simulator struct {
	cfg Config

	mu            sync.Mutex
	faults        Faults
	rng           simrand.Rand
	services      map[int64]*ServiceRecord
	products      map[int64]*ServiceProductRecord
	nextServiceID int64
	nextProductID int64
	window        []time.Time // accepted calls of the last minute, oldest first
	stats         Stats

	now       func() time.Time // replaced in tests to move the rate window
	closed    chan struct{}
	closeOnce sync.Once
}

// New returns a Simulator with no data.
func New(cfg Config) *Simulator {
	if cfg.CallsPerMinute == 0 {
		cfg.CallsPerMinute = 500
	}
	s := &Simulator{
		cfg:    cfg,
		faults: cfg.Faults,
		rng:    simrand.New(uint64(cfg.Seed), 0x5e7e_0f_7e5b),
		now:    time.Now,
		closed: make(chan struct{}),
	}
	s.resetLocked()
	return s
}

func (s *Simulator) resetLocked() {
	s.services = make(map[int64]*ServiceRecord)
	s.products = make(map[int64]*ServiceProductRecord)
	s.nextServiceID = firstServiceID
	s.nextProductID = firstServiceProductID
	s.window = nil
	s.stats = Stats{Calls: map[string]int{}, Statuses: map[int]int{}}
}

// Reset drops all data, statistics and the rate window, and restores the
// faults of the Config.
func (s *Simulator) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetLocked()
	s.faults = s.cfg.Faults
}

// SetFaults replaces the injected faults; calls already waiting keep theirs.
func (s *Simulator) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
}

// CurrentFaults returns the faults in force.
func (s *Simulator) CurrentFaults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// Services returns copies of all services, disconnected ones included,
// sorted by id.
func (s *Simulator) Services() []ServiceRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return copies(byID(s.services))
}

// ServiceProducts returns copies of all service products sorted by id.
func (s *Simulator) ServiceProducts() []ServiceProductRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return copies(byID(s.products))
}

// copies returns copies of the records, for callers outside the lock.
func copies[T any](recs []*T) []T {
	out := make([]T, len(recs))
	for i, r := range recs {
		out[i] = *r
	}
	return out
}

// Stats returns a copy of the call statistics.
func (s *Simulator) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.stats
	out.Calls = make(map[string]int, len(s.stats.Calls))
	for k, v := range s.stats.Calls {
		out.Calls[k] = v
	}
	out.Statuses = make(map[int]int, len(s.stats.Statuses))
	for k, v := range s.stats.Statuses {
		out.Statuses[k] = v
	}
	return out
}

// Close releases calls waiting on Latency or StallCreateService so that an
// HTTP server can shut down promptly. The Simulator keeps answering.
func (s *Simulator) Close() {
	s.closeOnce.Do(func() { close(s.closed) })
}

// admitLocked applies the rolling-minute window. It returns 0 when the call
// is admitted (and counted), or how long until a slot frees up.
func (s *Simulator) admitLocked(now time.Time) time.Duration {
	if s.cfg.CallsPerMinute < 0 {
		return 0
	}
	cutoff := now.Add(-time.Minute)
	i := 0
	for i < len(s.window) && !s.window[i].After(cutoff) {
		i++
	}
	s.window = s.window[i:]
	if len(s.window) >= s.cfg.CallsPerMinute {
		return s.window[0].Add(time.Minute).Sub(now)
	}
	s.window = append(s.window, now)
	return 0
}
