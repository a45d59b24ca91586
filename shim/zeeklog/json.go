package zeeklog

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// maxDepth bounds nesting so that a hostile line cannot exhaust the stack.
const maxDepth = 64

// jsonConv rewrites one Zeek JSON line into a flat object. It validates
// the whole line while copying values byte for byte, so numbers keep the
// exact text Zeek wrote.
type jsonConv struct {
	src   []byte
	i     int
	dst   []byte
	repl  string
	uid   string
	first bool
}

// ConvertJSON appends to dst the flat JSON object for one Zeek JSON line:
// '.' in member names becomes repl, nested objects are flattened with repl
// between the names, and every value is copied unchanged. It returns the
// extended dst and the value of the top-level "uid" string member ("" when
// absent).
func ConvertJSON(dst, line []byte, repl string) ([]byte, string, error) {
	if out, uid, ok := convertZeekJSON(dst, line, repl); ok {
		return out, uid, nil
	}
	return convertJSONGeneral(dst, line, repl)
}

// convertJSONGeneral is ConvertJSON without the fast path: it reads any
// line. The tests also run it alone, as the oracle convertZeekJSON must
// agree with.
func convertJSONGeneral(dst, line []byte, repl string) ([]byte, string, error) {
	c := jsonConv{src: line, dst: dst, repl: repl, first: true}
	c.ws()
	if c.i >= len(c.src) || c.src[c.i] != '{' {
		return dst, "", lineErr(KindJSONNotObject, "line is not a JSON object")
	}
	c.dst = append(c.dst, '{')
	if err := c.object(nil, 1); err != nil {
		return dst, "", err
	}
	c.ws()
	if c.i != len(c.src) {
		return dst, "", lineErr(KindJSONSyntax, "data after the JSON object at byte %d", c.i)
	}
	c.dst = append(c.dst, '}')
	return c.dst, c.uid, nil
}

// convertZeekJSON is ConvertJSON for lines written as Zeek writes them: no
// whitespace, no escapes in member names, no objects in values, no arrays
// in arrays, and a one-byte repl. There the output is the line itself with
// the '.' in member names replaced, so it copies the line at once, then
// validates it (in full, as ConvertJSON) and renames in place. For any
// other line, valid or not, it reports !ok (and out is nil); ConvertJSON
// then reads the line the general way, which also makes the error the
// same whichever way a line is rejected.
func convertZeekJSON(dst, src []byte, repl string) (out []byte, uid string, ok bool) {
	if len(repl) != 1 || len(src) < 2 || src[0] != '{' || src[len(src)-1] != '}' {
		return nil, "", false
	}
	base := len(dst)
	dst = append(dst, src...)
	if len(src) == 2 {
		return dst, "", true // {}
	}
	// out[k] is the copy of src[k]: a name renamed there is renamed in dst.
	out = dst[base:][:len(src)]
	i := 1
	for {
		// A member name; i is at its opening quote. Its '.' are renamed
		// as they are met (to '.' itself when repl is ".").
		if src[i] != '"' {
			return nil, "", false
		}
		j := i + 1
		for ; j < len(src); j++ {
			if c := nameClass[src[j]]; c != 0 {
				if c != '.' {
					break
				}
				out[j] = repl[0]
			}
		}
		if j >= len(src) || src[j] != '"' {
			return nil, "", false
		}
		isUID := j-i == 4 && string(src[i+1:j]) == "uid"
		if i = j + 1; i+1 >= len(src) || src[i] != ':' {
			return nil, "", false
		}
		i++

		// Its value; i is at its first byte, and i < len(src).
		switch b := src[i]; {
		case b == '"':
			j := stringRun(src, i+1)
			if j >= len(src) || src[j] != '"' {
				return nil, "", false
			}
			if isUID {
				if v := src[i+1 : j]; utf8.Valid(v) {
					uid = string(v) // no escapes: stringRun stops at '\\'
				} else {
					uid = decodeJSONString(src[i : j+1])
				}
			}
			i = j + 1
		case b-'0' <= 9 || b == '-':
			// Most are small counts: test their digits here.
			j := i + 1
			for j < len(src) && src[j]-'0' <= 9 {
				j++
			}
			if b == '0' && j > i+1 {
				return nil, "", false // a leading zero: ConvertJSON says so
			}
			if b == '-' || j < len(src) && (src[j] == '.' || src[j]|0x20 == 'e') {
				n := scanNumber(src[i:])
				if n == 0 {
					return nil, "", false
				}
				j = i + n
			}
			i = j
		default:
			if i = scanFlatValue(src, i, true); i < 0 {
				return nil, "", false
			}
		}

		// src ends with '}', and i < len(src) unless that '}' ended the
		// last value: i == len(src) is malformed (say `{"a":"}`).
		if i >= len(src) {
			return nil, "", false
		}
		switch src[i] {
		case ',':
			i++ // < len(src): the line ends with '}'
		case '}':
			if i != len(src)-1 {
				return nil, "", false
			}
			return dst, uid, true
		default:
			return nil, "", false
		}
	}
}

// nameClass is 0 for the bytes that go on a member name, '.' for the dot,
// 1 for the bytes that end it (stringStop).
var nameClass = func() (t [256]byte) {
	for b, stop := range stringStop {
		if stop {
			t[b] = 1
		}
	}
	t['.'] = '.'
	return t
}()

// scanFlatValue returns the end of the string, number or literal starting
// at src[i], with arrays also of an array of them; -1 when there is none
// or it needs the general converter (whitespace, escapes, nesting).
func scanFlatValue(src []byte, i int, arrays bool) int {
	switch b := src[i]; {
	case b == '"':
		if j := stringRun(src, i+1); j < len(src) && src[j] == '"' {
			return j + 1
		}
	case b >= '0' && b <= '9' || b == '-':
		if n := scanNumber(src[i:]); n > 0 {
			return i + n
		}
	case b == 't':
		return flatLiteral(src, i, "true")
	case b == 'f':
		return flatLiteral(src, i, "false")
	case b == 'n':
		return flatLiteral(src, i, "null")
	case b == '[' && arrays:
		if i++; i < len(src) && src[i] == ']' {
			return i + 1
		}
		for i < len(src) {
			if i = scanFlatValue(src, i, false); i < 0 || i >= len(src) {
				return -1
			}
			switch src[i] {
			case ',':
				i++
			case ']':
				return i + 1
			default:
				return -1
			}
		}
	}
	return -1
}

// flatLiteral returns the end of lit at src[i], or -1 when it is not there.
func flatLiteral(src []byte, i int, lit string) int {
	if len(src)-i >= len(lit) && string(src[i:i+len(lit)]) == lit {
		return i + len(lit)
	}
	return -1
}

func (c *jsonConv) ws() {
	for c.i < len(c.src) && jsonSpace[c.src[c.i]] {
		c.i++
	}
}

// jsonSpace marks JSON's whitespace; a table lookup keeps ws small enough
// to inline.
var jsonSpace = [256]bool{' ': true, '\t': true, '\r': true, '\n': true}

// afterMember reads what follows an array element or object member: ','
// (more to come) or the closing byte (done).
func (c *jsonConv) afterMember(closing byte, container string) (done bool, err error) {
	c.ws()
	if c.i >= len(c.src) {
		return false, c.syntax("unterminated " + container)
	}
	switch c.src[c.i] {
	case ',':
		c.i++
		return false, nil
	case closing:
		c.i++
		return true, nil
	default:
		return false, c.syntax("expected ',' or '" + string(closing) + "'")
	}
}

func (c *jsonConv) syntax(what string) error {
	return lineErr(KindJSONSyntax, "%s at byte %d", what, c.i)
}

// object reads the members of the object whose '{' is at c.i and emits
// them with prefix prepended to their names.
func (c *jsonConv) object(prefix []byte, depth int) error {
	if depth > maxDepth {
		return c.syntax("nesting too deep")
	}
	c.i++ // '{'
	c.ws()
	if c.i < len(c.src) && c.src[c.i] == '}' {
		c.i++
		return nil
	}
	for {
		c.ws()
		if c.i >= len(c.src) || c.src[c.i] != '"' {
			return c.syntax("expected a member name")
		}
		start := c.i
		escaped, err := c.skipString()
		if err != nil {
			return err
		}
		key := c.src[start+1 : c.i-1]
		c.ws()
		if c.i >= len(c.src) || c.src[c.i] != ':' {
			return c.syntax("expected ':'")
		}
		c.i++
		c.ws()
		if c.i >= len(c.src) {
			return c.syntax("expected a value")
		}
		if c.src[c.i] == '{' {
			name := c.memberName(prefix, key, escaped)
			if err := c.object(append(name, c.repl...), depth+1); err != nil {
				return err
			}
		} else {
			vstart := c.i
			// Strings and numbers, nearly every value, skip the
			// general case.
			switch b := c.src[c.i]; {
			case b == '"':
				if _, err := c.skipString(); err != nil {
					return err
				}
			case b >= '0' && b <= '9' || b == '-':
				n := scanNumber(c.src[c.i:])
				if n == 0 {
					return c.syntax("bad number")
				}
				c.i += n
			default:
				if err := c.skipValue(depth + 1); err != nil {
					return err
				}
			}
			val := c.src[vstart:c.i]
			if depth == 1 && len(prefix) == 0 && string(key) == "uid" && val[0] == '"' {
				c.uid = decodeJSONString(val)
			}
			// Built in a local: one store of c.dst per member.
			dst := c.dst
			if !c.first {
				dst = append(dst, ',')
			}
			c.first = false
			dst = append(dst, '"')
			if len(prefix) == 0 && !escaped {
				dst = c.appendRenamed(dst, key)
			} else {
				dst = append(dst, c.memberName(prefix, key, escaped)...)
			}
			dst = append(dst, '"', ':')
			c.dst = append(dst, val...)
		}
		if done, err := c.afterMember('}', "object"); done || err != nil {
			return err
		}
	}
}

// memberName returns prefix + the decoded key with '.' replaced, as the
// bytes between the quotes of a JSON string.
func (c *jsonConv) memberName(prefix, key []byte, escaped bool) []byte {
	name := make([]byte, 0, len(prefix)+len(key)+8)
	name = append(name, prefix...)
	if escaped {
		// Rare: decode, rename, re-encode without the quotes.
		dec := []byte(decodeJSONString(append(append([]byte{'"'}, key...), '"')))
		if c.repl != "." {
			dec = bytes.ReplaceAll(dec, []byte{'.'}, []byte(c.repl))
		}
		enc := appendJSONString(nil, dec)
		return append(name, enc[1:len(enc)-1]...)
	}
	return c.appendRenamed(name, key)
}

// appendRenamed appends key (raw JSON string content without escapes)
// with '.' replaced.
func (c *jsonConv) appendRenamed(dst, key []byte) []byte {
	if c.repl == "." {
		return append(dst, key...)
	}
	if len(c.repl) == 1 {
		// Names are short: copy, then replace in place.
		n := len(dst)
		dst = append(dst, key...)
		for j := n; j < len(dst); j++ {
			if dst[j] == '.' {
				dst[j] = c.repl[0]
			}
		}
		return dst
	}
	for {
		i := bytes.IndexByte(key, '.')
		if i < 0 {
			return append(dst, key...)
		}
		dst = append(dst, key[:i]...)
		dst = append(dst, c.repl...)
		key = key[i+1:]
	}
}

// skipString moves past the string starting at c.i and reports whether it
// holds escape sequences.
func (c *jsonConv) skipString() (escaped bool, err error) {
	c.i++ // opening quote
	for c.i < len(c.src) {
		// Skip plain bytes at once; only the few that end or escape a
		// string need a closer look.
		if c.i = stringRun(c.src, c.i); c.i >= len(c.src) {
			break
		}
		switch b := c.src[c.i]; {
		case b == '"':
			c.i++
			return escaped, nil
		case b == '\\':
			escaped = true
			if c.i+1 >= len(c.src) {
				return escaped, c.syntax("unterminated escape")
			}
			switch c.src[c.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				c.i += 2
			case 'u':
				if c.i+6 > len(c.src) {
					return escaped, c.syntax("short \\u escape")
				}
				for _, h := range c.src[c.i+2 : c.i+6] {
					if !isHex(h) {
						return escaped, c.syntax("bad \\u escape")
					}
				}
				c.i += 6
			default:
				return escaped, c.syntax("bad escape")
			}
		default: // b < 0x20
			return escaped, c.syntax("control character in string")
		}
	}
	return escaped, c.syntax("unterminated string")
}

func (c *jsonConv) skipValue(depth int) error {
	if depth > maxDepth {
		return c.syntax("nesting too deep")
	}
	if c.i >= len(c.src) {
		return c.syntax("expected a value")
	}
	switch b := c.src[c.i]; {
	case b == '"':
		_, err := c.skipString()
		return err
	case b == '-' || (b >= '0' && b <= '9'):
		n := scanNumber(c.src[c.i:])
		if n == 0 {
			return c.syntax("bad number")
		}
		c.i += n
		return nil
	case b == 't':
		return c.literal("true")
	case b == 'f':
		return c.literal("false")
	case b == 'n':
		return c.literal("null")
	case b == '[':
		c.i++
		c.ws()
		if c.i < len(c.src) && c.src[c.i] == ']' {
			c.i++
			return nil
		}
		for {
			c.ws()
			if err := c.skipValue(depth + 1); err != nil {
				return err
			}
			if done, err := c.afterMember(']', "array"); done || err != nil {
				return err
			}
		}
	case b == '{':
		// Objects inside arrays are validated and copied as they are.
		c.i++
		c.ws()
		if c.i < len(c.src) && c.src[c.i] == '}' {
			c.i++
			return nil
		}
		for {
			c.ws()
			if c.i >= len(c.src) || c.src[c.i] != '"' {
				return c.syntax("expected a member name")
			}
			if _, err := c.skipString(); err != nil {
				return err
			}
			c.ws()
			if c.i >= len(c.src) || c.src[c.i] != ':' {
				return c.syntax("expected ':'")
			}
			c.i++
			c.ws()
			if err := c.skipValue(depth + 1); err != nil {
				return err
			}
			if done, err := c.afterMember('}', "object"); done || err != nil {
				return err
			}
		}
	default:
		return c.syntax("unexpected character")
	}
}

func (c *jsonConv) literal(lit string) error {
	if !strings.HasPrefix(string(c.src[c.i:min(len(c.src), c.i+len(lit))]), lit) {
		return c.syntax("bad literal")
	}
	c.i += len(lit)
	return nil
}

// scanNumber returns the length of the JSON number at the start of b, or
// 0 when b does not start with one.
func scanNumber(b []byte) int {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digitRun(b, i+1)
	default:
		return 0
	}
	if i < len(b) && b[i] == '.' {
		d := i + 1
		if i = digitRun(b, d); i == d {
			return 0
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		if i = digitRun(b, d); i == d {
			return 0
		}
	}
	return i
}

// stringStop marks the bytes that end a run of plain string content:
// the closing quote, a backslash, and control characters (an error).
var stringStop = func() (t [256]bool) {
	for b := 0; b < 0x20; b++ {
		t[b] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

func isHex(b byte) bool {
	return (b >= '0' && b <= '9') || (b >= 'a' && b <= 'f') || (b >= 'A' && b <= 'F')
}

// decodeJSONString decodes a validated JSON string literal (with quotes).
func decodeJSONString(lit []byte) string {
	if len(lit) >= 2 && !containsByte(lit, '\\') && utf8.Valid(lit) {
		return string(lit[1 : len(lit)-1])
	}
	// Escapes or invalid UTF-8 (which decoders turn into U+FFFD).
	var s string
	if err := json.Unmarshal(lit, &s); err != nil {
		return ""
	}
	return s
}

func containsByte(b []byte, c byte) bool {
	for _, x := range b {
		if x == c {
			return true
		}
	}
	return false
}
