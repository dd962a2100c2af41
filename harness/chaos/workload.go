package chaos

import (
	"encoding/csv"
	"fmt"
	"math/rand/v2"
	"os"

	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
)

// Category is the kind of device a row of the mixed bulk change is about;
// it fixes what the run must end with.
type Category string

// The categories of the mixed bulk change, as an operator's spreadsheet has
// them: mostly activations with PPU and billing, and a bit of everything
// else, including rows that must fail.
const (
	CatActivateBilled  Category = "activate-billed"   // pre-active, PPU, Rev.io service line
	CatActivatePlain   Category = "activate-unbilled" // pre-active, PPU, no billing data
	CatActivateActive  Category = "activate-already-active"
	CatActivateUnknown Category = "activate-unknown" // ThingSpace does not know the device: must fail
	CatSuspend         Category = "suspend"
	CatRestore         Category = "restore"
	CatDeactivate      Category = "deactivate"
	CatInventory       Category = "inventory"
)

// share is a category's part of the bulk change, in percent, with the
// ThingSpace state its devices are seeded in ("" = not seeded).
var shares = []struct {
	cat    Category
	pct    int
	op     string
	seed   string
	prefix string
}{
	{CatActivateBilled, 42, "activate", "preactive", "891480071"},
	{CatActivatePlain, 6, "activate", "preactive", "891480072"},
	{CatActivateActive, 3, "activate", "active", "891480073"},
	{CatActivateUnknown, 2, "activate", "", "891480074"},
	{CatSuspend, 15, "suspend", "active", "891480075"},
	{CatRestore, 12, "restore", "suspend", "891480076"},
	{CatDeactivate, 12, "deactivate", "active", "891480077"},
	{CatInventory, 8, "inventory", "", "891480078"},
}

// Device is one row of the bulk change and what must come of it.
type Device struct {
	ICCID, IMEI string
	Operation   string
	Category    Category
	Billed      bool
	Site        int    // index into Workload.Sites for activations
	SeedState   string // ThingSpace state before the run ("" = unknown to ThingSpace)
}

// Site is a Primary Place of Use. Devices of a site share their activation
// requests. The values are made up and distinctive, so that finding one in
// a log or a history cannot be a coincidence.
type Site struct {
	FirstName, LastName, Line1, Line2, City, State, Zip string
}

// Workload is the mixed bulk change of a run.
type Workload struct {
	Devices []Device
	Seeds   []tssim.DeviceSeed // devices ThingSpace knows before the run
	Sites   []Site
}

// Billing data of every billed activation: one product keeps Rev.io's 500
// calls a minute from dominating the run's wall time (two calls per device).
var billing = map[string]string{"rev_customer_id": "7301", "rev_service_type_id": "12", "rev_provider_id": "5",
	"rev_product_ids": "3001", "rev_rates": "11.25"}

var columns = []string{"iccid", "imei", "operation", "service_plan", "mdn_zip_code", "reason_code",
	"ppu_first_name", "ppu_last_name", "ppu_address_line1", "ppu_address_line2", "ppu_city", "ppu_state", "ppu_zip", "ppu_country",
	"rev_customer_id", "rev_service_type_id", "rev_provider_id", "rev_product_ids", "rev_rates"}

// NewWorkload makes a mixed bulk change of n devices. The same seed gives
// the same devices in the same order.
func NewWorkload(n int, seed int64) Workload {
	rng := rand.New(rand.NewPCG(uint64(seed), 0xc4a05))
	w := Workload{Sites: makeSites(12)}
	left := n
	for i, sh := range shares {
		k := n * sh.pct / 100
		if i == len(shares)-1 {
			k = left
		}
		left -= k
		for j, d := range tssim.GenerateDevices(k, sh.prefix, sh.seed) {
			dev := Device{ICCID: d.ICCID, IMEI: d.IMEI, Operation: sh.op, Category: sh.cat, SeedState: sh.seed,
				Billed: sh.cat == CatActivateBilled || sh.cat == CatActivateActive || (sh.cat == CatActivateUnknown && j%2 == 0)}
			if sh.op == "activate" {
				dev.Site = rng.IntN(len(w.Sites))
			}
			w.Devices = append(w.Devices, dev)
			if sh.seed != "" {
				w.Seeds = append(w.Seeds, d)
			}
		}
	}
	// Interleave operations, as an operator's spreadsheet would.
	rng.Shuffle(len(w.Devices), func(i, j int) { w.Devices[i], w.Devices[j] = w.Devices[j], w.Devices[i] })
	return w
}

func makeSites(n int) []Site {
	first := []string{"Ottoline", "Barnaby", "Philippa", "Leopold", "Wilhelmina", "Ignatius"}
	last := []string{"Quillfeather", "Brindlecombe", "Ashgrove-Tate", "Vantongeren"}
	streets := []string{"Marigold Terrace", "Wexcombe Parkway", "Larkspur Crescent", "Tollbridge Row"}
	cities := []struct{ city, state, zip string }{
		{"Wenatchee", "WA", "98801"}, {"Bozeman", "MT", "59715"}, {"Ithaca", "NY", "14850"}, {"Durango", "CO", "81301"},
	}
	out := make([]Site, n)
	for i := range out {
		c := cities[i%len(cities)]
		out[i] = Site{
			FirstName: first[i%len(first)], LastName: fmt.Sprintf("%s%d", last[i%len(last)], i),
			Line1: fmt.Sprintf("%d %s", 4711+i*37, streets[i%len(streets)]), City: c.city, State: c.state, Zip: c.zip,
		}
		if i%3 == 0 {
			out[i].Line2 = fmt.Sprintf("Unit Q%02d", i)
		}
	}
	return out
}

// PPUValues are the personal values of the file that must never leave
// device_changes.ppu: names and address lines.
func (w Workload) PPUValues() []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range w.Sites {
		for _, v := range []string{s.FirstName, s.LastName, s.Line1, s.Line2} {
			if v != "" && !seen[v] {
				seen[v] = true
				out = append(out, v)
			}
		}
	}
	return out
}

// Count is the number of devices per category.
func (w Workload) Count() map[Category]int {
	out := map[Category]int{}
	for _, d := range w.Devices {
		out[d.Category]++
	}
	return out
}

// WriteCSV writes the bulk change file.
func (w Workload) WriteCSV(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	cw := csv.NewWriter(f)
	_ = cw.Write(columns)
	for _, d := range w.Devices {
		r := map[string]string{"iccid": d.ICCID, "imei": d.IMEI, "operation": d.Operation}
		switch d.Operation {
		case "activate":
			s := w.Sites[d.Site]
			for k, v := range map[string]string{"service_plan": "m2m_4G", "mdn_zip_code": s.Zip, "ppu_first_name": s.FirstName,
				"ppu_last_name": s.LastName, "ppu_address_line1": s.Line1, "ppu_address_line2": s.Line2, "ppu_city": s.City,
				"ppu_state": s.State, "ppu_zip": s.Zip, "ppu_country": "USA"} {
				r[k] = v
			}
			if d.Billed {
				for k, v := range billing {
					r[k] = v
				}
			}
		case "deactivate":
			r["reason_code"] = "FF"
		}
		rec := make([]string, len(columns))
		for i, c := range columns {
			rec[i] = r[c]
		}
		_ = cw.Write(rec)
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
