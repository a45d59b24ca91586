// Package zeeklog reads the lines of a Zeek log: in Zeek's JSON format it
// checks that each is one JSON object and finds its uid; in Zeek's default
// tab-separated format it converts each to what Zeek's JSON writer would
// have written, field names as the #fields header gives them.
package zeeklog

import (
	"bytes"
	"errors"
	"fmt"
)

// Kinds of malformed lines, used as metric labels.
const (
	KindJSONSyntax    = "json_syntax"
	KindJSONNotObject = "json_not_object"
	KindTSVNoHeader   = "tsv_no_header"
	KindTSVHeader     = "tsv_header"
	KindTSVColumns    = "tsv_columns"
	KindTSVValue      = "tsv_value"
	KindTooLong       = "line_too_long"
)

// LineError is a malformed line; Kind says which check failed.
type LineError struct {
	Kind string
	Msg  string
}

func (e *LineError) Error() string { return e.Kind + ": " + e.Msg }

func lineErr(kind, format string, args ...any) error {
	return &LineError{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// ErrorKind returns the kind of a LineError, or "other".
func ErrorKind(err error) string {
	var le *LineError
	if errors.As(err, &le) {
		return le.Kind
	}
	return "other"
}

// LineType says what a line was.
type LineType int

const (
	// Record is a log record: the value is a JSON object to forward.
	Record LineType = iota
	// Meta is a header or comment line ('#...') or a blank line.
	Meta
)

// Parser converts the lines of one log file. Lines starting with '#' are
// TSV header lines. Before any #fields line the log is JSON: every other
// line that is not blank is a JSON record. After one, it is TSV: every
// other line that is not empty is a TSV record read with the header seen
// last (it may start with '{' or be all spaces: Zeek escapes a leading
// '#' in a value, and nothing else of that kind).
type Parser struct {
	tsv tsvHeader
}

// NewParser returns a parser for one log file.
func NewParser() *Parser {
	return &Parser{tsv: defaultTSVHeader()}
}

// Parse reads one line (without its '\n'). For a Record it appends the
// JSON object to dst (a JSON line as it is, a TSV line as Zeek's JSON
// writer would have written it) and returns it with the record's uid.
func (p *Parser) Parse(dst, line []byte) (out []byte, uid string, typ LineType, err error) {
	line = bytes.TrimSuffix(line, []byte{'\r'})
	switch {
	case len(line) > 0 && line[0] == '#':
		return dst, "", Meta, p.tsv.meta(line)
	case len(line) > 0 && p.tsv.fields != nil:
		out, uid, err = p.tsv.record(dst, line)
		return out, uid, Record, err
	case len(bytes.Trim(line, " \t\r\n")) == 0: // JSON's white space
		return dst, "", Meta, nil
	default:
		uid, err = ValidateJSON(line)
		if err != nil {
			return dst, "", Record, err
		}
		return append(dst, line...), uid, Record, nil
	}
}

// HeaderLines returns the TSV header lines in effect, so that a reader
// resuming in the middle of a file can restore them with RestoreHeader.
func (p *Parser) HeaderLines() []string {
	return append([]string(nil), p.tsv.lines...)
}

// HeaderVersion changes whenever the TSV header in effect changes.
func (p *Parser) HeaderVersion() uint64 { return p.tsv.version }

// RestoreHeader replays saved header lines.
func (p *Parser) RestoreHeader(lines []string) error {
	p.tsv = defaultTSVHeader()
	for _, l := range lines {
		if err := p.tsv.meta([]byte(l)); err != nil {
			return fmt.Errorf("restore TSV header: %w", err)
		}
	}
	return nil
}
