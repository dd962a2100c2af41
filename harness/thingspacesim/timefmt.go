package thingspacesim

import (
	"time"
	_ "time/tzdata" // the Eastern time zone must load even where the OS has no zoneinfo
)

// wireTimeLayout is RFC 3339 with milliseconds and a numeric UTC offset, as
// in the reference's "2019-08-07T10:42:15-04:00". Milliseconds are added
// because devices are created 1 ms apart and clients page by "earliest".
const wireTimeLayout = "2006-01-02T15:04:05.000-07:00"

// wireLocation is US Eastern time, so that answers carry a non-zero,
// DST-dependent offset like the live examples (-04:00 / -05:00); clients
// that ignore offsets fail tests against the simulator.
var wireLocation = func() *time.Location {
	loc, err := time.LoadLocation("America/New_York")
	if err != nil {
		return time.FixedZone("EST", -5*60*60)
	}
	return loc
}()

func (s *Simulator) formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.In(wireLocation).Format(wireTimeLayout)
}

// parseWireTime accepts RFC 3339 with or without fractional seconds, and a
// bare date-time without offset (taken as UTC).
func parseWireTime(v string) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, true
	}
	if t, err := time.Parse("2006-01-02T15:04:05", v); err == nil {
		return t, true
	}
	return time.Time{}, false
}
