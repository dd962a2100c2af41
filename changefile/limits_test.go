package changefile

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
)

// A file larger than MaxFileBytes is refused as it is read, naming the line
// where reading stopped; one of exactly that size is read.
func TestFileSizeBound(t *testing.T) {
	var b strings.Builder
	b.WriteString("iccid,operation\n")
	for range 3 {
		b.WriteString(iccidA + ",suspend\n")
	}
	text := b.String()
	size := int64(len(text))

	_, err := parseCSV(t, text, Options{MaxFileBytes: size - 1})
	requireProblems(t, err, want{0, "", fmt.Sprintf("larger than %d bytes", size-1)}, want{3, "iccid", "already on row 2"})
	require.ErrorContains(t, err, "reading stopped at line 4")
	require.ErrorContains(t, err, "submission.max_file_bytes")

	// Exactly at the bound the file is read (and its duplicate ICCIDs found).
	_, err = parseCSV(t, text, Options{MaxFileBytes: size})
	requireProblems(t, err, want{3, "iccid", "already on row 2"}, want{4, "iccid", "already on row 2"})

	js := `[{"iccid":"` + iccidA + `","operation":"suspend"}]`
	_, err = parseJSON(t, js, Options{MaxFileBytes: int64(len(js)) - 1})
	requireProblems(t, err, want{0, "", "larger than"})
	reqs, err := parseJSON(t, js, Options{MaxFileBytes: int64(len(js))})
	require.NoError(t, err)
	require.Len(t, reqs, 1)
}

// A CSV line longer than MaxLineBytes is refused with its line, before it
// is held in memory; problems found before it are kept in the report.
func TestLineLengthBound(t *testing.T) {
	long := strings.Repeat("x", 200)
	text := "iccid,operation,service_plan\n" +
		"123,suspend,\n" +
		iccidA + ",activate," + long + "\n" +
		iccidB + ",suspend,\n"
	_, err := parseCSV(t, text, Options{MaxLineBytes: 100})
	requireProblems(t, err, want{2, "iccid", ""}, want{3, "", "line is longer than 100 bytes"})

	// The default bound lets every real row through and stops a megabyte.
	_, err = parseCSV(t, "iccid\n"+strings.Repeat("8", 1<<20)+"\n", Options{DefaultOperation: change.Suspend})
	requireProblems(t, err, want{2, "", fmt.Sprintf("longer than %d bytes", DefaultMaxLineBytes)})
}

// A JSON file that is not JSON, or a file of another type, matches
// ErrFormat: submitting it again cannot succeed.
func TestFormatErrors(t *testing.T) {
	_, err := parseJSON(t, `[{"iccid":}]`, Options{})
	require.ErrorIs(t, err, ErrFormat)
	_, err = ParseReader(strings.NewReader("x"), "devices.xlsx", Options{})
	require.ErrorIs(t, err, ErrFormat)
	require.ErrorContains(t, err, "unsupported file type")
	_, err = ParseReader(failingReader{}, "devices.csv", Options{})
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrFormat, "a failed read is not the file's fault")
	var ve *ValidationError
	assert.False(t, errors.As(err, &ve))
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

// Summary keeps the first problems and counts the rest by field.
func TestSummary(t *testing.T) {
	ve := &ValidationError{}
	for i := range 1000 {
		ve.Errors = append(ve.Errors, FieldError{Row: i + 2, Field: "iccid", Message: "bad"})
	}
	ve.Errors = append(ve.Errors, FieldError{Row: 1002, Message: "short row"})
	s := ve.Summary(3)
	require.Contains(t, s, "1001 problems (by field: iccid 1000, (whole row or file) 1); the first 3:")
	require.Contains(t, s, "row 4, field iccid: bad")
	require.NotContains(t, s, "row 5,")
	require.Contains(t, s, "and 998 more")
	require.Equal(t, ve.Error(), (&ValidationError{Errors: ve.Errors}).Summary(len(ve.Errors)))
}
