package changefile

import (
	"errors"
	"fmt"
	"io"
)

// Default bounds of one file. 200,000 rows (the row limit) of every column
// filled are well under 64 MiB; 64 KiB is far above any real row (every
// column at its longest) and far below what would let one line fill the
// memory of the process reading it.
const (
	DefaultMaxFileBytes = 64 << 20
	DefaultMaxLineBytes = 64 << 10
)

// ErrFormat marks a file that cannot be read in its format at all (JSON
// syntax, an unsupported file type): submitting the same file again cannot
// succeed. Check it with errors.Is.
var ErrFormat = errors.New("bulk change file cannot be read in its format")

// formatError keeps the message of the error it carries and adds ErrFormat.
type formatError struct{ err error }

func (e formatError) Error() string       { return e.err.Error() }
func (e formatError) Unwrap() error       { return e.err }
func (formatError) Is(target error) bool  { return target == ErrFormat }
func malformed(err error) error           { return formatError{err: err} }
func malformedf(f string, a ...any) error { return formatError{err: fmt.Errorf(f, a...)} }

// limitError is a bound of Options passed: the file is refused with the row
// (file line) where reading stopped.
type limitError struct {
	line int
	msg  string
	// whole: the bound is the file's, so the problem is the file's (row
	// 0, reported first), not the line's where reading stopped.
	whole bool
}

func (e *limitError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }

// boundedReader stops reading a file at its byte bound, and a line at its
// line bound, before either is buffered: encoding/csv would otherwise hold
// a whole line in memory whatever its length. Its first error is kept, so
// the parsers can tell a bound (a problem of the file) from a failed read
// (a problem of the disk or the activity, worth retrying).
type boundedReader struct {
	r        io.Reader
	maxFile  int64
	maxLine  int
	total    int64
	lineLen  int
	line     int // 1-based number of the line being read
	err      error
	checkLen bool
}

func newBoundedReader(r io.Reader, opt Options, lines bool) *boundedReader {
	maxFile, maxLine := opt.MaxFileBytes, opt.MaxLineBytes
	if maxFile <= 0 {
		maxFile = DefaultMaxFileBytes
	}
	if maxLine <= 0 {
		maxLine = DefaultMaxLineBytes
	}
	return &boundedReader{r: r, maxFile: maxFile, maxLine: maxLine, line: 1, checkLen: lines}
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	// One byte past the bound is read so a file of exactly the bound passes.
	if room := b.maxFile + 1 - b.total; int64(len(p)) > room {
		p = p[:room]
	}
	n, err := b.r.Read(p)
	for i, c := range p[:n] {
		if b.total+int64(i) >= b.maxFile {
			b.err = &limitError{line: b.line, whole: true, msg: fmt.Sprintf(
				"the file is larger than %d bytes, the most one bulk change file may be "+
					"(submission.max_file_bytes); split it into smaller files; reading stopped at line %d",
				b.maxFile, b.line)}
			return i, b.err
		}
		if c == '\n' {
			b.line++
			b.lineLen = 0
			continue
		}
		b.lineLen++
		if b.checkLen && b.lineLen > b.maxLine {
			b.err = &limitError{line: b.line, msg: fmt.Sprintf(
				"the line is longer than %d bytes, more than any bulk change row can be; "+
					"check the file is the CSV meant (a binary file, or lines ending in a carriage return only?)",
				b.maxLine)}
			return i, b.err
		}
	}
	b.total += int64(n)
	if err != nil && !errors.Is(err, io.EOF) {
		b.err = err
	}
	return n, err
}

// failed reports whether reading stopped (a bound passed or the reader
// failed); failure is then what the parser returns. Parsers ask only when
// their decoder fails: what was buffered before the stop is still read.
func (b *boundedReader) failed() bool { return b.err != nil }

// failure is what a parser returns once reading stopped: a bound passed is
// a problem of the file, with its line, added to those found so far;
// anything else is the reader's own failure (a disk, a cancelled activity),
// returned as it is so that it can be retried.
func (b *boundedReader) failure(v *validator, rank func(string) int, format string) ([]DeviceRequest, error) {
	var le *limitError
	if errors.As(b.err, &le) {
		fe := FieldError{Row: le.line, Message: le.msg + "; nothing after it was read"}
		if le.whole {
			fe = FieldError{Message: le.msg}
		}
		v.errs = append(v.errs, fe)
		sortErrors(v.errs, rank)
		return nil, &ValidationError{Errors: v.errs}
	}
	return nil, fmt.Errorf("bulkchange: read %s: %w", format, b.err)
}
