package thingspacesim

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// defaultServicePlan is the plan of seeded active/suspended devices (seeds
// carry no plan).
const defaultServicePlan = "m2m_4G"

type device struct {
	id           int64 // internal numeric id, in the order added: the largestDeviceIdSeen cursor
	iccid, imei  string
	account      string
	state        string
	msisdn       string // also reported as mdn and min
	servicePlan  string
	groupName    string
	customFields []customField
	ppu          *placeOfUse
	createdAt    time.Time // millisecond precision; never earlier than the previous device's
	activatedAt  time.Time
	activatedBy  string
	updatedAt    time.Time
	pendingReq   string
	failWith     string
	actions      []time.Time // accepted state changes, for the per-line daily limit
	// removed: deactivated with deleteAfterDeactivation; gone from the
	// account (API) and kept only for the admin views.
	removed bool
}

// deviceStore holds devices in the order added, which is also id order and
// createdAt order (devices added at the same instant in id order): both list
// orderings are the slice order.
type deviceStore struct {
	list        []*device
	byICCID     map[string]*device
	byIMEI      map[string]*device
	byMSISDN    map[string]*device
	nextID      int64
	lastCreated time.Time
	nextMSISDN  int64
	retired     map[string]bool // released MSISDNs: held, never handed out again
	// removed holds devices deleted after their deactivation, by ICCID:
	// the API no longer knows them, the admin views still show them.
	removed map[string]*device
}

// firstMSISDN starts the number range handed out by activations: ten
// digits, a valid-looking NANP area code.
const firstMSISDN = 3125550000

func newDeviceStore() deviceStore {
	return deviceStore{
		byICCID:    map[string]*device{},
		byIMEI:     map[string]*device{},
		byMSISDN:   map[string]*device{},
		nextID:     1,
		nextMSISDN: firstMSISDN,
		retired:    map[string]bool{},
		removed:    map[string]*device{},
	}
}

// DeviceSnapshot is a copy of one device's state.
type DeviceSnapshot struct {
	ICCID            string    `json:"iccid"`
	IMEI             string    `json:"imei,omitempty"`
	Account          string    `json:"account"`
	State            string    `json:"state"`
	MSISDN           string    `json:"msisdn,omitempty"`
	ActivatedAt      time.Time `json:"activated_at,omitzero"`
	UpdatedAt        time.Time `json:"updated_at,omitzero"`
	PendingRequestID string    `json:"pending_request_id,omitempty"`
	ActionsLast24h   int       `json:"actions_last_24h"`
	// Removed: the device was deactivated with deleteAfterDeactivation
	// and is no longer in the account's inventory; State is its last
	// state (deactive).
	Removed bool `json:"removed,omitempty"`
}

func (d *device) snapshot(now time.Time) DeviceSnapshot {
	return DeviceSnapshot{
		ICCID: d.iccid, IMEI: d.imei, Account: d.account, State: d.state, MSISDN: d.msisdn,
		ActivatedAt: d.activatedAt, UpdatedAt: d.updatedAt, PendingRequestID: d.pendingReq,
		ActionsLast24h: d.actionsSince(now.Add(-24 * time.Hour)), Removed: d.removed,
	}
}

// actionsSince counts accepted state changes after t.
func (d *device) actionsSince(t time.Time) int {
	i := sort.Search(len(d.actions), func(i int) bool { return d.actions[i].After(t) })
	return len(d.actions) - i
}

func (d *device) pruneActions(now time.Time) {
	cut := now.Add(-24 * time.Hour)
	i := sort.Search(len(d.actions), func(i int) bool { return d.actions[i].After(cut) })
	d.actions = d.actions[i:]
}

// Device returns a snapshot of the device with that ICCID: the one in an
// account, else the one removed after its deactivation (Removed set).
func (s *Simulator) Device(iccid string) (DeviceSnapshot, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.store.byICCID[iccid]
	if !ok {
		if d, ok = s.store.removed[iccid]; !ok {
			return DeviceSnapshot{}, false
		}
	}
	return d.snapshot(time.Now()), true
}

// Devices returns snapshots of all devices, sorted by ICCID: those in an
// account, and those removed after their deactivation (Removed set) whose
// ICCID was not added again since.
func (s *Simulator) Devices() []DeviceSnapshot {
	s.mu.Lock()
	now := time.Now()
	out := make([]DeviceSnapshot, 0, len(s.store.list)+len(s.store.removed))
	for _, d := range s.store.list {
		out = append(out, d.snapshot(now))
	}
	for iccid, d := range s.store.removed {
		if s.store.byICCID[iccid] == nil {
			out = append(out, d.snapshot(now))
		}
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ICCID < out[j].ICCID })
	return out
}

// insertLocked adds a new device and gives it the next id and a createdAt
// strictly after the previous device's (ms apart).
func (st *deviceStore) insertLocked(d *device, created time.Time) {
	created = created.Truncate(time.Millisecond)
	if !created.After(st.lastCreated) {
		created = st.lastCreated.Add(time.Millisecond)
	}
	st.placeLocked(d, created)
}

// placeLocked adds a new device with the next id and that createdAt, which
// must not be before the previous device's (equal: added at the same
// instant).
func (st *deviceStore) placeLocked(d *device, created time.Time) {
	st.lastCreated = created
	d.id = st.nextID
	st.nextID++
	d.createdAt = created
	if d.updatedAt.IsZero() {
		d.updatedAt = created
	}
	st.list = append(st.list, d)
	st.byICCID[d.iccid] = d
	if d.imei != "" {
		st.byIMEI[d.imei] = d
	}
	if d.msisdn != "" {
		st.byMSISDN[d.msisdn] = d
	}
}

// allocMSISDNLocked hands out a ten-digit number never used before.
func (st *deviceStore) allocMSISDNLocked() string {
	for {
		n := fmt.Sprintf("%010d", st.nextMSISDN)
		st.nextMSISDN++
		if st.nextMSISDN > 9999999999 {
			st.nextMSISDN = 2000000000
		}
		if st.byMSISDN[n] == nil && !st.retired[n] {
			return n
		}
	}
}

func (st *deviceStore) assignMSISDNLocked(d *device) {
	d.msisdn = st.allocMSISDNLocked()
	st.byMSISDN[d.msisdn] = d
}

// releaseMSISDNLocked frees a deactivated device's number. Verizon holds it
// for 50 days; the simulator never reuses it, so re-activation always
// yields a different number.
func (st *deviceStore) releaseMSISDNLocked(d *device) {
	if d.msisdn == "" {
		return
	}
	delete(st.byMSISDN, d.msisdn)
	st.retired[d.msisdn] = true
	d.msisdn = ""
}

// removeLocked takes a device out of its account's inventory
// (deleteAfterDeactivation): list pages, lookups and requests no longer
// find it. Its number was released by the deactivation.
func (st *deviceStore) removeLocked(d *device) {
	i := sort.Search(len(st.list), func(i int) bool { return st.list[i].id >= d.id })
	if i < len(st.list) && st.list[i] == d {
		st.list = append(st.list[:i], st.list[i+1:]...)
	}
	if st.byICCID[d.iccid] == d {
		delete(st.byICCID, d.iccid)
	}
	if d.imei != "" && st.byIMEI[d.imei] == d {
		delete(st.byIMEI, d.imei)
	}
	if d.msisdn != "" && st.byMSISDN[d.msisdn] == d {
		delete(st.byMSISDN, d.msisdn)
	}
	d.removed = true
	st.removed[d.iccid] = d
}

// resolveLocked finds the device a request entry names: the first
// identifier that names a device of the request's account wins (account ""
// means any of the user's accounts). When none does, foreign says whether
// one names a device of another account, which ThingSpace refuses with
// Device.Account.Invalid rather than DeviceNotFound (S-cberr).
func (st *deviceStore) resolveLocked(ref deviceRef, account string) (d *device, foreign bool) {
	for _, id := range ref.DeviceIDs {
		var found *device
		switch strings.ToLower(id.Kind) {
		case kindICCID:
			found = st.byICCID[id.ID]
		case kindIMEI:
			found = st.byIMEI[id.ID]
		case kindMDN, kindMSISDN, kindMIN:
			found = st.byMSISDN[id.ID]
		}
		if found == nil {
			continue
		}
		if account == "" || found.account == account {
			return found, false
		}
		foreign = true
	}
	return nil, foreign
}

// wireIDs lists the device's identifiers the way list entries and callback
// payloads show them: iccid, imei and, while it has a number, mdn, msisdn
// and min with the same value.
func (d *device) wireIDs() []deviceID {
	ids := []deviceID{{ID: d.iccid, Kind: kindICCID}}
	if d.imei != "" {
		ids = append(ids, deviceID{ID: d.imei, Kind: kindIMEI})
	}
	if d.msisdn != "" {
		ids = append(ids,
			deviceID{ID: d.msisdn, Kind: kindMDN},
			deviceID{ID: d.msisdn, Kind: kindMSISDN},
			deviceID{ID: d.msisdn, Kind: kindMIN})
	}
	return ids
}

// envelopeIDs are the callback envelope's deviceIds: ICCID and IMEI, so the
// listener can always match by ICCID whatever identifier the request used.
func (d *device) envelopeIDs() []deviceID {
	ids := []deviceID{{ID: d.iccid, Kind: kindICCID}}
	if d.imei != "" {
		ids = append(ids, deviceID{ID: d.imei, Kind: kindIMEI})
	}
	return ids
}

// normalizeState maps the spellings accepted in seeds and filters to the
// simulator's state strings; ok is false for unknown names.
func normalizeState(s string) (string, bool) {
	k := strings.NewReplacer(" ", "", "-", "", "_", "").Replace(strings.ToLower(strings.TrimSpace(s)))
	switch k {
	case "preactive":
		return StatePreActive, true
	case "active":
		return StateActive, true
	case "suspend", "suspended":
		return StateSuspend, true
	case "deactive", "deactivated":
		return StateDeactive, true
	case "pendingactivation":
		return StatePendingActivation, true
	case "pendingsuspend":
		return StatePendingSuspend, true
	case "pendingresume":
		return StatePendingResume, true
	case "pendingdeactivation":
		return StatePendingDeactivation, true
	}
	return "", false
}
