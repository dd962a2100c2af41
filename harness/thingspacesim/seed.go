package thingspacesim

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"strings"
	"time"

	"github.com/iot-ops/tsbulk/luhn"
)

// DeviceSeed describes a device to put in the simulator's inventory.
type DeviceSeed struct {
	ICCID   string `json:"iccid"`
	IMEI    string `json:"imei,omitempty"`
	Account string `json:"account,omitempty"` // "" → default account
	State   string `json:"state,omitempty"`   // preactive|active|suspend|deactive ("pre-active" too); default preactive
	MSISDN  string `json:"msisdn,omitempty"`  // active/suspend only; generated when empty
	// FailWith makes every state change of this device fail with this
	// fault code (a bare "REQUEST_FAILED.X" gets the UnifiedWebService
	// prefix).
	FailWith string `json:"fail_with,omitempty"`
	// AddedAt is the device's createdAt (millisecond precision). Zero: 1 ms
	// after the device added before it. Devices are kept in the order
	// added, so it must not be earlier than the newest device's; several
	// seeds with the same AddedAt were added at the same instant, which is
	// how tests make ties for paging by "earliest".
	AddedAt time.Time `json:"added_at,omitzero"`
}

// Seed adds devices. It checks the whole batch first and adds nothing when
// any seed is invalid: unknown account or state, a duplicate ICCID, IMEI or
// MSISDN, or an MSISDN on a device that cannot have one.
func (s *Simulator) Seed(devs ...DeviceSeed) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{} // "iccid:", "imei:", "msisdn:" + value, within this batch
	devices := make([]*device, 0, len(devs))
	for i, sd := range devs {
		d, err := s.seedDeviceLocked(sd, seen)
		if err != nil {
			return fmt.Errorf("seed %d (iccid %q): %w", i, sd.ICCID, err)
		}
		devices = append(devices, d)
	}
	added, err := s.store.planAddedLocked(devs, time.Now())
	if err != nil {
		return err
	}
	for i, d := range devices {
		hasNumber := d.state == StateActive || d.state == StateSuspend
		if hasNumber && d.msisdn == "" {
			d.msisdn = s.store.allocMSISDNLocked()
		}
		s.store.placeLocked(d, added[i])
		if hasNumber {
			d.activatedAt = d.createdAt
		}
	}
	return nil
}

func (s *Simulator) seedDeviceLocked(sd DeviceSeed, seen map[string]bool) (*device, error) {
	iccid := strings.TrimSpace(sd.ICCID)
	if !luhn.AllDigits(iccid) || len(iccid) > 22 {
		return nil, errors.New("iccid must be digits (at most 22)")
	}
	if s.store.byICCID[iccid] != nil || seen["iccid:"+iccid] {
		return nil, errors.New("duplicate iccid")
	}
	seen["iccid:"+iccid] = true
	imei := strings.TrimSpace(sd.IMEI)
	if imei != "" {
		if !luhn.AllDigits(imei) || len(imei) > 16 {
			return nil, errors.New("imei must be digits (at most 16)")
		}
		if s.store.byIMEI[imei] != nil || seen["imei:"+imei] {
			return nil, fmt.Errorf("duplicate imei %q", imei)
		}
		seen["imei:"+imei] = true
	}
	account := strings.TrimSpace(sd.Account)
	if account == "" {
		account = s.defaultAccount()
	} else if !s.accountExists(account) {
		return nil, fmt.Errorf("unknown account %q", account)
	}
	state := StatePreActive
	if strings.TrimSpace(sd.State) != "" {
		st, ok := normalizeState(sd.State)
		if !ok || strings.HasPrefix(st, "pending") {
			return nil, fmt.Errorf("unknown state %q (want preactive, active, suspend or deactive)", sd.State)
		}
		state = st
	}
	msisdn := strings.TrimSpace(sd.MSISDN)
	if msisdn != "" {
		if state != StateActive && state != StateSuspend {
			return nil, fmt.Errorf("msisdn given for a %s device; only active and suspended devices have one", state)
		}
		if !luhn.AllDigits(msisdn) || len(msisdn) != 10 {
			return nil, errors.New("msisdn must be 10 digits")
		}
		if s.store.byMSISDN[msisdn] != nil || seen["msisdn:"+msisdn] {
			return nil, fmt.Errorf("duplicate msisdn %q", msisdn)
		}
		seen["msisdn:"+msisdn] = true
	}
	d := &device{
		iccid:    iccid,
		imei:     imei,
		account:  account,
		state:    state,
		msisdn:   msisdn,
		failWith: normalizeFaultCode(sd.FailWith),
	}
	if state == StateActive || state == StateSuspend {
		d.servicePlan = defaultServicePlan
	}
	return d, nil
}

// planAddedLocked decides the createdAt of each seed of a batch, checking
// them all before any is added: a seed's AddedAt as given, else 1 ms after
// the device before it. A batch without AddedAt is back-dated so that its
// createdAt values end around now rather than in the future.
func (st *deviceStore) planAddedLocked(devs []DeviceSeed, now time.Time) ([]time.Time, error) {
	out := make([]time.Time, len(devs))
	start := now.Add(-time.Duration(len(devs)) * time.Millisecond)
	last := st.lastCreated
	for i, sd := range devs {
		t := sd.AddedAt.Truncate(time.Millisecond)
		switch {
		case sd.AddedAt.IsZero():
			t = start.Add(time.Duration(i) * time.Millisecond).Truncate(time.Millisecond)
			if !t.After(last) {
				t = last.Add(time.Millisecond)
			}
		case t.Before(last):
			return nil, fmt.Errorf("seed %d (iccid %q): added_at %s is before the newest device's createdAt %s "+
				"(devices are kept in the order added)", i, sd.ICCID,
				t.Format(time.RFC3339Nano), last.Format(time.RFC3339Nano))
		}
		out[i], last = t, t
	}
	return out, nil
}

// normalizeFaultCode gives a bare code the UnifiedWebService prefix.
func normalizeFaultCode(code string) string {
	code = strings.TrimSpace(code)
	if strings.HasPrefix(code, "REQUEST_FAILED.") || strings.HasPrefix(code, "INPUT_INVALID.") {
		return "UnifiedWebService." + code
	}
	return code
}

// seedColumns are the columns of a CSV seed file (lowercase header).
var seedColumns = []string{"iccid", "imei", "state", "msisdn", "account", "fail_with", "added_at"}

// LoadSeedFile reads device seeds from a CSV file (header row with some of
// iccid,imei,state,msisdn,account,fail_with,added_at (RFC 3339); iccid
// required) or a JSON file
// (an array of objects with the same keys). A file whose first non-blank
// character is '[' is read as JSON.
func LoadSeedFile(path string) ([]DeviceSeed, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '[' {
		return parseSeedJSON(t)
	}
	return parseSeedCSV(data)
}

func parseSeedJSON(data []byte) ([]DeviceSeed, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var seeds []DeviceSeed
	if err := dec.Decode(&seeds); err != nil {
		return nil, fmt.Errorf("seed JSON: %w", err)
	}
	for i, sd := range seeds {
		if strings.TrimSpace(sd.ICCID) == "" {
			return nil, fmt.Errorf("seed JSON: entry %d has no iccid", i)
		}
	}
	return seeds, nil
}

func parseSeedCSV(data []byte) ([]DeviceSeed, error) {
	r := csv.NewReader(bytes.NewReader(data))
	r.TrimLeadingSpace = true
	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("seed CSV header: %w", err)
	}
	col := map[string]int{}
	for i, h := range header {
		name := strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		known := false
		for _, c := range seedColumns {
			known = known || c == name
		}
		if !known {
			return nil, fmt.Errorf("seed CSV: unknown column %q (known: %s)", h, strings.Join(seedColumns, ","))
		}
		col[name] = i
	}
	if _, ok := col["iccid"]; !ok {
		return nil, errors.New("seed CSV: header has no iccid column")
	}
	var seeds []DeviceSeed
	for line := 2; ; line++ {
		rec, err := r.Read()
		if err == io.EOF {
			return seeds, nil
		}
		if err != nil {
			return nil, fmt.Errorf("seed CSV: %w", err)
		}
		get := func(name string) string {
			if i, ok := col[name]; ok && i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		sd := DeviceSeed{ICCID: get("iccid"), IMEI: get("imei"), State: get("state"),
			MSISDN: get("msisdn"), Account: get("account"), FailWith: get("fail_with")}
		if sd.ICCID == "" {
			return nil, fmt.Errorf("seed CSV line %d: empty iccid", line)
		}
		if v := get("added_at"); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return nil, fmt.Errorf("seed CSV line %d: added_at %q is not an RFC 3339 date-time", line, v)
			}
			sd.AddedAt = t
		}
		seeds = append(seeds, sd)
	}
}

// GenerateDevices makes n device seeds in the given state ("" → preactive).
// ICCIDs are 20 digits: the prefix's digits (at most 18 kept), a counter
// from 1, and a Luhn check digit. IMEIs are 15 digits: "35", three digits
// derived from the prefix, the counter's last nine digits, and a Luhn check
// digit. When n exceeds what the counter width can hold, fewer seeds are
// returned.
func GenerateDevices(n int, prefix string, state string) []DeviceSeed {
	var kept strings.Builder
	for _, r := range prefix {
		if r >= '0' && r <= '9' && kept.Len() < 18 {
			kept.WriteRune(r)
		}
	}
	p := kept.String()
	width := 19 - len(p)
	capacity := 1
	for range width {
		if capacity > 1e12 {
			break
		}
		capacity *= 10
	}
	if n > capacity-1 {
		n = capacity - 1
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(p))
	tag := fmt.Sprintf("%03d", h.Sum32()%1000)
	seeds := make([]DeviceSeed, 0, max(n, 0))
	for i := 1; i <= n; i++ {
		body := p + fmt.Sprintf("%0*d", width, i)
		imeiBody := "35" + tag + fmt.Sprintf("%09d", i%1_000_000_000)
		seeds = append(seeds, DeviceSeed{
			ICCID: body + string(luhn.CheckDigit(body)),
			IMEI:  imeiBody + string(luhn.CheckDigit(imeiBody)),
			State: state,
		})
	}
	return seeds
}
