package zeeklog

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
)

// kind of a Zeek type, as its JSON writer renders it.
type valueKind uint8

const (
	kString valueKind = iota // string, addr, subnet, enum and any other type
	kBool
	kInt
	kCount // count, port
	kFloat // double, interval, time (epoch seconds)
)

type column struct {
	name      []byte // `"name":`
	kind      valueKind
	container bool // set[...] or vector[...]
}

// tsvHeader is the state carried by a TSV file's '#' lines.
type tsvHeader struct {
	sep, setSep, empty, unset []byte
	fields, types             []string
	cols                      []column // built from fields and types at the first record
	uidCol                    int
	lines                     []string // header lines to persist
	version                   uint64
}

func defaultTSVHeader() tsvHeader {
	return tsvHeader{sep: []byte{'\t'}, setSep: []byte{','}, empty: []byte("(empty)"), unset: []byte("-"), uidCol: -1}
}

// meta applies one '#' line.
func (h *tsvHeader) meta(line []byte) error {
	if v, ok := bytes.CutPrefix(line, []byte("#separator ")); ok {
		sep := unescapeZeek(v)
		if len(sep) == 0 {
			return lineErr(KindTSVHeader, "empty #separator")
		}
		version := h.version + 1
		*h = defaultTSVHeader()
		h.sep, h.version = append([]byte(nil), sep...), version
		h.lines = []string{string(line)}
		return nil
	}
	parts := bytes.Split(line[1:], h.sep)
	key := string(parts[0])
	switch key {
	case "set_separator", "empty_field", "unset_field":
		if len(parts) != 2 || len(parts[1]) == 0 {
			return lineErr(KindTSVHeader, "#%s needs one value", key)
		}
		v := append([]byte(nil), unescapeZeek(parts[1])...)
		switch key {
		case "set_separator":
			h.setSep = v
		case "empty_field":
			h.empty = v
		default:
			h.unset = v
		}
	case "fields", "types":
		names := make([]string, len(parts)-1)
		for i, p := range parts[1:] {
			names[i] = string(p)
		}
		if key == "fields" {
			h.fields = names
		} else {
			h.types = names
		}
	case "path":
	default:
		return nil // #open, #close and comments change nothing
	}
	h.cols = nil // rebuilt at the next record
	h.setLine(key, string(line))
	h.version++
	return nil
}

func (h *tsvHeader) setLine(key, line string) {
	prefix := "#" + key + string(h.sep)
	for i, l := range h.lines {
		if strings.HasPrefix(l, prefix) {
			h.lines[i] = line
			return
		}
	}
	h.lines = append(h.lines, line)
}

// columns builds the per-column converters once #fields and #types agree.
func (h *tsvHeader) columns() error {
	if h.cols != nil {
		return nil
	}
	if h.fields == nil || h.types == nil {
		return lineErr(KindTSVNoHeader, "record before #fields and #types")
	}
	if len(h.fields) == 0 || len(h.fields) != len(h.types) {
		return lineErr(KindTSVNoHeader, "#fields has %d names, #types %d", len(h.fields), len(h.types))
	}
	h.cols = make([]column, len(h.fields))
	h.uidCol = -1
	for i, f := range h.fields {
		if f == "uid" {
			h.uidCol = i
		}
		// The name as the header gives it: a Zeek with
		// Log::default_scope_sep = "_" writes id_orig_h in both
		// formats, stock Zeek id.orig_h in both.
		c := column{name: append(appendJSONString(nil, []byte(f)), ':')}
		t := h.types[i]
		for _, p := range []string{"set[", "vector["} {
			if inner, ok := strings.CutPrefix(t, p); ok && strings.HasSuffix(inner, "]") {
				c.container, t = true, strings.TrimSuffix(inner, "]")
			}
		}
		switch t {
		case "bool":
			c.kind = kBool
		case "int":
			c.kind = kInt
		case "count", "port": // a port is written without its protocol
			c.kind = kCount
		case "double", "interval", "time":
			c.kind = kFloat
		default:
			c.kind = kString
		}
		h.cols[i] = c
	}
	return nil
}

// record converts one data line to what Zeek's JSON writer writes for the
// same record: unset fields left out, the members in the header's order.
func (h *tsvHeader) record(dst, line []byte) ([]byte, string, error) {
	if err := h.columns(); err != nil {
		return dst, "", err
	}
	start := len(dst)
	dst = append(dst, '{')
	uid := ""
	rest := line
	for i, c := range h.cols {
		v, after, found := bytes.Cut(rest, h.sep)
		if last := i == len(h.cols)-1; found == last {
			if found {
				return dst[:start], "", lineErr(KindTSVColumns, "more than %d columns", len(h.cols))
			}
			return dst[:start], "", lineErr(KindTSVColumns, "%d columns, #fields has %d", i+1, len(h.cols))
		}
		rest = after
		if bytes.Equal(v, h.unset) {
			continue
		}
		if len(dst) > start+1 {
			dst = append(dst, ',')
		}
		dst = append(dst, c.name...)
		value := len(dst)
		var err error
		if c.container {
			dst, err = h.appendContainer(dst, v, c.kind)
		} else {
			dst, err = h.appendScalar(dst, v, c.kind)
		}
		if err != nil {
			return dst[:start], "", lineErr(KindTSVValue, "field %s: %v", h.fields[i], err)
		}
		if i == h.uidCol {
			// What a JSON log's line gives: the member's string.
			uid = gjson.ParseBytes(dst[value:]).Str
		}
	}
	return append(dst, '}'), uid, nil
}

// appendContainer appends a set or vector as a JSON array; an element
// written as the unset field is a vector's hole, null in Zeek's JSON.
func (h *tsvHeader) appendContainer(dst, v []byte, k valueKind) ([]byte, error) {
	dst = append(dst, '[')
	if bytes.Equal(v, h.empty) {
		return append(dst, ']'), nil
	}
	for n := 0; ; n++ {
		e, rest, more := bytes.Cut(v, h.setSep)
		if n > 0 {
			dst = append(dst, ',')
		}
		var err error
		if bytes.Equal(e, h.unset) {
			dst = append(dst, "null"...)
		} else if dst, err = h.appendScalar(dst, e, k); err != nil {
			return dst, err
		}
		if !more {
			return append(dst, ']'), nil
		}
		v = rest
	}
}

func (h *tsvHeader) appendScalar(dst, v []byte, k valueKind) ([]byte, error) {
	switch k {
	case kBool:
		switch string(v) {
		case "T":
			return append(dst, "true"...), nil
		case "F":
			return append(dst, "false"...), nil
		}
		return dst, fmt.Errorf("bool is not T or F: %q", v)
	case kCount:
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			return dst, fmt.Errorf("bad count %q", v)
		}
		return strconv.AppendUint(dst, n, 10), nil
	case kInt:
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return dst, fmt.Errorf("bad int %q", v)
		}
		return strconv.AppendInt(dst, n, 10), nil
	case kFloat:
		f, err := strconv.ParseFloat(string(v), 64)
		switch {
		case math.IsInf(f, 0) || math.IsNaN(f):
			// Zeek writes inf, -inf and nan in TSV, null in JSON.
			if err == nil {
				return append(dst, "null"...), nil
			}
		case err == nil:
			// Zeek's text (six decimals, or an exponent) or any other
			// that Go reads, as JSON's shortest text of that double.
			return strconv.AppendFloat(dst, f, 'f', -1, 64), nil
		}
		return dst, fmt.Errorf("bad number %q", v)
	default:
		return appendJSONString(dst, h.text(v)), nil
	}
}

// text is the string a TSV value stands for.
func (h *tsvHeader) text(v []byte) []byte {
	if bytes.Equal(v, h.empty) {
		return nil // an empty string
	}
	return unescapeZeek(v)
}
