package zeeklog

import (
	"bytes"

	"github.com/tidwall/gjson"
)

// ValidateJSON checks that line is one JSON object (whitespace around it
// allowed) and returns the value of its top-level "uid" member (the first
// one, escapes decoded) when that is a string, "" otherwise. Zeek's JSON lines are forwarded as they
// are: the package makes Zeek write the field names flowlogs-pipeline
// addresses.
//
// gjson's validator recurses once per level of nesting: a line of 1 MiB
// nested all the way down takes some 128 MB of stack for a moment; Zeek's
// own lines nest a level or two.
func ValidateJSON(line []byte) (string, error) {
	if t := bytes.TrimLeft(line, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return "", lineErr(KindJSONNotObject, "line is not a JSON object")
	}
	if !gjson.ValidBytes(line) {
		return "", lineErr(KindJSONSyntax, "not valid JSON (%d bytes)", len(line))
	}
	if uid := gjson.GetBytes(line, "uid"); uid.Type == gjson.String {
		return uid.Str, nil
	}
	return "", nil
}
