package zeeklog

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzValidateJSON: the check accepts exactly the JSON objects that
// encoding/json accepts, finds the uid encoding/json decodes for the
// first top-level "uid" member, and the parser forwards an accepted line
// unchanged.
func FuzzValidateJSON(f *testing.F) {
	f.Add([]byte(`{"ts":1795642521.689299,"uid":"CI8ddR33VLCIehSzKd","id_orig_h":"10.253.0.1","id_orig_p":43259,"rtt":0.0006518363952636719,"answers":["192.0.2.10"],"TTLs":[300.0],"AA":true}`))
	f.Add([]byte(`{"a":{"b.c":[1,{"d":null}]},"e":"\u00e9\n"}`))
	f.Add([]byte(`{"a":1,}`))
	f.Add([]byte(`{"u\u0069d":7,"uid":"second"}`))
	f.Add([]byte("{\"uid\":\"\\ud800\\udc00\\ud800x\xff\\u0000\"}"))
	f.Fuzz(func(t *testing.T, line []byte) {
		uid, err := ValidateJSON(line)
		var v any
		stdErr := json.Unmarshal(line, &v)
		if stdErr != nil && strings.Contains(stdErr.Error(), "exceeded max depth") {
			return // encoding/json's own limit, not JSON's
		}
		_, isObj := v.(map[string]any)
		if stdErr == nil && isObj {
			if err != nil {
				t.Fatalf("rejected valid object %q: %v", line, err)
			}
		} else if err == nil {
			t.Fatalf("accepted %q (encoding/json: %v)", line, stdErr)
		}
		if err != nil {
			if k := ErrorKind(err); k != KindJSONSyntax && k != KindJSONNotObject {
				t.Fatalf("%q: error of kind %s", line, k)
			}
			return
		}
		// encoding/json decodes each byte that is not UTF-8 as U+FFFD;
		// the uid keeps the bytes, which ranging over it turns the same.
		var fixed strings.Builder
		for _, r := range uid {
			fixed.WriteRune(r)
		}
		if want := firstUID(t, line); fixed.String() != want {
			t.Fatalf("uid %q, want %q in %q", uid, want, line)
		}
		if trimmed := bytes.TrimSpace(line); len(trimmed) == len(line) && !bytes.ContainsAny(line, "\r\n") {
			out, puid, typ, err := NewParser().Parse([]byte("pre"), line)
			if err != nil || typ != Record || puid != uid || string(out) != "pre"+string(line) {
				t.Fatalf("parser: %q %q %v %v for %q", out, puid, typ, err, line)
			}
		}
	})
}

// firstUID decodes, with encoding/json, the first top-level member of a
// valid object named "uid" (escapes decoded), when it is a string.
func firstUID(t *testing.T, line []byte) string {
	dec := json.NewDecoder(bytes.NewReader(line))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		if k == "uid" {
			var s string
			if json.Unmarshal(v, &s) != nil {
				return ""
			}
			return s
		}
	}
	return ""
}

// fuzzHeader is a real dns.log header (stock Zeek's names).
var fuzzHeader = []string{
	"#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)", "#unset_field\t-", "#path\tdns",
	"#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\ttrans_id\trtt\tquery\tqclass\tqclass_name\tqtype\tqtype_name\trcode\trcode_name\tAA\tTC\tRD\tRA\tZ\tanswers\tTTLs\trejected\topcode\topcode_name\toriginal_query",
	"#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tcount\tinterval\tstring\tcount\tstring\tcount\tstring\tcount\tstring\tbool\tbool\tbool\tbool\tcount\tvector[string]\tvector[interval]\tbool\tcount\tstring\tstring",
}

// FuzzTSV: any line after a real header is either rejected with a kind,
// dst untouched, or converted to one JSON object appended to dst: a
// member for each column not unset, named and ordered as the header says,
// a string column's member the column's text when that needs no \xHH,
// and the uid that of the uid column.
func FuzzTSV(f *testing.F) {
	f.Add([]byte("1592402712.248901\tCHhAvVGS1DHFjwGM9\t192.168.3.138\t63374\t192.168.3.1\t53\tudp\t20877\t-\tus.v27.distributed.net\t1\tC_INTERNET\t1\tA\t-\t-\tF\tF\tT\tF\t2\t-\t-\tF\t0\tquery\tUs.V27.DiStRiBuTeD.NET"))
	f.Add([]byte("1.0\tC\t::1\t1\t::1\t53\ttcp\t1\t0.5\tq\t1\tC\t1\tA\t0\tNOERROR\tT\tF\tT\tF\t0\ta,b\t1.0,2.0\tF\t0\tquery\t\\x2d"))
	f.Add([]byte("#fields\tx\ty"))
	f.Add([]byte(`{"ts":1.5,"uid":"C"}`))
	f.Add([]byte("2147483648.5\t\\\\x41\\x00\xc3\xa9\t\\x23x\t1\t(empty)\t-\tudp\t0\tinf\t\\x2d\t1\t \t1\tA\t0\tNOERROR\tT\tF\tT\tF\t0\t(empty),-,\\x2c\tnan,-inf,2.5e+09\tF\t0\tquery\t\xff"))
	f.Fuzz(func(t *testing.T, line []byte) {
		p := NewParser()
		for _, h := range fuzzHeader {
			if _, _, _, err := p.Parse(nil, []byte(h)); err != nil {
				t.Fatal(err)
			}
		}
		out, uid, typ, err := p.Parse([]byte("pre"), line)
		if err != nil {
			if ErrorKind(err) == "other" || string(out) != "pre" {
				t.Fatalf("%q: error %v, output %q", line, err, out)
			}
			return
		}
		rest, ok := bytes.CutPrefix(out, []byte("pre"))
		if !ok || typ == Meta && len(rest) != 0 {
			t.Fatalf("%q: output %q for type %d", line, out, typ)
		}
		if typ == Meta {
			return
		}
		fields := strings.Fields(fuzzHeader[5])[1:]
		types := strings.Fields(fuzzHeader[6])[1:]
		cols := strings.Split(strings.TrimSuffix(string(line), "\r"), "\t")
		got, order := jsonMembers(t, rest)
		var names []string
		for i, c := range cols {
			if c == "-" {
				continue
			}
			names = append(names, fields[i])
			text := unescapeZeek([]byte(c))
			if c == "(empty)" {
				text = nil
			}
			if types[i] == "string" {
				// The text itself, or with every byte that is not
				// printable ASCII (but \b\f\n\r\t) as \xHH.
				s, _ := got[fields[i]].(string)
				if needsHex(text) {
					if strings.IndexFunc(s, func(r rune) bool { return r >= 0x7f || r < 0x20 && !strings.ContainsRune("\b\f\n\r\t", r) }) >= 0 {
						t.Fatalf("%q: %s is %q, not in \\xHH", line, fields[i], s)
					}
				} else if s != string(text) {
					t.Fatalf("%q: %s is %q, want %q", line, fields[i], s, text)
				}
			}
			if fields[i] == "uid" && uid != got["uid"] {
				t.Fatalf("%q: uid %q, want %q", line, uid, got["uid"])
			}
		}
		if strings.Join(names, ",") != strings.Join(order, ",") {
			t.Fatalf("%q: members %q, want %q", line, order, names)
		}
	})
}

// jsonMembers decodes a JSON object, requiring exactly one, and returns
// its members (numbers as json.Number) and their names in order.
func jsonMembers(t *testing.T, obj []byte) (map[string]any, []string) {
	t.Helper()
	if !json.Valid(obj) {
		t.Fatalf("invalid JSON %q", obj)
	}
	dec := json.NewDecoder(bytes.NewReader(obj))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		t.Fatalf("%q is not an object: %v", obj, err)
	}
	dec = json.NewDecoder(bytes.NewReader(obj))
	dec.Token()
	var order []string
	for dec.More() {
		k, _ := dec.Token()
		order = append(order, k.(string))
		var skip json.RawMessage
		dec.Decode(&skip)
	}
	return m, order
}
