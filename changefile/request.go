package changefile

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"strconv"

	"github.com/iot-ops/tsbulk/change"
)

// defaultReasonCode is ThingSpace's only documented deactivation reason
// ("General Admin/Maintenance"), used when the file leaves it empty.
const defaultReasonCode = "FF"

// Billing is the Rev.io service to create for a device once it is active.
type Billing struct {
	CustomerID    int64
	ServiceTypeID int64
	ProviderID    int64    // required: Rev.io refuses a service without provider_id
	ProductIDs    []int64  // one service product per ID
	Rates         []string // decimal text, one per product ID; text so no precision is lost on the way to Rev.io
}

// DeviceRequest is one validated row: the change wanted for one device.
type DeviceRequest struct {
	// Row is where the device was in the file, for messages back to the
	// operator: the CSV line number (header = 1) or the 1-based JSON index.
	Row         int
	ICCID, IMEI string
	Operation   change.Operation

	ServicePlan, MdnZipCode string // activate only
	// SkuNumber (activate only, optional) is the 4G device type's SKU,
	// which ThingSpace takes in lieu of the IMEI: an activation needs one
	// of the two.
	SkuNumber  string
	ReasonCode string // deactivate only; "FF" when the file leaves it empty
	EtfWaiver  bool   // deactivate only
	// DeleteAfterDeactivation (deactivate only) is the file's choice of
	// removing the device from ThingSpace's inventory once deactivated;
	// nil leaves it to the worker's thingspace.delete_after_deactivation.
	DeleteAfterDeactivation *bool
	PPU                     *PPU // activate only, optional
	Billing                 *Billing
}

// BatchKey groups requests that can share one ThingSpace call: the same
// operation and the same request-level fields (activate: service plan, MDN
// ZIP, SKU and PPU; deactivate: reason code, ETF waiver and the file's
// delete_after_deactivation, unset included: the worker resolves unset when
// it sends, and one request carries one value). Device identifiers and
// Rev.io billing are per device and do not count.
//
// The key is a hex SHA-256 of a length-prefixed encoding: length prefixes
// keep ("ab","c") and ("a","bc") apart, and hashing keeps PPU data out of
// anything that stores or logs keys. It is not a secret: an address could
// be confirmed by guessing, so keys are still not for public display.
func (r DeviceRequest) BatchKey() string {
	h := sha256.New()
	put := func(s string) { writeField(h, s) }
	put("tsbulk.batch.v2") // bump if the encoding changes, so old and new keys never collide
	put(string(r.Operation))
	switch r.Operation {
	case change.Activate:
		put(r.ServicePlan)
		put(r.MdnZipCode)
		put(r.SkuNumber)
		if r.PPU == nil {
			put("ppu:none")
		} else {
			put("ppu")
			p := r.PPU
			for _, f := range []string{
				p.FirstName,
				p.LastName,
				p.AddressLine1,
				p.AddressLine2,
				p.City,
				p.State,
				p.Zip,
				p.Country,
			} {
				put(f)
			}
		}
	case change.Deactivate:
		code := r.ReasonCode
		if code == "" {
			code = defaultReasonCode // an unset code is sent as FF, so it batches with FF
		}
		put(code)
		put(strconv.FormatBool(r.EtfWaiver))
		if r.DeleteAfterDeactivation == nil {
			put("delete:setting")
		} else {
			put("delete:" + strconv.FormatBool(*r.DeleteAfterDeactivation))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func writeField(h hash.Hash, s string) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(s)))
	h.Write(n[:])
	h.Write([]byte(s))
}
