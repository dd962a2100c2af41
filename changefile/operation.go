package changefile

import (
	"fmt"
	"strings"

	"github.com/iot-ops/tsbulk/change"
)

// Operation is the status change an operator asks for on one device: the
// product's own (package change). The string values are what operators type
// in the operation column.
type Operation = change.Operation

// The operations a bulk change file may ask for.
const (
	OpActivate   = change.Activate
	OpSuspend    = change.Suspend
	OpRestore    = change.Restore
	OpDeactivate = change.Deactivate
	// OpInventory adds the device to the ThingSpace account as pre-active
	// without connecting it (POST /devices/actions/add).
	OpInventory = change.Inventory
)

// Operations lists every valid operation, in a fixed order so that messages
// listing them read the same every time.
var Operations = change.Operations

// deactiveAlias is how the predecessor system spelled deactivate (after
// ThingSpace's state name "deactive"); files exported from it still use it.
const deactiveAlias = "deactive"

// ParseOperation turns operator text into an Operation. Case and surrounding
// spaces are ignored because files are typed by hand and come out of
// spreadsheets.
func ParseOperation(s string) (Operation, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if t == deactiveAlias {
		return OpDeactivate, nil
	}
	if op := Operation(t); op.Valid() {
		return op, nil
	}
	if t == "" {
		return "", fmt.Errorf("operation is empty; valid values: %s", validOperations())
	}
	return "", fmt.Errorf("unknown operation %s; valid values: %s", quoteClipped(s), validOperations())
}

func validOperations() string {
	names := make([]string, len(Operations))
	for i, op := range Operations {
		names[i] = string(op)
	}
	return strings.Join(names, ", ")
}
