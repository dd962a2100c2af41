package dbtest

import (
	"fmt"
	"sync/atomic"

	"github.com/iot-ops/tsbulk/luhn"
)

var iccidSeq atomic.Int64

// NewICCID is a valid ICCID (20 digits, Luhn check digit) that no other test
// of the process uses: the tests that share a database do not see each
// other's devices, and the same ICCID passes a submission's validation.
func NewICCID() string {
	body := fmt.Sprintf("8914800000%09d", iccidSeq.Add(1))
	return body + string(luhn.CheckDigit(body))
}
