package thingspacesim

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/iot-ops/tsbulk/harness/simrand"
)

// Simulator is a ThingSpace M2M API simulator. All methods are safe for
// concurrent use.
type Simulator struct {
	cfg     Config // with defaults; immutable after New
	log     *slog.Logger
	handler http.Handler
	client  *http.Client // callback deliveries

	ctx       context.Context // cancelled by Close: aborts stalls and deliveries
	cancel    context.CancelFunc
	wg        sync.WaitGroup // scheduler and delivery workers
	closeOnce sync.Once
	wake      chan struct{} // tells the scheduler an earlier event exists

	// mu guards everything below. One lock keeps the state machine, the
	// limits and the statistics consistent with each other; handlers do
	// their parsing and I/O outside it.
	mu        sync.Mutex
	closed    bool
	limits    Limits
	faults    Faults
	rng       simrand.Rand
	auth      authState
	store     deviceStore
	requests  map[string]*request
	listeners map[listenerKey]callbackRegistration
	windows   map[string]*accountWindows
	stats     statsState
	events    eventHeap
	eventSeq  uint64
	queue     deliveryQueue
	queueCond *sync.Cond
	cbLog     []DeliveryLogEntry
	burst     throttleBurst
}

// New returns a simulator with cfg's zero values replaced by defaults. It
// starts background goroutines: call Close when done.
func New(cfg Config) *Simulator {
	cfg = cfg.withDefaults()
	seed := cfg.Seed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	ctx, cancel := context.WithCancel(context.Background())
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = cfg.CallbackConcurrency
	s := &Simulator{
		cfg:       cfg,
		log:       cfg.Logger,
		client:    &http.Client{Transport: transport},
		ctx:       ctx,
		cancel:    cancel,
		wake:      make(chan struct{}, 1),
		limits:    cfg.Limits,
		faults:    cfg.Faults,
		rng:       simrand.New(uint64(seed), uint64(seed)^0x9e3779b97f4a7c15),
		auth:      newAuthState(),
		store:     newDeviceStore(),
		requests:  map[string]*request{},
		listeners: map[listenerKey]callbackRegistration{},
		windows:   map[string]*accountWindows{},
		stats:     newStatsState(),
	}
	s.queueCond = sync.NewCond(&s.mu)
	s.handler = s.routes()
	s.wg.Add(1 + cfg.CallbackConcurrency)
	go s.runScheduler()
	for range cfg.CallbackConcurrency {
		go s.deliveryWorker()
	}
	return s
}

// Handler serves the ThingSpace API and the /admin/ endpoints.
func (s *Simulator) Handler() http.Handler { return s.handler }

// Close stops pending completions and callback deliveries and waits for the
// background goroutines. Devices left in a pending state stay there. Safe
// to call more than once; the handler keeps answering afterwards but
// schedules nothing.
func (s *Simulator) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.events = nil
		s.queue = deliveryQueue{}
		s.queueCond.Broadcast()
		s.mu.Unlock()
		s.cancel()
		s.wg.Wait()
		s.client.CloseIdleConnections()
	})
}

// SetFaults replaces the fault configuration.
func (s *Simulator) SetFaults(f Faults) {
	s.mu.Lock()
	s.faults = f.sanitized()
	s.mu.Unlock()
}

// SetLimits replaces the limits; zero fields take their defaults, as in
// Config.
func (s *Simulator) SetLimits(l Limits) {
	s.mu.Lock()
	s.limits = l.withDefaults()
	s.mu.Unlock()
}

func (s *Simulator) currentFaults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

func (s *Simulator) currentLimits() Limits {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limits
}

func (s *Simulator) defaultAccount() string { return s.cfg.Accounts[0] }

func (s *Simulator) accountExists(name string) bool {
	for _, a := range s.cfg.Accounts {
		if a == name {
			return true
		}
	}
	return false
}

// routes builds the mux. Paths are those of the reference digest.
func (s *Simulator) routes() http.Handler {
	mux := http.NewServeMux()
	const m2m = "/api/m2m/v1"
	api := func(pattern string, auth authLevel, h apiHandler) {
		mux.Handle(pattern, s.wrap(pattern, auth, h))
	}
	api("POST /api/ts/v1/oauth2/token", authNone, s.handleToken)
	api("POST /api/ts/v1/oauth2/revoke", authNone, s.handleRevoke)
	api("POST "+m2m+"/session/login", authBearer, s.handleLogin)
	api("POST "+m2m+"/session/logout", authSession, s.handleLogout)
	for _, a := range []string{ActionActivate, ActionSuspend, ActionRestore, ActionDeactivate} {
		api("POST "+m2m+"/devices/actions/"+a, authSession, s.actionHandler(a))
	}
	api("PUT "+m2m+"/devices/actions/contactInfo", authSession, s.actionHandler(ActionContactInfo))
	api("POST "+m2m+"/devices/actions/add", authSession, s.handleAdd)
	api("POST "+m2m+"/devices/actions/list", authSession, s.handleList)
	api("GET "+m2m+"/accounts/{account}/requests/{requestId}/status", authSession, s.handleRequestStatus)
	api("POST "+m2m+"/callbacks/{account}", authSession, s.handleRegisterCallback)
	api("GET "+m2m+"/callbacks/{account}", authSession, s.handleListCallbacks)
	api("DELETE "+m2m+"/callbacks/{account}/name/{serviceName}", authSession, s.handleDeleteCallback)
	// Anything else under the API answers like the WSO2 gateway does for an
	// unknown resource (wrong method included).
	api("/", authNone, func(*call) reply { return unknownResourceFault() })
	s.adminRoutes(mux)
	return mux
}
