package submission

// A device change as it is stored, and back: a re-drive rebuilds the
// requests it submits again from the stored rows.

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/changefile"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/thingspace"
)

// deviceRow converts a validated row into its database row.
func deviceRow(seq int, d changefile.DeviceRequest, batch int) (db.NewDeviceChange, error) {
	params, err := json.Marshal(db.ChangeParams{
		ServicePlan:             d.ServicePlan,
		MdnZipCode:              d.MdnZipCode,
		SkuNumber:               d.SkuNumber,
		ReasonCode:              d.ReasonCode,
		EtfWaiver:               d.EtfWaiver,
		DeleteAfterDeactivation: d.DeleteAfterDeactivation,
	})
	if err != nil {
		return db.NewDeviceChange{}, err
	}
	n := db.NewDeviceChange{
		Seq:       seq,
		RowNumber: d.Row,
		ICCID:     d.ICCID,
		IMEI:      d.IMEI,
		Operation: change.Operation(d.Operation),
		BatchNo:   batch,
		Params:    params,
	}
	if d.PPU != nil {
		if n.PPU, err = json.Marshal(placeOfUse(*d.PPU)); err != nil {
			return n, err
		}
	}
	if d.Billing != nil {
		if n.Billing, err = json.Marshal(db.BillingData{
			CustomerID:    d.Billing.CustomerID,
			ServiceTypeID: d.Billing.ServiceTypeID,
			ProviderID:    d.Billing.ProviderID,
			ProductIDs:    d.Billing.ProductIDs,
			Rates:         d.Billing.Rates,
		}); err != nil {
			return n, err
		}
	}
	return n, nil
}

// placeOfUse is the PPU as ThingSpace wants it (ZIP+4 split in two).
func placeOfUse(p changefile.PPU) thingspace.PlaceOfUse {
	zip, zip4, _ := strings.Cut(p.Zip, "-")
	return thingspace.PlaceOfUse{
		CustomerName: thingspace.CustomerName{FirstName: p.FirstName, LastName: p.LastName},
		Address: thingspace.Address{AddressLine1: p.AddressLine1, AddressLine2: p.AddressLine2, City: p.City,
			State: p.State, Zip: zip, Zip4: zip4, Country: p.Country},
	}
}

// requestOf rebuilds the validated request of a stored device change.
func requestOf(f db.FailedChange) (changefile.DeviceRequest, error) {
	d := changefile.DeviceRequest{
		Row:       f.RowNumber,
		ICCID:     f.ICCID,
		IMEI:      f.IMEI,
		Operation: change.Operation(f.Operation),
	}
	var p db.ChangeParams
	if err := json.Unmarshal(f.Params, &p); err != nil {
		return d, fmt.Errorf("params: %w", err)
	}
	d.ServicePlan, d.MdnZipCode, d.ReasonCode, d.EtfWaiver = p.ServicePlan, p.MdnZipCode, p.ReasonCode, p.EtfWaiver
	d.SkuNumber, d.DeleteAfterDeactivation = p.SkuNumber, p.DeleteAfterDeactivation
	if d.Operation == change.Activate && d.IMEI == "" && d.SkuNumber == "" {
		// Stored before activations needed one; ThingSpace would refuse it.
		return d, errors.New("an activation needs the device's IMEI or its SKU (ThingSpace refuses it otherwise); " +
			"submit it again in a file with the imei or sku_number column")
	}
	if len(f.PPU) > 0 && string(f.PPU) != "null" {
		var pu thingspace.PlaceOfUse
		if err := json.Unmarshal(f.PPU, &pu); err != nil {
			return d, errors.New("stored PPU is unreadable")
		}
		zip := pu.Address.Zip
		if pu.Address.Zip4 != "" {
			zip += "-" + pu.Address.Zip4
		}
		d.PPU = &changefile.PPU{FirstName: pu.CustomerName.FirstName, LastName: pu.CustomerName.LastName,
			AddressLine1: pu.Address.AddressLine1, AddressLine2: pu.Address.AddressLine2, City: pu.Address.City,
			State: pu.Address.State, Zip: zip, Country: pu.Address.Country}
	}
	if len(f.Billing) > 0 && string(f.Billing) != "null" {
		var b db.BillingData
		if err := json.Unmarshal(f.Billing, &b); err != nil {
			return d, fmt.Errorf("billing: %w", err)
		}
		d.Billing = &changefile.Billing{
			CustomerID:    b.CustomerID,
			ServiceTypeID: b.ServiceTypeID,
			ProviderID:    b.ProviderID,
			ProductIDs:    b.ProductIDs,
			Rates:         b.Rates,
		}
	}
	return d, nil
}
