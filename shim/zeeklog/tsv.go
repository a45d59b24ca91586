package zeeklog

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
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

// plainOp is the conversion of a column's plain values that usualFields
// does itself.
type plainOp uint8

const (
	plainOther  plainOp = iota // left to appendPlainScalar or appendPlainContainer
	plainString                // copied between quotes
	plainCount                 // copied
	plainBool                  // T, F: true, false
)

type column struct {
	name      []byte   // `,"name":`; the first member goes without the ','
	name32    [32]byte // name, when it fits, for copies of a fixed size
	op        plainOp  // how usualFields converts it
	kind      valueKind
	container bool // set[...] or vector[...]
}

// tsvHeader is the state carried by a TSV file's '#' lines.
type tsvHeader struct {
	sep, setSep, empty, unset []byte
	fields, types             []string
	cols                      []column
	uidCol                    int
	// special marks, once cols is built, the bytes a plain field has
	// none of: the separator, '\\' (Zeek's escapes) and what a JSON
	// string cannot carry as it is.
	special [256]bool
	ends    []int    // recordPlain's scratch
	lines   []string // header lines to persist
	version uint64
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
		h.cols = nil // rebuilt with the new value
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
func (h *tsvHeader) columns() error {
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
		// The name as the header gives it: a Zeek writing TSV with
		// Log::default_scope_sep = "_" writes id_orig_h, stock Zeek
		// id.orig_h, and its JSON writer the same.
		c := column{name: append(appendJSONString([]byte{','}, []byte(f)), ':')}
		copy(c.name32[:], c.name)
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
		if !c.container && len(c.name) <= len(c.name32) {
			switch c.kind {
			case kString:
				c.op = plainString
			case kCount:
				c.op = plainCount
			case kBool:
				c.op = plainBool
			}
		}
		h.cols[i] = c
	}
	for b := range h.special {
		h.special[b] = b >= utf8.RuneSelf || !plain[b]
	}
	if len(h.sep) == 1 {
		h.special[h.sep[0]] = true
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

// recordPlain is record for a line as Zeek writes it, where every field
// is plain: it holds neither escapes nor bytes JSON needs escaped, and
// every value is written as JSON writes it, so values are copied as they
// are. For any other line, valid or not, it reports !ok (and out is nil);
// record then converts the line the general way, which also makes the
// error the same whichever way a line is rejected. It may write past the
// end of out, within cap(dst).
func (h *tsvHeader) recordPlain(dst, line []byte) (out []byte, uid string, ok bool) {
	if len(h.sep) != 1 || len(h.setSep) != 1 {
		return nil, "", false
	}
	ends, ok := plainFieldEnds(h.ends, line, h.sep[0], len(h.cols), &h.special)
	h.ends = ends
	if !ok {
		return nil, "", false
	}
	// Written in place, most of it in fixed-size copies: buf[base:n] is
	// the object so far, every member with a ',' before it; the first
	// becomes the '{'.
	base := len(dst)
	buf, n := dst[:cap(dst)], base
	start := 0
	for ci := 0; ci < len(ends); ci++ {
		// The usual fields, most of them, in a function that calls
		// none, which lets the compiler keep more of its variables in
		// registers (all of them are spilled around a call).
		if n, ci, start = h.usualFields(buf, n, line, ends, ci, start); ci == len(ends) {
			break
		}

		// Any other field.
		end := ends[ci]
		v := line[start:end]
		start = end + 1
		if string(v) == string(h.unset) {
			continue
		}
		c := &h.cols[ci]
		out := append(buf[:n], c.name...)
		if c.container {
			out, ok = h.appendPlainContainer(out, v, c.kind)
		} else {
			out, ok = h.appendPlainScalar(out, v, c.kind)
		}
		if !ok {
			return nil, "", false
		}
		buf, n = out[:cap(out)], len(out)
	}
	out = buf[:n]
	if n == base {
		out = append(out, '{')
	} else {
		out[base] = '{'
	}
	if u := h.uidCol; u >= 0 {
		start := 0
		if u > 0 {
			start = ends[u-1] + 1
		}
		if v := line[start:ends[u]]; string(v) != string(h.unset) {
			uid = string(v) // plain: nothing to unescape
		}
	}
	return append(out, '}'), uid, true
}

// usualFields converts, for recordPlain, the fields from ci on (starting
// at start in line) while they are of the usual kinds, into buf[n:], where
// they are copied at once: room permitting, sixteen bytes of the line for
// a value, 32 bytes for a name. It returns the new n, ci and start.
func (h *tsvHeader) usualFields(buf []byte, n int, line []byte, ends []int, ci, start int) (int, int, int) {
	for ; ci < len(ends); ci++ {
		end := ends[ci]
		v := line[start:end]
		if len(v) == len(h.unset) {
			if len(v) != 1 {
				break // a longer comparison
			}
			if v[0] == h.unset[0] {
				start = end + 1
				continue // unset: absent, as in Zeek's JSON
			}
		}
		c := &h.cols[ci]
		if len(v) > 16 || len(buf)-n < len(c.name)+len(v)+48 {
			break
		}
		switch {
		case c.op == plainString && len(v) != len(h.empty):
			*(*[32]byte)(buf[n:]) = c.name32
			n += len(c.name)
			buf[n] = '"'
			n = copyShort(buf, n+1, line, start, end)
			buf[n] = '"'
			n++
		case c.op == plainCount && canonicalDigits(v):
			*(*[32]byte)(buf[n:]) = c.name32
			n += len(c.name)
			n = copyShort(buf, n, line, start, end)
		case c.op == plainBool && len(v) == 1 && v[0] == 'T':
			*(*[32]byte)(buf[n:]) = c.name32
			n += len(c.name)
			*(*[4]byte)(buf[n:]) = [4]byte{'t', 'r', 'u', 'e'}
			n += 4
		case c.op == plainBool && len(v) == 1 && v[0] == 'F':
			*(*[32]byte)(buf[n:]) = c.name32
			n += len(c.name)
			*(*[5]byte)(buf[n:]) = [5]byte{'f', 'a', 'l', 's', 'e'}
			n += 5
		default:
			return n, ci, start
		}
		start = end + 1
	}
	return n, ci, start
}

// copyShort copies line[i:j], at most 16 bytes, to buf[n:], which has room
// for 16, and returns n+j-i.
func copyShort(buf []byte, n int, line []byte, i, j int) int {
	if i+16 <= len(line) {
		*(*[16]byte)(buf[n:]) = *(*[16]byte)(line[i:]) // one copy
	} else {
		for k, b := range line[i:j] { // no call
			buf[n+k] = b
		}
	}
	return n + j - i
}

// plainFieldEnds sets ends (reusing its storage) to where each of the
// fields of line ends, and reports whether line has n fields, all plain.
// special marks the separator and the bytes that are not plain. A byte at
// a time through a table measured faster than eight at a time with shifts
// and masks. Inlined into recordPlain, the loop ran much slower (its
// variables spilled around recordPlain's calls), hence the noinline.
//
//go:noinline
func plainFieldEnds(ends []int, line []byte, sep byte, n int, special *[256]bool) ([]int, bool) {
	ends = ends[:0]
	_ = special[0] // one nil check, not one per byte
	for j, b := range line {
		if special[b] {
			if b != sep {
				return ends, false
			}
			ends = append(ends, j)
		}
	}
	return append(ends, len(line)), len(ends) == n-1
}

// appendPlainContainer is appendContainer for a plain field, !ok where
// that needs more than appendPlainScalar.
func (h *tsvHeader) appendPlainContainer(dst, v []byte, k valueKind) ([]byte, bool) {
	dst = append(dst, '[')
	if bytes.Equal(v, h.empty) {
		return append(dst, ']'), true
	}
	for n := 0; ; n++ {
		if n > 0 {
			dst = append(dst, ',')
		}
		e := v
		j := bytes.IndexByte(v, h.setSep[0])
		if j >= 0 {
			e, v = v[:j], v[j+1:]
		}
		if bytes.Equal(e, h.unset) {
			dst = append(dst, "null"...)
		} else {
			var ok bool
			if dst, ok = h.appendPlainScalar(dst, e, k); !ok {
				return dst, false
			}
		}
		if j < 0 {
			return append(dst, ']'), true
		}
	}
}

// appendPlainScalar is appendScalar for a plain value that JSON carries as
// it is (but for the quotes of a string), !ok for any other value.
func (h *tsvHeader) appendPlainScalar(dst, v []byte, k valueKind) ([]byte, bool) {
	switch k {
	case kString:
		if bytes.Equal(v, h.empty) {
			return append(dst, '"', '"'), true
		}
		dst = append(dst, '"')
		dst = append(dst, v...)
		return append(dst, '"'), true
	case kBool:
		if len(v) == 1 && v[0] == 'T' {
			return append(dst, "true"...), true
		}
		if len(v) == 1 && v[0] == 'F' {
			return append(dst, "false"...), true
		}
	case kCount:
		if canonicalDigits(v) {
			return append(dst, v...), true
		}
	case kInt:
		if canonicalInt(v) {
			return append(dst, v...), true
		}
	case kFloat:
		if plainDecimal(v) {
			return append(dst, v...), true
		}
	}
	return dst, false
}

// record converts one data line; generalOnly skips the fast path
// (recordPlain), for the tests' oracle (see Parser.generalOnly).
func (h *tsvHeader) record(dst, line []byte, generalOnly bool) ([]byte, string, error) {
	if err := h.columns(); err != nil {
		return dst, "", err
	}
	if !generalOnly {
		if out, uid, ok := h.recordPlain(dst, line); ok {
			return out, uid, nil
		}
	}
	start := len(dst)
	dst = append(dst, '{')
	comma := 1 // 0 once a member is out: name[comma:]
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
		dst = append(dst, c.name[comma:]...)
		comma = 0
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
		if canonicalInt(v) {
			return append(dst, v...), nil
		}
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return dst, valueError("bad int " + strconv.Quote(string(v)))
		}
		return strconv.AppendInt(dst, n, 10), nil
	case kFloat:
		if plainDecimal(v) {
			return append(dst, v...), nil // keep Zeek's text
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

// plainDecimal reports whether v is a JSON number without an exponent.
func plainDecimal(v []byte) bool {
	n := scanNumber(v)
	if n == 0 || n != len(v) {
		return false
	}
	for _, c := range v {
		if c == 'e' || c == 'E' {
			return false
		}
	}
	return true
}

// canonicalInt is canonicalDigits with an optional '-' (but no "-0").
func canonicalInt(v []byte) bool {
	return canonicalDigits(v) || len(v) > 1 && v[0] == '-' && v[1] != '0' && canonicalDigits(v[1:])
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
