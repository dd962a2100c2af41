package activities

import (
	"strings"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// CallbackConfirmation is a stored callback as ThingSpace's answer for its
// device: a success when it reported Success without a fault. A device's
// workflow reads it from PostgreSQL (a callback that came before the
// workflow, or whose signal was lost) and the callback receiver signals it:
// one reading for both, so the workflow sees the same answer whichever way
// it came.
func CallbackConfirmation(c db.Callback) api.Confirmation {
	return api.Confirmation{
		Source:       change.ByCallback,
		RequestID:    c.RequestID,
		Success:      c.FaultCode == "" && strings.EqualFold(c.Status, "Success"),
		FaultCode:    change.Code(change.ShortCode(c.FaultCode)),
		FaultMessage: c.FaultString,
		MSISDN:       c.MSISDN,
		CallbackID:   c.ID,
		At:           c.ReceivedAt,
	}
}
