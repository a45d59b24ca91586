package testenv

import (
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestParseDNSPerf parses outputs of the real dnsperf 2.10.0, recorded in
// testdata/dnsperf, and checks every field against the text.
func TestParseDNSPerf(t *testing.T) {
	for _, tc := range []struct {
		file                              string
		sent, completed, lost, interupted int
		rcodes                            map[string]int
		qps                               float64
		avg, min, max, stddev, runTime    time.Duration
	}{
		{"mix-v4.txt", 20000, 20000, 0, 0,
			map[string]int{"NOERROR": 15000, "SERVFAIL": 1000, "NXDOMAIN": 4000},
			82724.618019, 1004 * time.Microsecond, 21 * time.Microsecond, 2084 * time.Microsecond, 528 * time.Microsecond, 241766 * time.Microsecond},
		{"mix-v6-l2.txt", 197659, 197659, 0, 0,
			map[string]int{"NOERROR": 148244, "SERVFAIL": 9897, "NXDOMAIN": 39518},
			98796.353823, 799 * time.Microsecond, 13 * time.Microsecond, 5667 * time.Microsecond, 602 * time.Microsecond, 2000671 * time.Microsecond},
		{"unlimited-l3.txt", 219089, 219089, 0, 0,
			map[string]int{"NOERROR": 164315, "SERVFAIL": 10950, "NXDOMAIN": 43824},
			72986.434369, 1023 * time.Microsecond, 17 * time.Microsecond, 5946 * time.Microsecond, 614 * time.Microsecond, 3001777 * time.Microsecond},
		{"lost.txt", 50, 0, 50, 0, map[string]int{}, 0, 0, 0, 0, 0, 27390 * time.Microsecond},
		{"interrupted.txt", 100, 0, 0, 100, map[string]int{}, 0, 0, 0, 0, 0, 1494300 * time.Microsecond},
		{"qps1000.txt", 1000, 1000, 0, 0,
			map[string]int{"NOERROR": 750, "SERVFAIL": 59, "NXDOMAIN": 191},
			999.797041, 69 * time.Microsecond, 26 * time.Microsecond, 362 * time.Microsecond, 30 * time.Microsecond, 1000203 * time.Microsecond},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "dnsperf", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			r, err := ParseDNSPerf(string(b))
			if err != nil {
				t.Fatal(err)
			}
			if r.Sent != tc.sent || r.Completed != tc.completed || r.Lost != tc.lost || r.Interrupted != tc.interupted {
				t.Errorf("sent/completed/lost/interrupted = %d/%d/%d/%d, want %d/%d/%d/%d",
					r.Sent, r.Completed, r.Lost, r.Interrupted, tc.sent, tc.completed, tc.lost, tc.interupted)
			}
			if !maps.Equal(r.RCodes, tc.rcodes) {
				t.Errorf("rcodes %v, want %v", r.RCodes, tc.rcodes)
			}
			if r.QPS != tc.qps {
				t.Errorf("qps %v, want %v", r.QPS, tc.qps)
			}
			// Durations go through float seconds: allow rounding to 1ns.
			for _, d := range []struct {
				name      string
				got, want time.Duration
			}{{"avg", r.AvgLatency, tc.avg}, {"min", r.MinLatency, tc.min}, {"max", r.MaxLatency, tc.max},
				{"stddev", r.StdDev, tc.stddev}, {"run time", r.RunTime, tc.runTime}} {
				if diff := d.got - d.want; diff < -1 || diff > 1 {
					t.Errorf("%s %v, want %v", d.name, d.got, d.want)
				}
			}
			if r.Output != string(b) {
				t.Error("Output is not dnsperf's output")
			}
			checkDNSPerfAgainstText(t, r)
		})
	}
}

// checkDNSPerfAgainstText re-reads the numbers of a report from its text
// with an independent method (regular expressions over the whole output),
// so that a RunDNSPerf caller can prove the parsed report matches what
// dnsperf printed.
func checkDNSPerfAgainstText(t testing.TB, r DNSPerfReport) {
	t.Helper()
	num := func(label string) string {
		m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(label) + `:\s+([0-9.]+)`).FindStringSubmatch(r.Output)
		if m == nil {
			t.Fatalf("%q not in dnsperf output", label)
		}
		return m[1]
	}
	for label, got := range map[string]int{"Queries sent": r.Sent, "Queries completed": r.Completed, "Queries lost": r.Lost} {
		if want := num(label); strconv.Itoa(got) != want {
			t.Errorf("%s: parsed %d, printed %s", label, got, want)
		}
	}
	if want := num("Queries per second"); strconv.FormatFloat(r.QPS, 'f', 6, 64) != want {
		t.Errorf("qps: parsed %v, printed %s", r.QPS, want)
	}
	rc := regexp.MustCompile(`(?m)^\s*Response codes:(.*)$`).FindStringSubmatch(r.Output)
	if rc == nil {
		t.Fatal("no response codes line")
	}
	printed := map[string]int{}
	for _, m := range regexp.MustCompile(`([A-Z]+) (\d+) \(`).FindAllStringSubmatch(rc[1], -1) {
		n, _ := strconv.Atoi(m[2])
		printed[m[1]] = n
	}
	if !maps.Equal(printed, r.RCodes) {
		t.Errorf("rcodes: parsed %v, printed %v", r.RCodes, printed)
	}
}

func TestParseDNSPerfErrors(t *testing.T) {
	good, err := os.ReadFile(filepath.Join("testdata", "dnsperf", "mix-v4.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string]string{
		"empty":           "",
		"no statistics":   strings.Replace(string(good), "Statistics:", "Stats", 1),
		"no sent":         strings.Replace(string(good), "Queries sent:", "Queries x:", 1),
		"no qps":          strings.Replace(string(good), "Queries per second:", "QPS", 1),
		"bad count":       strings.Replace(string(good), "Queries lost:         0", "Queries lost:         zero", 1),
		"rcodes mismatch": strings.Replace(string(good), "NOERROR 15000", "NOERROR 14999", 1),
		"sent mismatch":   strings.Replace(string(good), "Queries sent:         20000", "Queries sent:         20001", 1),
		"bad rcode":       strings.Replace(string(good), "SERVFAIL 1000", "SERVFAIL x", 1),
		"dup rcode":       strings.Replace(string(good), "SERVFAIL 1000", "NOERROR 1000", 1),
		"nan qps":         strings.Replace(string(good), "82724.618019", "NaN", 1),
		"bad latency":     strings.Replace(string(good), "0.001004 (min", "-1 (min", 1),
		"truncated":       string(good[:len(good)/2+80]),
	} {
		if _, err := ParseDNSPerf(in); err == nil {
			t.Errorf("%s: no error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

func FuzzParseDNSPerf(f *testing.F) {
	addReportSeeds(f, "dnsperf")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseDNSPerf(s)
		if err != nil {
			return
		}
		sum := 0
		for _, n := range r.RCodes {
			if n < 0 {
				t.Fatalf("negative rcode count %v", r.RCodes)
			}
			sum += n
		}
		if sum != r.Completed || r.Completed+r.Lost+r.Interrupted != r.Sent || r.Sent < 0 || r.QPS < 0 {
			t.Fatalf("inconsistent report accepted: %+v", r)
		}
	})
}

func TestDNSPerfArgs(t *testing.T) {
	dir := t.TempDir()
	qf := filepath.Join(dir, "q.txt")
	if err := os.WriteFile(qf, []byte("; comment\na.pano.test. A\n\nb.pano.test. AAAA\nc.pano.test. A\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args, err := dnsperfArgs(DNSPerfOptions{
		Server: mustAddrPort(t, "[fd00::2]:5353"), QueryFile: qf, MaxQueries: 7, QPS: 100,
		Clients: 2, Threads: 3, Timeout: 1500 * time.Millisecond, Duration: 2 * time.Second, Outstanding: 50,
	}, dir)
	if err != nil {
		t.Fatal(err)
	}
	cycled := filepath.Join(dir, "queries-7.txt")
	want := "-s fd00::2 -p 5353 -d " + cycled + " -l 2 -n 1 -Q 100 -c 2 -T 3 -t 1.5 -q 50"
	if got := strings.Join(args, " "); got != want {
		t.Errorf("args\n %s\nwant\n %s", got, want)
	}
	b, err := os.ReadFile(cycled)
	if err != nil {
		t.Fatal(err)
	}
	wantFile := "a.pano.test. A\nb.pano.test. AAAA\nc.pano.test. A\na.pano.test. A\nb.pano.test. AAAA\nc.pano.test. A\na.pano.test. A\n"
	if string(b) != wantFile {
		t.Errorf("cycled file:\n%s\nwant\n%s", b, wantFile)
	}
	// Unbounded options still give a bounded run: one pass over the file.
	args, err = dnsperfArgs(DNSPerfOptions{Server: mustAddrPort(t, "198.18.0.2:53"), QueryFile: qf}, dir)
	if err != nil || strings.Join(args, " ") != "-s 198.18.0.2 -p 53 -d "+qf+" -n 1" {
		t.Errorf("args %v, %v", args, err)
	}
	if _, err := dnsperfArgs(DNSPerfOptions{QueryFile: qf}, dir); err == nil {
		t.Error("no server: no error")
	}
}

func mustAddrPort(t testing.TB, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// addReportSeeds seeds a fuzz target with the real reports kept in
// testdata/dir/*.txt.
func addReportSeeds(f *testing.F, dir string) {
	files, _ := filepath.Glob(filepath.Join("testdata", dir, "*.txt"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
}
