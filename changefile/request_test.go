package changefile

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/iot-ops/tsbulk/change"
)

func TestBatchKey(t *testing.T) {
	activate := sampleActivation()
	deactivate := DeviceRequest{Row: 3, ICCID: iccidB, Operation: change.Deactivate, ReasonCode: "FF"}

	key := activate.BatchKey()
	assert.Len(t, key, 64)
	_, err := hex.DecodeString(key)
	assert.NoError(t, err, "hex")
	for _, v := range []string{"ada", "lovelace", "main", "wenatchee", "98801", "m2m"} {
		assert.NotContains(t, strings.ToLower(key), v)
	}

	same := func(name string, a, b DeviceRequest) {
		t.Helper()
		assert.Equal(t, a.BatchKey(), b.BatchKey(), name)
	}
	differ := func(name string, a, b DeviceRequest) {
		t.Helper()
		assert.NotEqual(t, a.BatchKey(), b.BatchKey(), name)
	}
	with := func(r DeviceRequest, f func(*DeviceRequest)) DeviceRequest {
		if r.PPU != nil {
			p := *r.PPU
			r.PPU = &p
		}
		f(&r)
		return r
	}

	// Per-device fields do not split a batch.
	same("other device, row, billing", activate, with(activate, func(r *DeviceRequest) {
		r.Row, r.ICCID, r.IMEI = 9, iccidC, ""
		r.Billing = &Billing{CustomerID: 7, ServiceTypeID: 8, ProductIDs: []int64{1}, Rates: []string{"1"}}
	}))
	same("equal PPU in another pointer", activate, with(activate, func(*DeviceRequest) {}))
	same("deactivate default reason", deactivate, with(deactivate, func(r *DeviceRequest) { r.ReasonCode = "" }))
	same(
		"suspend ignores activate fields",
		DeviceRequest{Operation: change.Suspend, ICCID: iccidA},
		DeviceRequest{Operation: change.Suspend, ICCID: iccidB, ServicePlan: "x"},
	)

	// Request-level fields do.
	differ("operation", DeviceRequest{Operation: change.Suspend}, DeviceRequest{Operation: change.Restore})
	differ("service plan", activate, with(activate, func(r *DeviceRequest) { r.ServicePlan = "m2m_5G" }))
	differ("mdn zip", activate, with(activate, func(r *DeviceRequest) { r.MdnZipCode = "98802" }))
	differ("no PPU", activate, with(activate, func(r *DeviceRequest) { r.PPU = nil }))
	differ(
		"empty PPU vs none",
		with(activate, func(r *DeviceRequest) { r.PPU = &PPU{} }),
		with(activate, func(r *DeviceRequest) { r.PPU = nil }),
	)
	for name, f := range map[string]func(*PPU){
		"first name": func(p *PPU) { p.FirstName = "Grace" },
		"last name":  func(p *PPU) { p.LastName = "Hopper" },
		"line 1":     func(p *PPU) { p.AddressLine1 = "101 Main St" },
		"line 2":     func(p *PPU) { p.AddressLine2 = "" },
		"city":       func(p *PPU) { p.City = "Seattle" },
		"state":      func(p *PPU) { p.State = "OR" },
		"zip":        func(p *PPU) { p.Zip = "98801-0001" },
		"country":    func(p *PPU) { p.Country = "US" },
	} {
		differ("PPU "+name, activate, with(activate, func(r *DeviceRequest) { f(r.PPU) }))
	}
	differ(
		"field boundaries",
		with(activate, func(r *DeviceRequest) { r.PPU.FirstName, r.PPU.LastName = "Ad", "aLovelace" }),
		activate,
	)
	differ("reason code", deactivate, with(deactivate, func(r *DeviceRequest) { r.ReasonCode = "AB" }))
	differ("etf waiver", deactivate, with(deactivate, func(r *DeviceRequest) { r.EtfWaiver = true }))
	differ("SKU", activate, with(activate, func(r *DeviceRequest) { r.SkuNumber = "SM-T387VZKAVZW" }))
	same("IMEI vs none, same SKU",
		with(activate, func(r *DeviceRequest) { r.SkuNumber = "S1" }),
		with(activate, func(r *DeviceRequest) { r.SkuNumber, r.IMEI = "S1", "" }))
	// The file's delete_after_deactivation, unset included: unset is
	// resolved by the worker when it sends, and a request carries one value.
	yes, no := true, false
	keep := with(deactivate, func(r *DeviceRequest) { r.DeleteAfterDeactivation = &no })
	remove := with(deactivate, func(r *DeviceRequest) { r.DeleteAfterDeactivation = &yes })
	differ("delete false vs unset", deactivate, keep)
	differ("delete true vs unset", deactivate, remove)
	differ("delete true vs false", remove, keep)
	also := true
	same("delete true in another pointer", remove, with(deactivate, func(r *DeviceRequest) { r.DeleteAfterDeactivation = &also }))
}
