package zeeklog

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestJSONUnchanged: a JSON line is forwarded as it is (nested objects,
// escapes, whitespace and all); only its uid is read.
func TestJSONUnchanged(t *testing.T) {
	cases := []struct{ in, uid string }{
		{`{"ts":1.5,"uid":"Cabc","id_orig_h":"10.0.0.1","id_orig_p":53,"answers":["a","b"],"TTLs":[300.0],"AA":true,"x":null}`, "Cabc"},
		{`{"ts":1.5,"uid":"Cabc","id.orig_h":"10.0.0.1"}`, "Cabc"},
		{` { "a.b.c" : 0.0006518363952636719 , "n":{"x.y":1,"z":{"w":"v"}} } `, ""},
		{`{"uid":"C\u0041b","k\u002ey":-1e-5}`, "CAb"},
		{`{"u\u0069d":"Cesc","uid":"Csecond"}`, "Cesc"},
		{`{}`, ""},
		{`{"arr":[{"in.ner":1},[],[[2]]],"n":{"uid":"inner"}}`, ""},
		{`{"uid":7}`, ""},
	}
	for _, c := range cases {
		out, uid, typ, err := NewParser().Parse([]byte("pre"), []byte(c.in))
		if err != nil || typ != Record {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if string(out) != "pre"+c.in || uid != c.uid {
			t.Errorf("%s:\n got %s uid %q\nwant %s uid %q", c.in, out, uid, "pre"+c.in, c.uid)
		}
	}
}

func TestValidateJSONRejects(t *testing.T) {
	bad := map[string]string{
		`[1,2]`:                                  KindJSONNotObject,
		`"x"`:                                    KindJSONNotObject,
		``:                                       KindJSONNotObject,
		`{"a":1`:                                 KindJSONSyntax,
		`{"a":1}}`:                               KindJSONSyntax,
		`{"a":01}`:                               KindJSONSyntax,
		`{"a":1.}`:                               KindJSONSyntax,
		`{"a":tru}`:                              KindJSONSyntax,
		`{"a":"x\q"}`:                            KindJSONSyntax,
		"{\"a\":\"x\ty\"}":                       KindJSONSyntax,
		`{a:1}`:                                  KindJSONSyntax,
		`{"a":1,}`:                               KindJSONSyntax,
		`{"a":[1,]}`:                             KindJSONSyntax,
		`{"a" 1}`:                                KindJSONSyntax,
		`{"a":"\u12"}`:                           KindJSONSyntax,
		strings.Repeat(`{"a":`, 100):             KindJSONSyntax,
		`{"a":` + strings.Repeat(`[`, 100) + `}`: KindJSONSyntax,
	}
	for in, kind := range bad {
		if _, err := ValidateJSON([]byte(in)); ErrorKind(err) != kind {
			t.Errorf("%q: %v, want kind %s", in, err, kind)
		}
		// The parser leaves dst as it was.
		out, _, _, err := NewParser().Parse([]byte("keep"), []byte(in))
		if in != "" && (err == nil || string(out) != "keep") {
			t.Errorf("%q: parser gave %q, %v", in, out, err)
		}
	}
}

// TestTSVFixture checks a record of a real Zeek TSV log against the JSON
// that Zeek's JSON writer produces for the same record, typed by hand.
// Stock Zeek wrote the fixtures: its names (id.orig_h) stay as they are.
func TestTSVFixture(t *testing.T) {
	cases := map[string][]string{
		"flip": {`{"ts":964953086.310131,"uid":"CHhAvVGS1DHFjwGM9","id.orig_h":"10.20.1.31","id.orig_p":53,"id.resp_h":"207.158.192.40","id.resp_p":53,"proto":"udp","trans_id":25701,"query":"us.v27.distributed.net","rcode":0,"rcode_name":"NOERROR","AA":true,"TC":false,"RD":false,"RA":true,"Z":0,"answers":["206.109.64.186","216.1.205.81","205.149.163.211","134.53.131.135","134.53.131.192","128.104.18.148","204.152.186.139","63.77.33.226"],"TTLs":[900.0,900.0,900.0,900.0,900.0,900.0,900.0,900.0],"rejected":false,"opcode":0,"opcode_name":"query"}`},
		"nsec": {
			`{"ts":1533310046.92434,"uid":"CHhAvVGS1DHFjwGM9","id.orig_h":"35.184.172.191","id.orig_p":57073,"id.resp_h":"128.175.13.16","id.resp_p":53,"proto":"udp","trans_id":130,"query":"dla.library.upenn.edu","qclass":1,"qclass_name":"C_INTERNET","qtype":28,"qtype_name":"AAAA","rcode":0,"rcode_name":"NOERROR","AA":false,"TC":false,"RD":false,"RA":false,"Z":1,"rejected":false,"opcode":0,"opcode_name":"query","auth":["RRSIG 47 upenn.edu","RRSIG 6 upenn.edu","NSEC dla.library.upenn.edu dlxssvr.library.upenn.edu","assailants.net.isc.upenn.edu"]}`,
			`{"ts":1533310049.812056,"uid":"ClEkJM2Vm5giqnMf4h","id.orig_h":"35.184.172.191","id.orig_p":50693,"id.resp_h":"128.175.13.16","id.resp_p":53,"proto":"udp","trans_id":51063,"rtt":0.001515,"query":"www.upenn.edu","qclass":1,"qclass_name":"C_INTERNET","qtype":1,"qtype_name":"A","rcode":0,"rcode_name":"NOERROR","AA":true,"TC":false,"RD":false,"RA":false,"Z":1,"answers":["www.upenn.edgekey.net","RRSIG 5 upenn.edu"],"TTLs":[300.0,300.0],"rejected":false,"opcode":0,"opcode_name":"query"}`,
		},
	}
	for name, want := range cases {
		got := parseFile(t, filepath.Join("..", "testdata", "zeek-dns", name+".dns.log"))
		if len(got) != len(want) {
			t.Fatalf("%s: %d records, want %d", name, len(got), len(want))
		}
		for i := range want {
			if !jsonEqual(t, got[i], []byte(want[i])) {
				t.Errorf("%s record %d:\n got %s\nwant %s", name, i, got[i], want[i])
			}
		}
	}
}

// TestTSVFixturesAll parses every TSV fixture: no errors, one record per
// data line, and every value is valid JSON.
func TestTSVFixturesAll(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "zeek-dns", "*.dns.log"))
	if len(files) < 10 {
		t.Fatalf("only %d fixtures", len(files))
	}
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		data := 0
		for _, l := range strings.Split(string(raw), "\n") {
			if l != "" && l[0] != '#' {
				data++
			}
		}
		recs := parseFile(t, f)
		if len(recs) != data {
			t.Errorf("%s: %d records for %d data lines", f, len(recs), data)
		}
	}
}

// TestJSONFixtureUnchanged: every line of a real Zeek JSON log is a record
// forwarded byte for byte, with its uid.
func TestJSONFixtureUnchanged(t *testing.T) {
	f, err := os.Open(filepath.Join("..", "testdata", "dnsperf-unbound.dns.json.log.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	p := NewParser()
	sc := bufio.NewScanner(zr)
	n := 0
	for sc.Scan() {
		out, uid, typ, err := p.Parse(nil, sc.Bytes())
		if err != nil || typ != Record {
			t.Fatalf("line %d: %v", n+1, err)
		}
		var orig map[string]any
		if err := json.Unmarshal(sc.Bytes(), &orig); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, sc.Bytes()) || uid != orig["uid"] {
			t.Fatalf("line %d: %s, uid %q", n+1, out, uid)
		}
		n++
	}
	if n != 20022 {
		t.Fatalf("%d records, want 20022", n)
	}
}

func TestTSVHeaderHandling(t *testing.T) {
	p := NewParser()
	lines := []string{
		"#separator \\x7c",
		"#set_separator|;",
		"#empty_field|EMPTY",
		"#unset_field|NONE",
		"#fields|a.b|s|v|e|i|d",
		"#types|string|set[count]|vector[string]|string|int|double",
	}
	for _, l := range lines {
		if _, _, typ, err := p.Parse(nil, []byte(l)); err != nil || typ != Meta {
			t.Fatalf("%s: %v", l, err)
		}
	}
	// Zeek's TSV escapes (\\ for a backslash, \xHH) decoded; the
	// string written as Zeek's JSON writer does (see appendJSONString).
	for in, want := range map[string]string{
		`x\x7cy\x2d|1;2|EMPTY|EMPTY|-7|.5`:                    `{"a.b":"x|y-","s":[1,2],"v":[],"e":"","i":-7,"d":0.5}`,
		`NONE|NONE|a;NONE|\x5c\x00\xff|0|1e3`:                 `{"v":["a",null],"e":"\\\\x00\\xff","i":0,"d":1000}`,
		`\\x41\\|NONE|(empty);NONE;\x3b|caf\xc3\xa9\t"|0|inf`: `{"a.b":"\\x41\\","v":["(empty)",null,";"],"e":"café\\t\"","i":0,"d":null}`,
		`NONE|NONE|NONE|\x0a\x0d\x08\x0c|NONE|-inf`:           `{"e":"\n\r\b\f","d":null}`,
		`NONE|NONE|NONE|\x01\xc3\xa9|NONE|300.000000`:         `{"e":"\\x01\\xc3\\xa9","d":300}`,
	} {
		out, _, _, err := p.Parse(nil, []byte(in))
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if string(out) != want {
			t.Errorf("%s:\n got %s\nwant %s", in, out, want)
		}
	}
	out, _, _, err := p.Parse(nil, []byte(`NONE|NONE|a;NONE|\x5c\x00\xff|0|1e3`))
	if err != nil {
		t.Fatal(err)
	}

	// Restoring the saved header lines gives the same conversion.
	q := NewParser()
	if err := q.RestoreHeader(p.HeaderLines()); err != nil {
		t.Fatal(err)
	}
	out2, _, _, err := q.Parse(nil, []byte(`NONE|NONE|a;NONE|\x5c\x00\xff|0|1e3`))
	if err != nil || !bytes.Equal(out, out2) {
		t.Fatalf("restored header: %s, %v", out2, err)
	}

	for in, kind := range map[string]string{
		"a|1|b|c|1":       KindTSVColumns,
		"a|1|b|c|1|2|3":   KindTSVColumns,
		"a|x|b|c|1|2":     KindTSVValue,
		"a|1|b|c|1.5|2":   KindTSVValue,
		"a|1|b|c|1|1e999": KindTSVValue,
		"a|1|b|c|1|0x":    KindTSVValue,
		"a|1;-1|b|c|1|2":  KindTSVValue,
	} {
		if _, _, _, err := p.Parse(nil, []byte(in)); ErrorKind(err) != kind {
			t.Errorf("%q: %v, want %s", in, err, kind)
		}
	}
	q = NewParser()
	q.Parse(nil, []byte("#fields\ta"))
	if _, _, _, err := q.Parse(nil, []byte("a\tb")); ErrorKind(err) != KindTSVNoHeader {
		t.Errorf("record without header: %v", err)
	}
}

func parseFile(t *testing.T, path string) [][]byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := NewParser()
	var recs [][]byte
	for i, l := range strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n") {
		out, _, typ, err := p.Parse(nil, []byte(l))
		if err != nil {
			t.Fatalf("%s:%d: %v", path, i+1, err)
		}
		if typ == Record {
			if !json.Valid(out) {
				t.Fatalf("%s:%d: invalid JSON %s", path, i+1, out)
			}
			recs = append(recs, out)
		}
	}
	return recs
}

// jsonEqual compares two objects member by member and checks that the
// member order is the same.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y map[string]any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}
