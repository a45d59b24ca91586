package gobench

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
)

// verbose is go test -v -bench output as testing prints it: sub-benchmarks,
// a benchmark's own prints, a skip and a failure.
const verbose = `goos: linux
goarch: amd64
pkg: github.com/pano-observability/pano/pcap-over-tcp
cpu: AMD EPYC
=== RUN   BenchmarkServer
=== RUN   BenchmarkServer/clients=1
BenchmarkServer/clients=1
BenchmarkServer/clients=1-2         	  542061	      2213 ns/op	  71.19 MB/s	   451868 records/s/client	        71.19 MB/s-total	        31.00 records/write	       0 B/op	       0 allocs/op
=== RUN   BenchmarkServer/clients=4
BenchmarkServer/clients=4-2         	  153300	      7466 ns/op	  21.10 MB/s	   133941 records/s/client	        84.39 MB/s-total	        16.52 records/write	       1 B/op	       0 allocs/op
=== RUN   BenchmarkConsumer
=== RUN   BenchmarkConsumer/tcpdump
--- SKIP: BenchmarkConsumer/tcpdump
    bench_test.go:160: tcpdump not installed
=== RUN   BenchmarkCapture
input: 300000 records, 10000 distinct query names
| capture | packets captured |
BenchmarkCapture-2   	       1	34123456789 ns/op	         2.500 agent-cpu-s/Mpkt-tcp	         0 agent-drops-tcp	    412345 agent-ceiling-pkt/s
--- BENCH: BenchmarkCapture-2
    bench_test.go:129: Phase 1 ...
=== RUN   BenchmarkBroken
--- FAIL: BenchmarkBroken
    bench_test.go:12: kafka: no broker
    bench_test.go:13: second line
FAIL
exit status 1
FAIL	github.com/pano-observability/pano/pcap-over-tcp	12.345s
`

func TestParseVerbose(t *testing.T) {
	rep, err := Parse(strings.NewReader(verbose))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Config["cpu"] != "AMD EPYC" || rep.Config["pkg"] != "github.com/pano-observability/pano/pcap-over-tcp" {
		t.Errorf("config = %v", rep.Config)
	}
	if _, ok := rep.Config["input"]; ok {
		t.Errorf("a benchmark's print was taken for configuration: %v", rep.Config)
	}
	if len(rep.Results) != 3 {
		t.Fatalf("%d results, want 3: %+v", len(rep.Results), rep.Results)
	}
	r := rep.Results[1]
	if r.Name != "BenchmarkServer/clients=4" || r.Procs != 2 || r.Iterations != 153300 || len(r.Metrics) != 7 {
		t.Errorf("result = %+v", r)
	}
	for _, c := range []struct {
		name, unit string
		want       float64
	}{
		{"BenchmarkServer/clients=1", "records/s/client", 451868},
		{"BenchmarkServer/clients=4", "MB/s-total", 84.39},
		{"BenchmarkServer/clients=4", "MB/s", 21.10},
		{"BenchmarkCapture", "agent-cpu-s/Mpkt-tcp", 2.5},
		{"BenchmarkCapture", "agent-drops-tcp", 0},
	} {
		got, err := rep.Value(c.name, c.unit)
		if err != nil || got != c.want {
			t.Errorf("Value(%s, %s) = %v, %v; want %v", c.name, c.unit, got, err, c.want)
		}
	}
}

func TestValueErrors(t *testing.T) {
	rep, err := Parse(strings.NewReader(verbose))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, unit, want string }{
		// A renamed metric: the error names it and lists what there is.
		{"BenchmarkServer/clients=1", "records/s", `BenchmarkServer/clients=1 reported no "records/s" metric (it reported ns/op, MB/s, records/s/client, MB/s-total, records/write, B/op, allocs/op)`},
		{"BenchmarkConsumer/tcpdump", "records/s", "BenchmarkConsumer/tcpdump: skipped: bench_test.go:160: tcpdump not installed"},
		{"BenchmarkBroken", "x", "BenchmarkBroken: failed: bench_test.go:12: kafka: no broker / bench_test.go:13: second line"},
		{"BenchmarkBroken/sub", "x", "BenchmarkBroken: failed:"},
		{"BenchmarkAbsent", "x", "no result for BenchmarkAbsent in the output (results for: BenchmarkCapture, BenchmarkServer/clients=1, BenchmarkServer/clients=4)"},
	} {
		v, err := rep.Value(c.name, c.unit)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) || !math.IsNaN(v) {
			t.Errorf("Value(%s, %s) = %v, %v; want NaN and an error starting %q", c.name, c.unit, v, err, c.want)
		}
	}
}

// Without -v testing prints the name before running the benchmark, so
// the benchmark's prints land between the name and the numbers.
func TestParseNotVerbose(t *testing.T) {
	const out = "pkg: example.com/x\n" +
		"BenchmarkCapture-2   \tPhase 1: 10 queries\n" +
		"| a | b |\n" +
		"       1\t 5000 ns/op\t 3.25 agent-cpu-s/Mpkt-file\n" +
		"BenchmarkOther-2   \t--- FAIL: BenchmarkOther-2\n" +
		"    x_test.go:3: boom\n" +
		"BenchmarkOne\t 10\t 7 ns/op\n" +
		"ok  \texample.com/x\t3.1s\n"
	rep, err := Parse(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if v, err := rep.Value("BenchmarkCapture", "agent-cpu-s/Mpkt-file"); err != nil || v != 3.25 {
		t.Errorf("capture = %v, %v", v, err)
	}
	if _, err := rep.Value("BenchmarkOther", "ns/op"); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("other: %v", err)
	}
	// GOMAXPROCS=1: no suffix.
	if len(rep.Results) != 2 || rep.Results[1].Name != "BenchmarkOne" || rep.Results[1].Procs != 0 {
		t.Errorf("results = %+v", rep.Results)
	}
}

func TestValueMeanOverCount(t *testing.T) {
	rep, err := Parse(strings.NewReader("BenchmarkA-4\t1\t10 x/s\nBenchmarkA-4\t1\t20 x/s\nBenchmarkA-4\t1\t+Inf y\n"))
	if err != nil {
		t.Fatal(err)
	}
	if v, err := rep.Value("BenchmarkA", "x/s"); err != nil || v != 15 {
		t.Errorf("mean = %v, %v", v, err)
	}
	if v, err := rep.Value("BenchmarkA", "y"); err != nil || !math.IsInf(v, 1) {
		t.Errorf("inf = %v, %v", v, err)
	}
}

func TestValueErrorKinds(t *testing.T) {
	rep, err := Parse(strings.NewReader(verbose))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rep.Value("BenchmarkAbsent", "x"); !errors.Is(err, ErrNoResult) {
		t.Errorf("absent benchmark: %v", err)
	}
	if _, err := rep.Value("BenchmarkCapture", "tcpdump-cpu-s/Mpkt-tcp"); !errors.Is(err, ErrNoMetric) {
		t.Errorf("absent metric: %v", err)
	}
	if _, err := rep.Value("BenchmarkBroken", "x"); errors.Is(err, ErrNoResult) || errors.Is(err, ErrNoMetric) {
		t.Errorf("failed benchmark: %v", err)
	}
}

func TestNotResults(t *testing.T) {
	for _, line := range []string{
		"BenchmarkA-2\t1\t2 3",           // a number for a unit
		"BenchmarkA-2\t1\t2",             // a value without unit
		"BenchmarkA-2\t-1\t2 ns/op",      // negative iterations
		"BenchmarkA-2\tten\t2 ns/op",     // not a count
		"Benchmark_helper 1 2 ns/op",     // not a benchmark name
		"XBenchmarkA-2\t1\t2 ns/op",      // not at the start
		"5 packets captured by tcpdump",  // a print, no pending name
		"BenchmarkA-2\t1\t2 ns/op 3 x 4", // odd field count
	} {
		rep, err := Parse(strings.NewReader(line + "\n"))
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Results) != 0 {
			t.Errorf("%q parsed as %+v", line, rep.Results)
		}
	}
}

func TestSplitProcs(t *testing.T) {
	for in, want := range map[string]struct {
		name  string
		procs int
	}{
		"BenchmarkA-2":                {"BenchmarkA", 2},
		"BenchmarkA/clients=4-16":     {"BenchmarkA/clients=4", 16},
		"BenchmarkA":                  {"BenchmarkA", 0},
		"BenchmarkA-":                 {"BenchmarkA-", 0},
		"BenchmarkA--1":               {"BenchmarkA-", 1},
		"BenchmarkA-0":                {"BenchmarkA-0", 0},
		"BenchmarkA-x":                {"BenchmarkA-x", 0},
		"BenchmarkConfigs/pano-ish-2": {"BenchmarkConfigs/pano-ish", 2},
	} {
		name, procs := splitProcs(in)
		if name != want.name || procs != want.procs {
			t.Errorf("splitProcs(%q) = %q, %d; want %q, %d", in, name, procs, want.name, want.procs)
		}
	}
}

func TestLongLine(t *testing.T) {
	in := "BenchmarkA-2\t1\t2 ns/op\n" + strings.Repeat("x", maxLine+1) + "\n"
	rep, err := Parse(strings.NewReader(in))
	if err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("err = %v", err)
	}
	if len(rep.Results) != 1 {
		t.Errorf("results before the long line lost: %+v", rep.Results)
	}
}

func TestFormatRoundTrip(t *testing.T) {
	rep, err := Parse(strings.NewReader(verbose))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := rep.Format(&buf); err != nil {
		t.Fatal(err)
	}
	again, err := Parse(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !sameResults(rep.Results, again.Results) {
		t.Errorf("round trip:\n%+v\n%+v", rep.Results, again.Results)
	}
}

func sameResults(a, b []Result) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Procs != b[i].Procs || a[i].Iterations != b[i].Iterations || len(a[i].Metrics) != len(b[i].Metrics) {
			return false
		}
		for j, m := range a[i].Metrics {
			n := b[i].Metrics[j]
			if m.Unit != n.Unit || (m.Value != n.Value && !(math.IsNaN(m.Value) && math.IsNaN(n.Value))) {
				return false
			}
		}
	}
	return true
}
