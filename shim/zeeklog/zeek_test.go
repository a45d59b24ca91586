package zeeklog

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pano-observability/pano/internal/testenv"
)

// The tests here run real Zeek twice on the same input: once writing JSON
// as PANO's package configures it (zeek-package/scripts/json-logs.zeek:
// use_json, names joined with "_"), once with the TSV writer instead
// (LogAscii::use_json=F on top). Every TSV log is converted line by line
// and each record compared with the JSON record Zeek wrote for it. -D
// zeroes Zeek's random seeds, so that both runs give the same uids.
//
// Where the writers differ, the comparison allows for it:
//   - double, interval, time: TSV has six decimals below 2^31 (Zeek's
//     JSON all of the double's digits), so a converted number is within
//     5e-7 of Zeek's (plus the double's own rounding); above 2^31 TSV
//     has an exponent and all the digits. The text differs too (300.0 in
//     Zeek's JSON, 300 converted): the values are compared.
//   - sets: compared as sets, so that an order of iteration is not
//     assumed to be the same in two runs.
//   - packet_filter.log is left out: its ts is the wall clock when Zeek
//     started, another in each run.
//
// What no converter can recover is checked in TestZeekTypes: a set or
// vector of one empty string is written in TSV as an empty one, and a
// vector of one hole as an unset field.

// TestTSVMatchesZeekJSON: every log Zeek writes for each DNS trace.
func TestTSVMatchesZeekJSON(t *testing.T) {
	zeek, pkg := zeekAndPackage(t)
	traces, err := filepath.Glob(filepath.Join("testdata", "zeek-dns", "*.pcap"))
	if err != nil || len(traces) < 14 {
		t.Fatalf("DNS traces: %d, %v", len(traces), err)
	}
	traces = append(traces, filepath.Join(testenv.RepoRoot(t), "zeek-package", "testdata", "dnsperf-unbound.pcap.gz"))
	for _, trace := range traces {
		name := strings.TrimSuffix(filepath.Base(trace), ".gz")
		t.Run(strings.TrimSuffix(name, ".pcap"), func(t *testing.T) {
			t.Parallel()
			pcap, err := filepath.Abs(trace)
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(trace, ".gz") {
				pcap = filepath.Join(t.TempDir(), name)
				writeFile(t, pcap, testenv.OpenTestdata(t, trace))
			}
			tsvDir, jsonDir := zeekBothWriters(t, zeek, "-C", "-r", pcap, pkg)
			n := compareLogs(t, tsvDir, jsonDir)
			t.Logf("records compared: %v", n)
			if n["dns.log"] == 0 {
				t.Fatal("no dns.log records")
			}
		})
	}
}

// TestZeekTypes: a record of every type a log holds and the values the
// writers render differently (testdata/zeek-types.zeek).
func TestZeekTypes(t *testing.T) {
	zeek, pkg := zeekAndPackage(t)
	script, err := filepath.Abs(filepath.Join("testdata", "zeek-types.zeek"))
	if err != nil {
		t.Fatal(err)
	}
	tsvDir, jsonDir := zeekBothWriters(t, zeek, "-b", script, pkg)
	// What TSV cannot tell apart: each pair of records is one TSV line
	// and two JSON ones.
	tsv := zeekRecords(t, filepath.Join(tsvDir, "ambiguous.log"))
	js := zeekRecords(t, filepath.Join(jsonDir, "ambiguous.log"))
	if len(tsv) != 4 || len(js) != 4 {
		t.Fatalf("ambiguous.log: %d TSV and %d JSON records, want 4", len(tsv), len(js))
	}
	for i := 0; i < 4; i += 2 {
		if tsv[i] != tsv[i+1] || js[i] == js[i+1] {
			t.Errorf("records %d and %d: TSV %q and %q, JSON %q and %q: no longer ambiguous", i, i+1, tsv[i], tsv[i+1], js[i], js[i+1])
		}
	}
	if err := os.Remove(filepath.Join(tsvDir, "ambiguous.log")); err != nil {
		t.Fatal(err)
	}
	if n := compareLogs(t, tsvDir, jsonDir); n["types.log"] < 70 {
		t.Fatalf("types.log: %d records compared", n["types.log"])
	}
}

// TestZeekStrings: each character of the BMP in a string of its own, and
// the other planes 4096 characters to a string, which the JSON writer
// writes as \xHH bytes if any one of them calls for it.
func TestZeekStrings(t *testing.T) {
	zeek, pkg := zeekAndPackage(t)
	var b strings.Builder
	b.WriteString("module PanoStrings;\nexport { redef enum Log::ID += { LOG }; type Info: record { s: string &log; }; }\n")
	b.WriteString("event zeek_init() {\nLog::create_stream(LOG, [$columns=Info, $path=\"strings\"]);\n")
	write := func(from, to rune) {
		b.WriteString(`Log::write(LOG, Info($s="`)
		for r := from; r < to; r++ {
			if utf8.ValidRune(r) {
				for _, c := range utf8.AppendRune(nil, r) {
					fmt.Fprintf(&b, `\x%02x`, c)
				}
			}
		}
		b.WriteString("\"));\n")
	}
	for r := rune(0); r < 0x10000; r++ {
		if utf8.ValidRune(r) {
			write(r, r+1)
		}
	}
	for r := rune(0x10000); r <= utf8.MaxRune; r += 4096 {
		write(r, r+4096)
	}
	b.WriteString("}\n")
	script := filepath.Join(t.TempDir(), "strings.zeek")
	writeFile(t, script, strings.NewReader(b.String()))
	tsvDir, jsonDir := zeekBothWriters(t, zeek, "-b", script, pkg)
	if n := compareLogs(t, tsvDir, jsonDir); n["strings.log"] != 0x10000-0x800+0x100 {
		t.Fatalf("strings.log: %d records compared", n["strings.log"])
	}
}

func zeekAndPackage(t *testing.T) (zeek, pkg string) {
	return filepath.Join(testenv.FindZeek(t), "bin", "zeek"),
		filepath.Join(testenv.RepoRoot(t), "zeek-package", "scripts", "json-logs.zeek")
}

// zeekBothWriters runs Zeek with args twice (see the top of this file)
// and returns the folders of the TSV and the JSON logs.
func zeekBothWriters(t *testing.T, zeek string, args ...string) (tsvDir, jsonDir string) {
	t.Helper()
	run := func(extra ...string) string {
		dir := t.TempDir()
		cmd := exec.Command(zeek, append(append([]string{"-D"}, args...), extra...)...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, out)
		}
		return dir
	}
	return run("LogAscii::use_json=F"), run()
}

// compareLogs converts each TSV log in tsvDir and compares it record by
// record with the JSON log of the same name in jsonDir. It returns the
// number of records compared per log.
func compareLogs(t *testing.T, tsvDir, jsonDir string) map[string]int {
	t.Helper()
	logs, err := filepath.Glob(filepath.Join(tsvDir, "*.log"))
	if err != nil || len(logs) == 0 {
		t.Fatalf("no logs in %s: %v", tsvDir, err)
	}
	compared := map[string]int{}
	for _, path := range logs {
		name := filepath.Base(path)
		if name == "packet_filter.log" {
			continue
		}
		p := NewParser()
		var got [][]byte
		var uids []string
		for i, l := range zeekLines(t, path) {
			out, uid, typ, err := p.Parse(nil, []byte(l))
			if err != nil {
				t.Fatalf("%s:%d: %v", name, i+1, err)
			}
			if typ == Record {
				got, uids = append(got, out), append(uids, uid)
			}
		}
		want := zeekRecords(t, filepath.Join(jsonDir, name))
		if len(got) != len(want) {
			t.Fatalf("%s: %d TSV records, %d JSON", name, len(got), len(want))
		}
		types := map[string]string{}
		for i, f := range p.tsv.fields {
			types[f] = p.tsv.types[i]
		}
		for i := range got {
			if diff := recordDiff(t, types, got[i], []byte(want[i])); diff != "" {
				t.Errorf("%s record %d: %s\n converted %s\nZeek JSON %s", name, i+1, diff, got[i], want[i])
			}
			// The Kafka key is the same whichever the writer.
			if uid, err := ValidateJSON([]byte(want[i])); err != nil || uid != uids[i] {
				t.Errorf("%s record %d: uid %q, from Zeek's JSON %q (%v)", name, i+1, uids[i], uid, err)
			}
		}
		compared[name] = len(got)
	}
	return compared
}

// recordDiff says how a converted record differs from Zeek's, "" if not.
func recordDiff(t *testing.T, types map[string]string, got, want []byte) string {
	g, gNames := jsonMembers(t, got)
	w, wNames := jsonMembers(t, want)
	if !slices.Equal(gNames, wNames) {
		return fmt.Sprintf("members %q, want %q", gNames, wNames)
	}
	for _, name := range wNames {
		if !sameValue(types[name], g[name], w[name]) {
			return fmt.Sprintf("%s (%s) is %v, want %v", name, types[name], g[name], w[name])
		}
	}
	return ""
}

// sameValue compares decoded values of a field of Zeek type typ.
func sameValue(typ string, got, want any) bool {
	for _, p := range []string{"set[", "vector["} {
		inner, ok := strings.CutPrefix(typ, p)
		if !ok {
			continue
		}
		inner = strings.TrimSuffix(inner, "]")
		g, gok := got.([]any)
		w, wok := want.([]any)
		if !gok || !wok || len(g) != len(w) {
			return false
		}
		if p == "set[" {
			byText := func(a, b any) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) }
			g, w = slices.SortedFunc(slices.Values(g), byText), slices.SortedFunc(slices.Values(w), byText)
		}
		for i := range g {
			if !sameValue(inner, g[i], w[i]) {
				return false
			}
		}
		return true
	}
	switch typ {
	case "double", "interval", "time":
		gn, gok := got.(json.Number)
		wn, wok := want.(json.Number)
		if !gok || !wok {
			return got == nil && want == nil // inf and nan
		}
		gf, gerr := gn.Float64()
		wf, werr := wn.Float64()
		return gerr == nil && werr == nil && math.Abs(gf-wf) <= 5e-7+1e-15*math.Abs(wf)
	default:
		return reflect.DeepEqual(got, want)
	}
}

// zeekLines reads a log Zeek wrote.
func zeekLines(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
}

// zeekRecords reads the records of a log (JSON or TSV): its lines but the
// '#' ones.
func zeekRecords(t *testing.T, path string) []string {
	t.Helper()
	var recs []string
	for _, l := range zeekLines(t, path) {
		if !strings.HasPrefix(l, "#") {
			recs = append(recs, l)
		}
	}
	return recs
}

func writeFile(t *testing.T, path string, r io.Reader) {
	t.Helper()
	data, err := io.ReadAll(r)
	if err == nil {
		err = os.WriteFile(path, data, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
}
