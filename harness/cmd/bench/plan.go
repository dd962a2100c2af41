package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	tssim "github.com/iot-ops/tsbulk/harness/thingspacesim"
)

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func parseMix(s string) (map[string]int, error) {
	out := map[string]int{}
	total := 0
	for _, part := range strings.Split(s, ",") {
		op, pct, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.Atoi(pct)
		if !ok || err != nil || n < 0 {
			return nil, fmt.Errorf("-mix: %q is not op=percent", part)
		}
		out[op] = n
		total += n
	}
	if total != 100 {
		return nil, fmt.Errorf("-mix adds up to %d%%, not 100%%", total)
	}
	return out, nil
}

// benchSKU is the 4G device SKU of the benchmark's activations.
const benchSKU = "BENCH-4G-SKU"

// seedState is the state a device must be in for the operation.
var seedState = map[string]string{"activate": "preactive", "suspend": "active", "restore": "suspend", "deactivate": "active", "inventory": ""}

var opOrder = []string{"activate", "suspend", "restore", "deactivate", "inventory"}

// plan makes the devices of one account: per operation its share, seeded
// in the state the operation needs.
func plan(o options, prefix string, account string) (rows [][2]string, seeds []tssim.DeviceSeed) {
	for i, op := range opOrder {
		n := o.devices * o.mix[op] / 100
		if i == len(opOrder)-1 {
			n = o.devices - len(rows)
		}
		devs := tssim.GenerateDevices(n, fmt.Sprintf("%s%d", prefix, i), seedState[op])
		for _, d := range devs {
			rows = append(rows, [2]string{d.ICCID, op})
			if seedState[op] != "" {
				d.Account = account
				seeds = append(seeds, d)
			}
		}
	}
	return rows, seeds
}

func sampleRows(rows [][2]string, n int) [][2]string {
	if n >= len(rows) {
		return rows
	}
	// Keep the mix: every k-th device.
	out := make([][2]string, 0, n)
	step := float64(len(rows)) / float64(n)
	for i := 0; i < n; i++ {
		out = append(out, rows[int(float64(i)*step)])
	}
	return out
}

func mixText(mix map[string]int) string {
	var parts []string
	for _, op := range opOrder {
		if mix[op] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d%%", op, mix[op]))
		}
	}
	return strings.Join(parts, ", ")
}

func writeFile(rows [][2]string) (string, error) {
	f, err := os.CreateTemp("", "bench-*.csv")
	if err != nil {
		return "", err
	}
	defer f.Close()
	// Devices are named by ICCID alone, so activations carry the SKU in
	// lieu of the IMEI; one SKU for all keeps one batch per plan.
	fmt.Fprintln(f, "iccid,operation,service_plan,mdn_zip_code,sku_number")
	for _, r := range rows {
		if r[1] == "activate" {
			fmt.Fprintf(f, "%s,%s,m2m_4G,98801,%s\n", r[0], r[1], benchSKU)
		} else {
			fmt.Fprintf(f, "%s,%s,,,\n", r[0], r[1])
		}
	}
	return f.Name(), nil
}
