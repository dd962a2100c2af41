// Package changefile is the operator-facing input of a bulk status change:
// the DeviceRequest model and the reading and validation of the CSV or JSON
// file that lists devices (by ICCID) and the operation for each.
//
// CSV files need a header row. Column names are matched case-insensitively:
//
//	iccid, operation, imei,
//	service_plan, mdn_zip_code, sku_number,           (activate)
//	reason_code, etf_waiver, delete_after_deactivation (deactivate)
//	ppu_first_name, ppu_last_name, ppu_address_line1, ppu_address_line2,
//	ppu_city, ppu_state, ppu_zip, ppu_country,        (activate, optional)
//	rev_customer_id, rev_service_type_id, rev_provider_id,
//	rev_product_ids, rev_rates                        (activate, optional; lists ";"-separated)
//
// A row with any rev_ column needs rev_customer_id, rev_service_type_id and
// rev_provider_id (Rev.io requires customer_id and provider_id to create a
// service line), and one rate per product.
//
// JSON files are an array of objects with exactly these keys.
//
// An activation needs the device's IMEI (15 digits with its check digit,
// or the 16-digit IMEISV) or, in lieu of it, the SKU of its 4G device type
// (sku_number), as ThingSpace's activate request does.
//
// Validation reports every problem in the file at once, with its row and
// column, because operators fix files by hand and a one-error-per-upload
// loop is slow. Nothing is returned unless the whole file is valid: a bulk
// change is approved as a unit, so a half-applied file would be surprising.
//
// A file is bounded as it is read: Options.MaxFileBytes (64 MiB), a CSV
// line of Options.MaxLineBytes (64 KiB), Options.MaxRows (200,000). A bound
// passed is a problem of the file with its line, found before the file fills
// memory. A file that cannot be read in its format at all matches ErrFormat.
//
// Primary Place of Use (PPU) values are personal data. No error message
// quotes them, and PPU prints as "PPU{redacted}".
package changefile
