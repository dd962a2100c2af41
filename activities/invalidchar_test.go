package activities_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/thingspace"
)

// An activation batch whose place of use holds a character ThingSpace
// refuses (an apostrophe; INPUT_INVALID.Request.InvalidCharacter), written
// before the file refused it, is refused by ThingSpace as a whole. The
// refusal is the request's, not one device's: the batch is not split into
// more requests, every device ends FAILED with the code, and neither the
// change nor the audit log holds the name.
func TestSendBatchPPUInvalidCharacterIsNotSplit(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	devs := devices(4, "8914800009", "preactive")
	h.seed(devs...)
	ppu := &thingspace.PlaceOfUse{
		CustomerName: thingspace.CustomerName{FirstName: "Peregrine", LastName: "O'Quillanby"},
		Address: thingspace.Address{AddressLine1: "77 Thistledown Way", City: "Wenatchee", State: "WA",
			Zip: "98801", Country: "USA"},
	}
	bulk, ids := h.newBulk(account, withPPU(ppu, activations("98801", 1, devs...))...)

	res := h.mustSendBatch(bulk, 1)
	require.Equal(t, db.RequestRejected, res.State)
	require.Equal(t, thingspace.CodeInvalidCharacter, res.ErrorCode)
	require.Equal(t, 1, h.stats().Requests[epActivate], "refused for the request: not split")
	for _, d := range devs {
		require.Zero(t, h.accepted(d.ICCID, "activate"))
		dc := h.change(ids[d.ICCID])
		require.Equal(t, change.Failed, dc.Status)
		require.EqualValues(t, thingspace.CodeInvalidCharacter, dc.ErrorCode)
		require.NotContains(t, dc.ErrorMessage, "Quillanby")
	}
	for _, r := range h.audit(bulk) {
		text := strings.Join([]string{r.RequestBody, r.ResponseBody, r.ErrorCode, r.ErrorMessage}, "\n")
		require.NotContains(t, text, "Quillanby")
		require.NotContains(t, text, "Thistledown")
	}
}
