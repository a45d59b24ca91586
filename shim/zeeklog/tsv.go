package zeeklog

import (
	"bytes"
	"math"
	"strconv"
	"strings"
)

// kind of a Zeek type, as its JSON writer renders it.
type valueKind uint8

const (
	kString valueKind = iota // string, addr, subnet, enum, pattern, ...
	kBool
	kInt   // int
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
	cols                      []column
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
		*h = tsvHeader{sep: append([]byte(nil), sep...), setSep: []byte{','}, empty: []byte("(empty)"),
			unset: []byte("-"), uidCol: -1, version: h.version + 1}
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
	case "fields":
		h.fields = make([]string, len(parts)-1)
		for i, p := range parts[1:] {
			h.fields[i] = string(p)
		}
		h.cols = nil
	case "types":
		h.types = make([]string, len(parts)-1)
		for i, p := range parts[1:] {
			h.types[i] = string(p)
		}
		h.cols = nil
	case "path":
	default:
		return nil // #open, #close and comments change nothing
	}
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
func (h *tsvHeader) columns(repl string) error {
	if h.cols != nil {
		return nil
	}
	if h.fields == nil || h.types == nil {
		return lineErr(KindTSVNoHeader, "record before #fields and #types")
	}
	if len(h.fields) != len(h.types) {
		return lineErr(KindTSVNoHeader, "#fields has %d names, #types %d", len(h.fields), len(h.types))
	}
	h.cols = make([]column, len(h.fields))
	h.uidCol = -1
	for i, f := range h.fields {
		if f == "uid" {
			h.uidCol = i
		}
		name := f
		if repl != "." {
			name = strings.ReplaceAll(f, ".", repl)
		}
		c := column{name: append(appendJSONString(nil, []byte(name)), ':')}
		t := h.types[i]
		if inner, ok := containerElem(t); ok {
			c.container = true
			t = inner
		}
		switch t {
		case "bool":
			c.kind = kBool
		case "int":
			c.kind = kInt
		case "count", "port":
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

func containerElem(t string) (string, bool) {
	for _, p := range []string{"set[", "vector["} {
		if strings.HasPrefix(t, p) && strings.HasSuffix(t, "]") {
			return t[len(p) : len(t)-1], true
		}
	}
	return "", false
}

// record converts one data line.
func (h *tsvHeader) record(dst, line []byte, repl string) ([]byte, string, error) {
	if err := h.columns(repl); err != nil {
		return dst, "", err
	}
	start := len(dst)
	dst = append(dst, '{')
	first := true
	uid := ""
	rest := line
	for i := range h.cols {
		var v []byte
		if i == len(h.cols)-1 {
			v, rest = rest, nil
			if bytes.Contains(v, h.sep) {
				return dst[:start], "", lineErr(KindTSVColumns, "more than %d columns", len(h.cols))
			}
		} else {
			var j int
			if len(h.sep) == 1 {
				j = bytes.IndexByte(rest, h.sep[0]) // the usual tab, faster than Index
			} else {
				j = bytes.Index(rest, h.sep)
			}
			if j < 0 {
				return dst[:start], "", lineErr(KindTSVColumns, "%d columns, #fields has %d", i+1, len(h.cols))
			}
			v, rest = rest[:j], rest[j+len(h.sep):]
		}
		if bytes.Equal(v, h.unset) {
			continue // unset: absent, as in Zeek's JSON
		}
		c := &h.cols[i]
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, c.name...)
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
			uid = string(unescapeZeek(v))
		}
	}
	return append(dst, '}'), uid, nil
}

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

type valueError string

func (e valueError) Error() string { return string(e) }

func (h *tsvHeader) appendScalar(dst, v []byte, k valueKind) ([]byte, error) {
	switch k {
	case kBool:
		switch string(v) {
		case "T":
			return append(dst, "true"...), nil
		case "F":
			return append(dst, "false"...), nil
		}
		return dst, valueError("bool is not T or F: " + strconv.Quote(string(v)))
	case kCount:
		if canonicalDigits(v) {
			return append(dst, v...), nil
		}
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			return dst, valueError("bad count " + strconv.Quote(string(v)))
		}
		return strconv.AppendUint(dst, n, 10), nil
	case kInt:
		if canonicalDigits(v) || len(v) > 1 && v[0] == '-' && v[1] != '0' && canonicalDigits(v[1:]) {
			return append(dst, v...), nil
		}
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return dst, valueError("bad int " + strconv.Quote(string(v)))
		}
		return strconv.AppendInt(dst, n, 10), nil
	case kFloat:
		if len(v) > 0 && scanNumber(v) == len(v) && !bytes.ContainsAny(v, "eE") {
			return append(dst, v...), nil // plain decimal: keep Zeek's text
		}
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return dst, valueError("bad number " + strconv.Quote(string(v)))
		}
		if scanNumber(v) == len(v) {
			return append(dst, v...), nil
		}
		return strconv.AppendFloat(dst, f, 'g', -1, 64), nil
	default:
		if bytes.Equal(v, h.empty) {
			return append(dst, '"', '"'), nil
		}
		return appendJSONString(dst, unescapeZeek(v)), nil
	}
}

// canonicalDigits reports whether v is an unsigned decimal without a
// leading zero that fits in 64 bits without checking: JSON can carry
// it as it is.
func canonicalDigits(v []byte) bool {
	if len(v) == 0 || len(v) > 19 || (v[0] == '0' && len(v) > 1) {
		return false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
