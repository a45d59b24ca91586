package zeeklog

import (
	"bytes"
	"encoding/hex"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as Zeek's JSON writer writes a string (Zeek
// 8.0, measured with it in zeek_test.go). JSON's short escapes for '"',
// '\\', \b, \f, \n, \r and \t; any other control byte, and DEL, as the
// text \xHH. When s holds any such byte, or a byte that is not UTF-8, or
// a C1 control, a private-use character of the BMP or one of U+FFF0 to
// U+FFFF, Zeek writes every byte of the whole string above 0x7f as \xHH
// too; otherwise such bytes go as they are.
func appendJSONString(dst, s []byte) []byte {
	hexAll := needsHex(s)
	dst = append(dst, '"')
	start := 0 // of the bytes not yet appended, which go as they are
	for i, b := range s {
		if b >= 0x20 && b != '"' && b != '\\' && b != 0x7f && (b < utf8.RuneSelf || !hexAll) {
			continue
		}
		dst = append(dst, s[start:i]...)
		start = i + 1
		switch b {
		case '"', '\\':
			dst = append(dst, '\\', b)
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', '\\', 'x', hexDigits[b>>4], hexDigits[b&0xf])
		}
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// needsHex reports whether Zeek writes all of s's bytes above 0x7f as
// \xHH (see appendJSONString).
func needsHex(s []byte) bool {
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b < 0x20 && b != '\b' && b != '\f' && b != '\n' && b != '\r' && b != '\t' || b == 0x7f {
				return true
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && n == 1 || r <= 0x9f || r >= 0xe000 && r <= 0xf8ff || r >= 0xfff0 && r <= 0xffff {
			return true
		}
		i += n
	}
	return false
}

// unescapeZeek decodes what Zeek's TSV writer escapes in a value: a
// backslash as \\, and separators, placeholders, control bytes and
// bytes that are not UTF-8 as \xHH. Any other backslash is kept. It
// returns s itself when there is nothing to decode.
func unescapeZeek(s []byte) []byte {
	i := bytes.IndexByte(s, '\\')
	if i < 0 {
		return s
	}
	out := append(make([]byte, 0, len(s)), s[:i]...)
	for ; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			if s[i+1] == '\\' {
				out = append(out, '\\')
				i++
				continue
			}
			if s[i+1] == 'x' && i+3 < len(s) {
				var b [1]byte
				if _, err := hex.Decode(b[:], s[i+2:i+4]); err == nil {
					out = append(out, b[0])
					i += 3
					continue
				}
			}
		}
		out = append(out, s[i])
	}
	return out
}
