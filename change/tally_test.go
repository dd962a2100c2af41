package change

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTallyCountsAndAdds(t *testing.T) {
	a := NewTally()
	a.AddProcessed(Suspended, 2)
	a.AddError("X", 1)

	// A tally read from JSON null maps (an older payload) still counts.
	var b Tally
	require.NoError(t, json.Unmarshal([]byte(`{"processed":1,"byOutcome":null,"errorsByCode":null}`), &b))
	b.AddProcessed(Suspended, 1)
	b.AddError("Y", 3)
	b.Add(a)

	require.Equal(t, Tally{
		Processed:    4,
		Errors:       4,
		ByOutcome:    map[Outcome]int{Suspended: 3},
		ErrorsByCode: map[Code]int{"X": 1, "Y": 3},
	}, b)
	require.Equal(t, Tally{
		Processed:    2,
		Errors:       1,
		ByOutcome:    map[Outcome]int{Suspended: 2},
		ErrorsByCode: map[Code]int{"X": 1},
	}, a, "Add leaves its argument as it was")
}

// Progress has always marshalled its maps as {}: histories stay the same.
func TestNewTallyMarshalsEmptyMaps(t *testing.T) {
	out, err := json.Marshal(NewTally())
	require.NoError(t, err)
	require.JSONEq(t, `{"processed":0,"errors":0,"byOutcome":{},"errorsByCode":{}}`, string(out))
}
