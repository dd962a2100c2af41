package submission

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/changefile"
	"github.com/iot-ops/tsbulk/db"
)

// A re-drive rebuilds the rows it submits again from the stored ones: the
// SKU and the file's delete_after_deactivation (unset included) come back
// as they were given.
func TestStoredRowKeepsSKUAndDeleteAfterDeactivation(t *testing.T) {
	keep := false
	for _, d := range []changefile.DeviceRequest{
		{Row: 2, ICCID: "89148000001234567898", Operation: change.Activate, ServicePlan: "m2m_4G",
			MdnZipCode: "98801", SkuNumber: "SM-T387VZKAVZW"},
		{Row: 3, ICCID: "89148000000000000019", Operation: change.Deactivate, ReasonCode: "FF",
			DeleteAfterDeactivation: &keep},
		{Row: 4, ICCID: "89148000000000000027", Operation: change.Deactivate, ReasonCode: "FF"},
	} {
		n, err := deviceRow(1, d, 1)
		require.NoError(t, err)
		back, err := requestOf(db.FailedChange{RowNumber: n.RowNumber, ICCID: n.ICCID, IMEI: n.IMEI,
			Operation: n.Operation, Params: n.Params})
		require.NoError(t, err)
		require.Equal(t, d, back)
		require.Equal(t, d.BatchKey(), back.BatchKey())
	}
}

// An activation stored before activations needed an IMEI or a SKU is not
// re-driven: ThingSpace would refuse it.
func TestRedriveRefusesActivationWithoutIMEIOrSKU(t *testing.T) {
	_, err := requestOf(db.FailedChange{RowNumber: 2, ICCID: "89148000001234567898", Operation: "activate",
		Params: []byte(`{"servicePlan":"m2m_4G","mdnZipCode":"98801"}`)})
	require.ErrorContains(t, err, "needs the device's IMEI or its SKU")
}
