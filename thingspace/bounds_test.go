package thingspace

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A synchronous error answer with a megabyte code and message gives an
// Error (and an audited exchange) whose code and message are bounded: they
// reach rows, workflow histories and metric labels.
func TestSynchronousErrorCodeAndMessageAreBounded(t *testing.T) {
	f := newFake(t)
	hugeCode := "UnifiedWebService.REQUEST_FAILED." + strings.Repeat("Z", 1<<20)
	f.route(http.MethodPost, pathSuspend, func(w http.ResponseWriter, _ *http.Request) {
		m2mError(w, http.StatusBadRequest, hugeCode, "REQUEST_FAILED. "+strings.Repeat("m\x01", 1<<19))
	})
	rec := &recorder{}
	c := newTestClient(t, f, rec)
	_, err := c.Suspend(context.Background(), ActionRequest{Devices: oneDevice()})
	e, ok := AsError(err)
	require.True(t, ok, "%v", err)
	assert.LessOrEqual(t, len(e.Code), MaxCodeLen)
	assert.True(t, strings.HasPrefix(e.Code, "UnifiedWebService.REQUEST_FAILED.ZZZ"))
	assert.LessOrEqual(t, utf8.RuneCountInString(e.Message), MaxTextLen+len(truncated))
	assert.NotContains(t, e.Message, "\x01", "control characters are not kept")
	assert.Equal(t, OtherCode, MetricCode(e.Code))
	for _, x := range rec.all() {
		assert.LessOrEqual(t, len(x.Code), MaxCodeLen, "audited code of %s", x.Op)
	}
}

func TestBounds(t *testing.T) {
	assert.Equal(t, "REQUEST_FAILED.DeviceNotFound", MetricCode("UnifiedWebService.REQUEST_FAILED.DeviceNotFound"))
	assert.Equal(t, "NOT_CONFIRMED", MetricCode("NOT_CONFIRMED"))
	assert.Equal(t, OtherCode, MetricCode("REQUEST_FAILED.Made_Up"))
	assert.Equal(t, "", MetricCode(""))
	assert.Equal(t, "a_b__c", BoundCode(" a b<>c "))
	assert.True(t, IsRequestID("076f7ea9-8230-49b1-9386-8dafaddc7d9e"))
	for _, s := range []string{"", "req-1", "076f7ea9-8230-49b1-9386-8dafaddc7d9", "076f7ea9-8230-49b1-9386-8dafaddc7d9e\n"} {
		assert.False(t, IsRequestID(s), "%q", s)
	}
	assert.Equal(t, "short", BoundText("short"))
	long := BoundText(strings.Repeat("é", MaxTextLen+5))
	assert.Equal(t, MaxTextLen+len(truncated), utf8.RuneCountInString(long))
	assert.Equal(t, "x [REDACTED] y", ScrubPersonal("x 1 Main St y", []string{"1 Main St"}))
}
