package change

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseOperation(t *testing.T) {
	tests := []struct {
		in   string
		want Operation
	}{
		{"activate", Activate},
		{"ACTIVATE", Activate},
		{"  Suspend ", Suspend},
		{"restore", Restore},
		{"deactivate", Deactivate},
		{"deactive", Deactivate}, // predecessor's spelling
		{"DeActive", Deactivate},
		{"inventory", Inventory},
		{"\tInventory\n", Inventory},
	}
	for _, tt := range tests {
		got, err := ParseOperation(tt.in)
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.want, got, tt.in)
	}

	for _, bad := range []string{"", "  ", "activated", "delete", "add", "resume", "act ivate"} {
		_, err := ParseOperation(bad)
		if assert.Error(t, err, bad) {
			assert.Contains(t, err.Error(), "valid values: activate, suspend, restore, deactivate, inventory", bad)
		}
	}

	_, err := ParseOperation("frobnicate")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"frobnicate"`, "the offending text is shown")

	long := strings.Repeat("x", 500)
	_, err = ParseOperation(long)
	require.Error(t, err)
	assert.Less(t, len(err.Error()), 200, "long text is clipped")
}

func TestOperationValid(t *testing.T) {
	assert.Equal(t, []Operation{Activate, Suspend, Restore, Deactivate, Inventory}, Operations)
	for _, op := range Operations {
		assert.True(t, op.Valid(), op)
	}
	for _, op := range []Operation{"", "Activate", "deactive", "delete"} {
		assert.False(t, op.Valid(), op)
	}
}
