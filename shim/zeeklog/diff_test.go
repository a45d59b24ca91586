package zeeklog

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// diffPair feeds the same lines to the parser and to one with its TSV
// fast path off (the general converter, which it falls back to) and fails
// on any difference: output bytes, uid, line type, error text, header
// state.
type diffPair struct {
	p *Parser
	r *Parser // the oracle
}

func newDiffPair() diffPair {
	return diffPair{NewParser(), newGeneralParser()}
}

// newGeneralParser returns a parser with the TSV fast path off.
func newGeneralParser() *Parser {
	p := NewParser()
	p.generalOnly = true
	return p
}

func (d diffPair) line(t testing.TB, line []byte) {
	t.Helper()
	// A non-empty dst checks that records are appended, and left
	// untouched on error.
	got, gu, gt, gerr := d.p.Parse([]byte("pre"), line)
	want, wu, wt, werr := d.r.Parse([]byte("pre"), line)
	if !bytes.Equal(got, want) || gu != wu || gt != wt || errText(gerr) != errText(werr) {
		t.Fatalf("line %q:\n got %q uid %q type %d err %v\nwant %q uid %q type %d err %v",
			line, got, gu, gt, gerr, want, wu, wt, werr)
	}
	if gt == Record {
		// Again into a large buffer (the shim's case, where the TSV
		// converter writes in place) whose spare room holds garbage.
		big := bytes.Repeat([]byte{0xaa}, 4096)[:3]
		copy(big, "pre")
		got, gu, _, gerr := d.p.Parse(big, line)
		if !bytes.Equal(got, want) || gu != wu || errText(gerr) != errText(werr) {
			t.Fatalf("line %q, large buffer:\n got %q uid %q err %v\nwant %q uid %q err %v",
				line, got, gu, gerr, want, wu, werr)
		}
	}
	if d.p.HeaderVersion() != d.r.HeaderVersion() || !reflect.DeepEqual(d.p.HeaderLines(), d.r.HeaderLines()) {
		t.Fatalf("line %q: header state %d %q, want %d %q",
			line, d.p.HeaderVersion(), d.p.HeaderLines(), d.r.HeaderVersion(), d.r.HeaderLines())
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestDifferentialFixtures: every line of every fixture converts exactly
// as the general path converts it.
func TestDifferentialFixtures(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "zeek-dns", "*.dns.log"))
	files = append(files, filepath.Join("..", "testdata", "dnsperf-unbound.dns.json.log.gz"))
	if len(files) < 11 {
		t.Fatalf("only %d fixtures", len(files))
	}
	for _, f := range files {
		d := newDiffPair()
		for _, l := range fixtureLines(t, f) {
			d.line(t, l)
		}
	}
}

func fixtureLines(t testing.TB, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	if filepath.Ext(path) == ".gz" {
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	}
	var lines [][]byte
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, bytes.Clone(sc.Bytes()))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(lines) == 0 {
		t.Fatalf("%s: empty", path)
	}
	return lines
}

// FuzzParseDiff: any sequence of lines (header lines included, so the
// separators and types vary too) converts exactly as the general path
// converts it.
func FuzzParseDiff(f *testing.F) {
	for _, name := range []string{"nsec", "flip", "multiple-txt-strings", "original_case"} {
		raw, err := os.ReadFile(filepath.Join("..", "testdata", "zeek-dns", name+".dns.log"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Add([]byte(`{"ts":1795642521.689299,"uid":"CI8ddR33VLCIehSzKd","id.orig_h":"10.253.0.1","id.orig_p":43259,"id.resp_h":"10.253.0.2","id.resp_p":53,"proto":"udp","trans_id":0,"rtt":0.0006518363952636719,"query":"www.example.test","qclass":1,"qclass_name":"C_INTERNET","qtype":1,"qtype_name":"A","rcode":0,"rcode_name":"NOERROR","AA":true,"TC":false,"RD":true,"RA":true,"Z":0,"answers":["192.0.2.10"],"TTLs":[300.0],"rejected":false}`))
	f.Add([]byte(` { "a.b.c" : 0.0006518363952636719 , "n":{"x.y":1,"z":{"w":"v"}} } `))
	f.Add([]byte(`{"uid":"C\u0041b","k\u002ey":-1e-5,"arr":[{"in.ner":1},[],[[2]]],"s":"\u00e9\n\"\\"}`))
	f.Add([]byte("#separator \\x7c\n#set_separator|;\n#empty_field|EMPTY\n#unset_field|NONE\n" +
		"#fields|a.b|s|v|e|i|d\n#types|string|set[count]|vector[string]|string|int|double\n" +
		"x\\x7cy\\x2d|1;2|EMPTY|EMPTY|-7|.5\nNONE|NONE|a;NONE|\\x5c\\x00\\xff|0|1e3\na|1|b|c|1.5|2"))
	f.Add([]byte("#fields\tuid\tn\tf\tb\tv\n#types\tstring\tint\ttime\tbool\tset[double]\n" +
		"C\xc3\xa9\t-0\t1.50\tT\t1.0,-,2e5\nC\xff\"\t007\t-.5\tF\t(empty)\n-\t-9223372036854775808\t1e400\tX\t1,,2"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := newDiffPair()
		for _, l := range bytes.Split(data, []byte{'\n'}) {
			d.line(t, l)
		}
	})
}

// TestTSVFastPath: the records of the TSV fixtures take recordPlain's
// fast path (else the differential tests would compare the general path
// with itself).
func TestTSVFastPath(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "zeek-dns", "*.dns.log"))
	n := 0
	for _, f := range files {
		p, r := NewParser(), newGeneralParser()
		for _, l := range fixtureLines(t, f) {
			if l[0] == '#' {
				p.Parse(nil, l)
				r.Parse(nil, l)
				continue
			}
			if err := p.tsv.columns(); err != nil {
				t.Fatal(err)
			}
			got, uid, ok := p.tsv.recordPlain([]byte("pre"), l)
			want, wuid, _, err := r.Parse([]byte("pre"), l)
			if !ok || err != nil || !bytes.Equal(got, want) || uid != wuid {
				t.Fatalf("%s: %q: fast path %v %q %q, general %q %q %v", f, l, ok, got, uid, want, wuid, err)
			}
			n++
		}
	}
	if n < 10 {
		t.Fatalf("only %d records", n)
	}
}

// TestDifferentialEdges: lines at the edges of the TSV fast path (field and
// name lengths around their fixed-size copies, values at the end of the
// line, placeholders, other separators) convert as the general path does.
func TestDifferentialEdges(t *testing.T) {
	long := "a_name_that_is_longer_than_thirty_two_bytes"
	tsv := []string{
		"#fields\tuid\ts\tc\tb\t" + long + "\tv\tf\ti",
		"#types\tstring\tstring\tcount\tbool\tstring\tset[string]\tdouble\tint",
		"C1\t0123456789abcdef\t1234567890123456\tT\tx\ta,-,(empty),\t1.5\t-7",
		"C1\t0123456789abcdefg\t12345678901234567\tF\tx\t(empty)\t-\t-",
		"-\t(empty)\t0\tT\t-\t-\t-1.0\t0",
		"C1\t\t\t\t\t\t\t",
		"C1\ts\t01\tT\tx\ta\t1\t1",
		"C1\ts\t1\tt\tx\ta\t1\t1",
		"C1\ts\t1\tT\tx\ta\t1e3\t1",
		"C1\ts\t1\tT\tx\ta\t1\t-0",
		"C1\ts\t1\tT\tx\ta\t1\t1\textra",
		"C1\ts\t1\tT\tx\ta\t1",
		"C1\ts\"\t1\tT\tx\ta\t1\t1",
		"C1\ts\\x41\t1\tT\tx\ta\t1\t1",
		"C1\ts\x7f\t1\tT\tx\ta\t1\t1",
		"C1\ts\xc3\xa9\t1\tT\tx\ta\t1\t1",
		"#unset_field\tNONE",
		"NONE\tNONE\t-\tNONE\tNONE\t-,NONE\t1\t2",
		"#empty_field\t-",
		"C1\t-\t1\tT\tx\t-\t1\t1",
		"#separator \\x2c",
		"#fields,a,b,c",
		"#types,string,count,vector[string]",
		"x,1,y",
		"x,1,y,z",
	}
	json := []string{
		`{"uid":"a","uid":"b"}`, `{"a":01}`, `{"a":-01}`, `{"a":0.}`, `{"a":1e}`, `{"a":-}`,
		`{"a":[1,[2]]}`, `{"a":[{"b":1}]}`, `{"a":{"b.c":1}}`, `{"a.b":"\u0041"}`, `{"a\u002eb":1}`,
		`{"a":truex}`, `{"a":nul}`, `{"a":1}x`, `{"a":1} `, ` {"a":1}`, `{"a":1,}`, `{"a" :1}`,
		`{"a":"}`, `{"a":[}`, `{"a":[1,]}`, `{"":1}`, `{"...":[]}`, "{\"a\":\"\x01\"}", `{"uid":7}`,
	}
	d := newDiffPair()
	for _, l := range tsv {
		d.line(t, []byte(l))
	}
	d = newDiffPair()
	for _, l := range json {
		d.line(t, []byte(l))
	}
}
