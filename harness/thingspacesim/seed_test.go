package thingspacesim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iot-ops/tsbulk/luhn"
)

func TestGenerateDevices(t *testing.T) {
	seeds := GenerateDevices(1000, "8914800000", "active")
	if len(seeds) != 1000 {
		t.Fatalf("got %d seeds", len(seeds))
	}
	iccids, imeis := map[string]bool{}, map[string]bool{}
	for _, sd := range seeds {
		if len(sd.ICCID) != 20 || !strings.HasPrefix(sd.ICCID, "8914800000") || !luhn.Valid(sd.ICCID) {
			t.Fatalf("bad ICCID %q", sd.ICCID)
		}
		if len(sd.IMEI) != 15 || !luhn.Valid(sd.IMEI) {
			t.Fatalf("bad IMEI %q", sd.IMEI)
		}
		if iccids[sd.ICCID] || imeis[sd.IMEI] {
			t.Fatalf("duplicate id in %+v", sd)
		}
		iccids[sd.ICCID], imeis[sd.IMEI] = true, true
		if sd.State != "active" {
			t.Fatalf("state %q", sd.State)
		}
	}
	// Different prefixes give disjoint IMEIs (the product keys on them too).
	other := GenerateDevices(1000, "8914811111", "")
	for _, sd := range other {
		if imeis[sd.IMEI] {
			t.Fatalf("IMEI %s repeats across prefixes", sd.IMEI)
		}
	}
	if n := len(GenerateDevices(50, "891480000000000000", "")); n != 9 {
		t.Fatalf("an 18-digit prefix leaves room for 9 devices, got %d", n)
	}
}

func TestLoadSeedFile(t *testing.T) {
	dir := t.TempDir()
	csvPath := filepath.Join(dir, "devices.csv")
	csvData := "ICCID, imei ,state,msisdn,account,fail_with,added_at\n" +
		"89148000000000000084,350000000000026,active,2065550101,,,2024-05-01T10:42:15.123-04:00\n" +
		"89148000000000000092,,pre-active,,0000123456-00001,REQUEST_FAILED.DeviceNotFound,\n"
	if err := os.WriteFile(csvPath, []byte(csvData), 0o600); err != nil {
		t.Fatal(err)
	}
	seeds, err := LoadSeedFile(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(seeds) != 2 || seeds[0].IMEI != "350000000000026" || seeds[0].MSISDN != "2065550101" ||
		seeds[1].FailWith == "" ||
		seeds[1].State != "pre-active" ||
		!seeds[0].AddedAt.Equal(time.Date(2024, 5, 1, 14, 42, 15, 123e6, time.UTC)) || !seeds[1].AddedAt.IsZero() {
		t.Fatalf("csv seeds %+v", seeds)
	}
	jsonPath := filepath.Join(dir, "devices.json")
	jsonData := ` [{"iccid":"89148000000000000100","state":"suspend","fail_with":"x"}]`
	if err := os.WriteFile(jsonPath, []byte(jsonData), 0o600); err != nil {
		t.Fatal(err)
	}
	seeds, err = LoadSeedFile(jsonPath)
	if err != nil || len(seeds) != 1 || seeds[0].State != "suspend" || seeds[0].FailWith != "x" {
		t.Fatalf("json seeds %+v %v", seeds, err)
	}
	sim := New(fastConfig())
	defer sim.Close()
	all, _ := LoadSeedFile(csvPath)
	if err := sim.Seed(all...); err != nil {
		t.Fatal(err)
	}
	if d, _ := sim.Device("89148000000000000092"); d.State != StatePreActive {
		t.Fatalf("pre-active seed: %+v", d)
	}

	bad := map[string]string{
		"no-iccid.csv":   "imei,state\n350000000000026,active\n",
		"unknown.csv":    "iccid,colour\n89148000000000000084,red\n",
		"empty-id.csv":   "iccid,state\n,active\n",
		"bad-time.csv":   "iccid,added_at\n89148000000000000084,yesterday\n",
		"no-iccid.json":  `[{"imei":"350000000000026"}]`,
		"unknown.json":   `[{"iccid":"89148000000000000084","colour":"red"}]`,
		"not-array.json": `{"iccid":"1"}`,
	}
	for name, data := range bad {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadSeedFile(p); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
	if _, err := LoadSeedFile(filepath.Join(dir, "missing.csv")); err == nil {
		t.Error("missing file: want an error")
	}
}

func TestSeedValidation(t *testing.T) {
	sim := New(fastConfig())
	defer sim.Close()
	bad := []DeviceSeed{
		{ICCID: ""},
		{ICCID: "89148000000000000118", State: "sleeping"},
		{ICCID: "89148000000000000118", State: "pending activation"},
		{ICCID: "89148000000000000118", Account: "elsewhere"},
		{ICCID: "89148000000000000118", State: "preactive", MSISDN: "2065550100"},
		{ICCID: "89148000000000000118", State: "active", MSISDN: "123"},
	}
	for _, sd := range bad {
		if err := sim.Seed(sd); err == nil {
			t.Errorf("seed %+v: want an error", sd)
		}
	}
	if err := sim.Seed(DeviceSeed{ICCID: "89148000000000000118"}, DeviceSeed{ICCID: "89148000000000000118"}); err == nil {
		t.Error("duplicate within a batch accepted")
	}
	if len(sim.Devices()) != 0 {
		t.Fatal("a failed batch added devices")
	}
	if err := sim.Seed(DeviceSeed{ICCID: "89148000000000000118", State: "Suspended"}); err != nil {
		t.Fatal(err)
	}
	d, _ := sim.Device("89148000000000000118")
	if d.State != StateSuspend || len(d.MSISDN) != 10 || d.ActivatedAt.IsZero() || d.Account != DefaultAccount {
		t.Fatalf("seeded %+v", d)
	}
	if err := sim.Seed(DeviceSeed{ICCID: "89148000000000000126", State: "active", MSISDN: d.MSISDN}); err == nil {
		t.Error("duplicate MSISDN accepted")
	}
}
