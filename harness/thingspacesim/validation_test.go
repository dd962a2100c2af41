package thingspacesim

import (
	"net/http"
	"strings"
	"testing"
)

func TestActionValidation(t *testing.T) {
	h := newHarness(t, fastConfig())
	dev := h.seed(1, "active")[0]
	ref := refs(dev)
	cases := []struct {
		name, action string
		body         any
		code         string
	}{
		{"empty body", "suspend", "", CodeRequestUndefined},
		{"malformed JSON", "suspend", "{", CodeUnexpectedError},
		{"unknown member", "suspend", map[string]any{"devices": ref, "colour": "red"}, CodeUnexpectedError},
		{
			"member of another action",
			"suspend",
			map[string]any{"devices": ref, "reasonCode": "FF"},
			CodeUnexpectedError,
		},
		{"no devices", "suspend", map[string]any{"accountName": DefaultAccount}, CodeUnexpectedError},
		{"group selection", "suspend", map[string]any{"groupName": "g1"}, CodeUnexpectedError},
		{"devices plus group", "restore", map[string]any{"devices": ref, "groupName": "g1"}, CodeUnexpectedError},
		{
			"unknown account",
			"suspend",
			map[string]any{"devices": ref, "accountName": "0000000000-00000"},
			CodeAccountNotFound,
		},
		{
			"unknown kind",
			"suspend",
			map[string]any{"devices": []deviceRef{{DeviceIDs: []deviceID{{ID: dev, Kind: "serial"}}}}},
			CodeDeviceKindInvalid,
		},
		{
			"bad iccid",
			"suspend",
			map[string]any{"devices": []deviceRef{{DeviceIDs: []deviceID{{ID: "12AB", Kind: "iccid"}}}}},
			CodeDeviceIDInvalid,
		},
		{"device without ids", "suspend", map[string]any{"devices": []deviceRef{{}}}, CodeUnexpectedError},
		{
			"activate without plan",
			"activate",
			map[string]any{"devices": ref, "mdnZipCode": "98801"},
			CodeUnexpectedError,
		},
		{
			"activate bad zip",
			"activate",
			map[string]any{"devices": ref, "servicePlan": "p", "mdnZipCode": "9880"},
			CodeUnexpectedError,
		},
		{
			"activate bad custom field",
			"activate",
			map[string]any{"devices": ref, "servicePlan": "p", "mdnZipCode": "98801", "skuNumber": testSKU,
				"customFields": []customField{{Key: "Colour", Value: "x"}}},
			CodeCustomFieldName,
		},
		{
			"activate long custom field",
			"activate",
			map[string]any{"devices": ref, "servicePlan": "p", "mdnZipCode": "98801", "skuNumber": testSKU,
				"customFields": []customField{
					{Key: "CustomField2", Value: strings.Repeat("x", 51)},
				}},
			CodeCustomFieldTooLong,
		},
		{"activate PO box", "activate", map[string]any{"devices": ref, "servicePlan": "p", "mdnZipCode": "98801",
			"skuNumber": testSKU,
			"primaryPlaceOfUse": placeOfUse{CustomerName: customerName{FirstName: "A", LastName: "B"},
				Address: address{
					AddressLine1: "P.O. Box 12",
					City:         "C",
					State:        "WA",
					Zip:          "98801",
					Country:      "US",
				}}}, CodeUnexpectedError},
		{
			"deactivate without reason",
			"deactivate",
			map[string]any{"devices": ref, "accountName": DefaultAccount},
			CodeUnexpectedError,
		},
		{
			"deactivate without account",
			"deactivate",
			map[string]any{"devices": ref, "reasonCode": "FF"},
			CodeAccountNotDefined,
		},
		{"contactInfo without PPU", "contactInfo", map[string]any{"devices": ref}, CodeUnexpectedError},
		{"contactInfo foreign country", "contactInfo", map[string]any{"devices": ref,
			"primaryPlaceOfUse": placeOfUse{CustomerName: customerName{FirstName: "A", LastName: "B"},
				Address: address{
					AddressLine1: "1 Rue",
					City:         "Paris",
					State:        "IDF",
					Zip:          "75001",
					Country:      "FR",
				}}}, CodeUnexpectedError},
	}
	for _, c := range cases {
		method := http.MethodPost
		if c.action == "contactInfo" {
			method = http.MethodPut
		}
		status, body := h.m2m(method, "/devices/actions/"+c.action, c.body)
		if status != http.StatusBadRequest || decodeAs[errorBody](t, body).ErrorCode != c.code {
			t.Errorf("%s: got %d %s, want 400 %s", c.name, status, body, c.code)
		}
	}
	if d, _ := h.sim.Device(dev); d.State != StateActive || d.ActionsLast24h != 0 {
		t.Fatalf("invalid requests changed the device: %+v", d)
	}
	if st := h.sim.Stats(0); len(st.AcceptedChanges) != 0 {
		t.Fatalf("invalid requests counted as accepted: %v", st.AcceptedChanges)
	}
}

func TestActionAcceptsDocumentedFields(t *testing.T) {
	h := newHarness(t, fastConfig())
	devs := h.seed(2, "preactive")
	status, body := h.m2m(http.MethodPost, "/devices/actions/activate", map[string]any{
		"devices": refs(devs[0]), "accountName": DefaultAccount, "servicePlan": "m2m_4G", "mdnZipCode": "98801",
		"carrierName": "Verizon Wireless", "carrierIpPoolName": "pool", "costCenterCode": "cc", "leadId": "l",
		"publicIpRestriction": "restricted", "skuNumber": "sku", "groupName": "fleet",
		"customFields":      []customField{{Key: "CustomField1", Value: "v"}},
		"primaryPlaceOfUse": samplePPU(),
	})
	h.accepted(status, body)
	h.waitState(devs[0], StateActive)
	_, resp := h.list(
		map[string]any{"groupName": "fleet", "customFields": []customField{{Key: "CustomField1", Value: "v"}}},
	)
	if len(resp.Devices) != 1 || resp.Devices[0].GroupNames[0] != "fleet" {
		t.Fatalf("group/custom fields not stored: %+v", resp.Devices)
	}
	h.accepted(
		h.m2m(
			http.MethodPost,
			"/devices/actions/suspend",
			map[string]any{"devices": refs(devs[0]), "withBilling": true},
		),
	)
	h.waitState(devs[0], StateSuspend)
	h.accepted(h.m2m(http.MethodPost, "/devices/actions/deactivate", map[string]any{
		"devices": refs(
			devs[0],
		), "accountName": DefaultAccount, "reasonCode": "FF", "etfWaiver": false, "deleteAfterDeactivation": false}))
}

// ThingSpace refuses apostrophes, "<" and backslashes in a request
// (INPUT_INVALID.Request.InvalidCharacter in the synchronous error table):
// in any member of a place of use, on activate and on the contactInfo
// update, with nothing changed and the value not echoed back.
func TestPPUInvalidCharacters(t *testing.T) {
	h := newHarness(t, fastConfig())
	pre := h.seed(1, "preactive")[0]
	act := h.seed(1, "active")[0]
	cases := []struct {
		name   string
		modify func(*placeOfUse)
		member string
	}{
		{"apostrophe in last name", func(p *placeOfUse) { p.CustomerName.LastName = "O'Brien" }, "customerName.lastName"},
		{"less-than in address", func(p *placeOfUse) { p.Address.AddressLine1 = "1 Main St <b>" }, "address.addressLine1"},
		{"backslash in city", func(p *placeOfUse) { p.Address.City = `Wenatchee\East` }, "address.city"},
		{"apostrophe in line 2", func(p *placeOfUse) { p.Address.AddressLine2 = "Bldg 'C'" }, "address.addressLine2"},
		{"apostrophe in title", func(p *placeOfUse) { p.CustomerName.Title = "Ma'am" }, "customerName.title"},
		{"apostrophe in middle name", func(p *placeOfUse) { p.CustomerName.MiddleName = "D'Arcy" }, "customerName.middleName"},
	}
	for _, c := range cases {
		ppu := samplePPU()
		c.modify(&ppu)
		for _, call := range []struct {
			method, action string
			body           map[string]any
		}{
			{http.MethodPost, "activate", map[string]any{"devices": refs(pre), "servicePlan": "m2m_4G",
				"mdnZipCode": "98801", "primaryPlaceOfUse": ppu}},
			{http.MethodPut, "contactInfo", map[string]any{"devices": refs(act), "primaryPlaceOfUse": ppu}},
		} {
			status, body := h.m2m(call.method, "/devices/actions/"+call.action, call.body)
			e := decodeAs[errorBody](t, body)
			if status != http.StatusBadRequest || e.ErrorCode != CodeInvalidCharacter {
				t.Errorf("%s, %s: got %d %s, want 400 %s", c.name, call.action, status, body, CodeInvalidCharacter)
				continue
			}
			if !strings.Contains(e.ErrorMessage, c.member) {
				t.Errorf("%s, %s: message %q does not name %s", c.name, call.action, e.ErrorMessage, c.member)
			}
			for _, v := range []string{"Brien", "Main St", "East", "Bldg", "Ma'am", "Arcy"} {
				if strings.Contains(e.ErrorMessage, v) {
					t.Errorf("%s, %s: message %q echoes the place of use", c.name, call.action, e.ErrorMessage)
				}
			}
		}
	}
	if d, _ := h.sim.Device(pre); d.State != StatePreActive {
		t.Fatalf("refused activation changed the device: %+v", d)
	}
	if st := h.sim.Stats(0); len(st.AcceptedChanges) != 0 {
		t.Fatalf("refused requests counted as accepted: %v", st.AcceptedChanges)
	}
	// Other punctuation of names and addresses is taken.
	ppu := samplePPU()
	ppu.CustomerName.LastName = "Smith-Jones, Jr."
	ppu.Address.AddressLine1 = "100 Main St #4 & Co. (rear)"
	h.accepted(h.m2m(http.MethodPut, "/devices/actions/contactInfo",
		map[string]any{"devices": refs(act), "primaryPlaceOfUse": ppu}))
}
