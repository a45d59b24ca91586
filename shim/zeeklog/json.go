package zeeklog

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// maxDepth bounds nesting so that a hostile line cannot exhaust the stack.
const maxDepth = 64

// jsonConv validates one JSON line and finds its top-level "uid".
type jsonConv struct {
	src []byte
	i   int
	uid string
}

// ValidateJSON checks that line is one JSON object (whitespace around it
// allowed) and returns the value of its top-level "uid" string member (""
// when absent). Zeek's JSON lines are forwarded as they are: the package
// makes Zeek write the field names flowlogs-pipeline addresses.
func ValidateJSON(line []byte) (string, error) {
	c := jsonConv{src: line}
	c.ws()
	if c.i >= len(c.src) || c.src[c.i] != '{' {
		return "", lineErr(KindJSONNotObject, "line is not a JSON object")
	}
	if err := c.object(); err != nil {
		return "", err
	}
	c.ws()
	if c.i != len(c.src) {
		return "", lineErr(KindJSONSyntax, "data after the JSON object at byte %d", c.i)
	}
	return c.uid, nil
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

// object reads the top-level object whose '{' is at c.i, noting its uid.
func (c *jsonConv) object() error {
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
		if _, err := c.skipString(); err != nil {
			return err
		}
		key := c.src[start+1 : c.i-1]
		c.ws()
		if c.i >= len(c.src) || c.src[c.i] != ':' {
			return c.syntax("expected ':'")
		}
		c.i++
		c.ws()
		vstart := c.i
		if err := c.skipValue(2); err != nil {
			return err
		}
		if string(key) == "uid" && c.src[vstart] == '"' {
			c.uid = decodeJSONString(c.src[vstart:c.i])
		}
		if done, err := c.afterMember('}', "object"); done || err != nil {
			return err
		}
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
