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

func (c *jsonConv) ws() {
	for c.i < len(c.src) {
		switch c.src[c.i] {
		case ' ', '\t', '\r', '\n':
			c.i++
		default:
			return
		}
	}
}

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
		// Skip plain bytes in a tight loop; only the few that end or
		// escape a string need a closer look.
		i, src := c.i, c.src
		for i < len(src) && !stringStop[src[i]] {
			i++
		}
		if c.i = i; i >= len(src) {
			break
		}
		b := src[i]
		switch {
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
		case b < 0x20:
			return escaped, c.syntax("control character in string")
		default:
			c.i++
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
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return 0
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return 0
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
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
