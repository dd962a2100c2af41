package thingspacesim

import (
	"crypto/rand"
	"fmt"
	"strings"

	"github.com/iot-ops/tsbulk/luhn"
)

// newUUID returns a random (version 4) UUID string, the shape of ThingSpace
// request ids, session tokens and (in the simulator) OAuth tokens.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// isGUID reports whether s has the 8-4-4-4-12 hexadecimal GUID shape.
func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch i {
		case 8, 13, 18, 23:
			if r != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
				return false
			}
		}
	}
	return true
}

func allHex(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return false
		}
	}
	return true
}

// Identifier kinds accepted in requests (compared case-insensitively).
const (
	kindICCID  = "iccid"
	kindIMEI   = "imei"
	kindMDN    = "mdn"
	kindMSISDN = "msisdn"
	kindMIN    = "min"
	kindESN    = "esn"
	kindMEID   = "meid"
	kindEID    = "eid"
	kindIMSI   = "imsi"
)

// validateDeviceID checks a request identifier: its kind must be one the
// reference lists and its value must fit that kind. It returns the
// lowercase kind, or an error reply.
func validateDeviceID(id deviceID) (string, *reply) {
	kind := strings.ToLower(strings.TrimSpace(id.Kind))
	ok := false
	switch kind {
	case kindICCID:
		ok = luhn.AllDigits(id.ID) && len(id.ID) >= 18 && len(id.ID) <= 20
	case kindIMEI:
		ok = luhn.AllDigits(id.ID) && len(id.ID) >= 14 && len(id.ID) <= 16
	case kindMDN, kindMSISDN, kindMIN:
		ok = luhn.AllDigits(id.ID) && len(id.ID) >= 10 && len(id.ID) <= 15
	case kindESN:
		ok = (luhn.AllDigits(id.ID) && len(id.ID) == 11) || (allHex(id.ID) && len(id.ID) == 8)
	case kindMEID:
		ok = allHex(id.ID) && len(id.ID) == 14
	case kindEID:
		ok = luhn.AllDigits(id.ID) && len(id.ID) == 32
	case kindIMSI:
		ok = luhn.AllDigits(id.ID) && len(id.ID) >= 14 && len(id.ID) <= 15
	default:
		r := uwsError(CodeDeviceKindInvalid, "INPUT_INVALID. Device kind %q is not valid", id.Kind)
		return "", &r
	}
	if !ok {
		r := uwsError(CodeDeviceIDInvalid, "INPUT_INVALID. Device identifier %q is not a valid %s", id.ID, kind)
		return "", &r
	}
	return kind, nil
}

// validateDeviceRefs checks every identifier of every device of a request.
func validateDeviceRefs(refs []deviceRef) *reply {
	for _, ref := range refs {
		if len(ref.DeviceIDs) == 0 {
			r := uwsError(CodeUnexpectedError, "REQUEST_FAILED. Each device needs at least one deviceId")
			return &r
		}
		for _, id := range ref.DeviceIDs {
			if _, rep := validateDeviceID(id); rep != nil {
				return rep
			}
		}
	}
	return nil
}
