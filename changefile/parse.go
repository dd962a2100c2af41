package changefile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/iot-ops/tsbulk/change"
)

// defaultMaxRows bounds one file: large enough for any real fleet change,
// small enough that a mistaken upload (a whole inventory export) is stopped
// before it turns into tens of thousands of ThingSpace requests.
const defaultMaxRows = 200000

// Options control parsing.
type Options struct {
	// DefaultOperation applies to rows that leave operation empty, so a file
	// that changes every device the same way needs no operation column.
	DefaultOperation change.Operation
	// MaxRows is the most device rows one file may hold; 0 means 200000.
	MaxRows int
	// MaxFileBytes is the largest file read; 0 means DefaultMaxFileBytes.
	// Bigger files are refused as they are read, before they fill memory.
	MaxFileBytes int64
	// MaxLineBytes is the longest CSV line read; 0 means
	// DefaultMaxLineBytes. (JSON is often one line; its size is bounded by
	// MaxFileBytes alone.)
	MaxLineBytes int
}

// ParseFile reads a bulk change file, choosing the format by extension
// (.csv or .json, any case). Problems with the content come back as a
// *ValidationError; a file that cannot be read in its format as an error
// matching ErrFormat; anything else that stops the file being read is a
// plain error.
func ParseFile(path string, opt Options) ([]DeviceRequest, error) {
	if _, err := parserFor(path); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bulkchange: %w", err)
	}
	defer f.Close() // read-only, so a Close error cannot lose data
	return ParseReader(f, path, opt)
}

// ParseReader reads a bulk change from r (a file opened by the caller), in
// the format of name's extension, as ParseFile reads a file.
func ParseReader(r io.Reader, name string, opt Options) ([]DeviceRequest, error) {
	parse, err := parserFor(name)
	if err != nil {
		return nil, err
	}
	reqs, err := parse(r, opt)
	var ve *ValidationError
	if err != nil && !errors.As(err, &ve) {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return reqs, err
}

func parserFor(name string) (func(io.Reader, Options) ([]DeviceRequest, error), error) {
	switch ext := strings.ToLower(filepath.Ext(name)); ext {
	case ".csv":
		return ParseCSV, nil
	case ".json":
		return ParseJSON, nil
	default:
		return nil, malformedf("bulkchange: %s: unsupported file type %q; use .csv or .json", name, ext)
	}
}

// ParseData reads a bulk change held in memory, in the given format ("csv"
// or "json"), as ParseFile reads a file.
func ParseData(data []byte, format string, opt Options) ([]DeviceRequest, error) {
	switch strings.ToLower(format) {
	case "csv":
		return ParseCSV(bytes.NewReader(data), opt)
	case "json":
		return ParseJSON(bytes.NewReader(data), opt)
	}
	return nil, malformedf("bulkchange: unsupported format %q; use csv or json", format)
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// skipBOM drops a UTF-8 byte order mark. Excel's "CSV UTF-8" export writes
// one, and it would otherwise become part of the first column name.
func skipBOM(r io.Reader) io.Reader {
	br := bufio.NewReader(r)
	if b, err := br.Peek(len(utf8BOM)); err == nil && bytes.Equal(b, utf8BOM) {
		_, _ = br.Discard(len(utf8BOM))
	}
	return br
}
