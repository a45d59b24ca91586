package testenv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// DNSPerfOptions are dnsperf's command line. Zero fields are left to
// dnsperf's defaults, except that a run is always bounded: with neither
// Duration nor MaxQueries, RunDNSPerf sends the query file once.
type DNSPerfOptions struct {
	Server     netip.AddrPort
	QueryFile  string
	Duration   time.Duration // -l
	MaxQueries int           // exact number of queries to send (the file, cycled, once)
	QPS        int           // -Q
	Clients    int           // -c
	Threads    int           // -T
	Timeout    time.Duration // -t
	Netns      *Netns        // nil = root namespace

	Outstanding int      // -q, queries in flight (dnsperf's default is 100)
	ExtraArgs   []string // appended verbatim
}

// DNSPerfReport is dnsperf's own final report.
type DNSPerfReport struct {
	Sent, Completed, Lost              int
	RCodes                             map[string]int // "NOERROR": n
	AvgLatency, MinLatency, MaxLatency time.Duration
	QPS                                float64

	// Interrupted counts queries still in flight when the run was cut
	// short (dnsperf prints it only then).
	Interrupted int
	StdDev      time.Duration // Latency StdDev
	RunTime     time.Duration // Run time (s)
	Output      string
}

// RunDNSPerf runs dnsperf to completion and returns its parsed report.
// dnsperf's output is logged; a failure to run or to parse fails the
// test.
func RunDNSPerf(ctx context.Context, t testing.TB, opts DNSPerfOptions) DNSPerfReport {
	t.Helper()
	bin := RequireProgram(t, "dnsperf", "dnsperf")
	args, err := dnsperfArgs(opts, t.TempDir())
	if err != nil {
		t.Fatalf("dnsperf: %v", err)
	}
	cmd := commandIn(ctx, opts.Netns, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t.Logf("dnsperf %s", strings.Join(args, " "))
	err = cmd.Run()
	t.Logf("dnsperf output:\n%s%s", dnsperfShorten(stdout.String()), stderr.String())
	if err != nil {
		t.Fatalf("dnsperf: %v", err)
	}
	rep, err := ParseDNSPerf(stdout.String())
	if err != nil {
		t.Fatalf("dnsperf report: %v", err)
	}
	return rep
}

// dnsperfShorten keeps a log readable when dnsperf printed one line per
// lost query: the head and the statistics stay, the middle goes.
func dnsperfShorten(out string) string {
	const max = 8 << 10
	if len(out) <= max {
		return out
	}
	stats := strings.Index(out, "Statistics:")
	if stats < 0 || stats < 2<<10 {
		return out[:max] + "\n[...]\n"
	}
	return out[:2<<10] + "\n[... cut ...]\n" + out[stats:]
}

// dnsperfArgs builds the command line; for MaxQueries it writes a query
// file of exactly that many lines into dir, as dnsperf itself can only
// bound a run by passes over its input (-n).
func dnsperfArgs(o DNSPerfOptions, dir string) ([]string, error) {
	if !o.Server.IsValid() {
		return nil, errors.New("no server")
	}
	if o.QueryFile == "" {
		return nil, errors.New("no query file")
	}
	qf := o.QueryFile
	if o.MaxQueries > 0 {
		var err error
		if qf, err = dnsperfCycleFile(o.QueryFile, o.MaxQueries, dir); err != nil {
			return nil, err
		}
	}
	args := []string{"-s", o.Server.Addr().String(), "-p", strconv.Itoa(int(o.Server.Port())), "-d", qf}
	if o.Duration > 0 {
		args = append(args, "-l", dnsperfSeconds(o.Duration))
	}
	if o.MaxQueries > 0 || o.Duration <= 0 {
		args = append(args, "-n", "1")
	}
	if o.QPS > 0 {
		args = append(args, "-Q", strconv.Itoa(o.QPS))
	}
	if o.Clients > 0 {
		args = append(args, "-c", strconv.Itoa(o.Clients))
	}
	if o.Threads > 0 {
		args = append(args, "-T", strconv.Itoa(o.Threads))
	}
	if o.Timeout > 0 {
		args = append(args, "-t", dnsperfSeconds(o.Timeout))
	}
	if o.Outstanding > 0 {
		args = append(args, "-q", strconv.Itoa(o.Outstanding))
	}
	return append(args, o.ExtraArgs...), nil
}

func dnsperfSeconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

// dnsperfCycleFile writes the non-empty, non-comment lines of src,
// repeated as needed, until n lines.
func dnsperfCycleFile(src string, n int, dir string) (string, error) {
	b, err := os.ReadFile(src)
	if err != nil {
		return "", fmt.Errorf("query file: %w", err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, ";") {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return "", fmt.Errorf("query file %s: no queries", src)
	}
	var out bytes.Buffer
	for i := range n {
		out.WriteString(lines[i%len(lines)])
		out.WriteByte('\n')
	}
	dst := filepath.Join(dir, fmt.Sprintf("queries-%d.txt", n))
	if err := os.WriteFile(dst, out.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("query file: %w", err)
	}
	return dst, nil
}

// ParseDNSPerf parses the "Statistics:" section dnsperf prints at the end
// of a run. Sent, Completed, Lost and QPS must be present; a line that
// is there but malformed is an error.
func ParseDNSPerf(output string) (DNSPerfReport, error) {
	rep := DNSPerfReport{RCodes: map[string]int{}, Output: output}
	i := strings.Index(output, "Statistics:")
	if i < 0 {
		return rep, errors.New("no \"Statistics:\" section in dnsperf output")
	}
	var haveSent, haveCompleted, haveLost, haveQPS bool
	sc := bufio.NewScanner(strings.NewReader(output[i+len("Statistics:"):]))
	for sc.Scan() {
		key, val, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok {
			continue // blank lines, histogram
		}
		val = strings.TrimSpace(val)
		var err error
		switch key {
		case "Queries sent":
			rep.Sent, err = dnsperfCount(val)
			haveSent = true
		case "Queries completed":
			rep.Completed, err = dnsperfCount(val)
			haveCompleted = true
		case "Queries lost":
			rep.Lost, err = dnsperfCount(val)
			haveLost = true
		case "Queries interrupted":
			rep.Interrupted, err = dnsperfCount(val)
		case "Response codes":
			err = dnsperfRCodes(val, rep.RCodes)
		case "Run time (s)":
			rep.RunTime, err = dnsperfDuration(val)
		case "Queries per second":
			rep.QPS, err = dnsperfFloat(val)
			haveQPS = true
		case "Average Latency (s)":
			err = dnsperfLatency(val, &rep)
		case "Latency StdDev (s)":
			rep.StdDev, err = dnsperfDuration(val)
		}
		if err != nil {
			return rep, fmt.Errorf("dnsperf %s: %w", key, err)
		}
	}
	switch {
	case !haveSent:
		return rep, errors.New("dnsperf output: no \"Queries sent\"")
	case !haveCompleted:
		return rep, errors.New("dnsperf output: no \"Queries completed\"")
	case !haveLost:
		return rep, errors.New("dnsperf output: no \"Queries lost\"")
	case !haveQPS:
		return rep, errors.New("dnsperf output: no \"Queries per second\"")
	}
	sum := 0
	for _, n := range rep.RCodes {
		sum += n
	}
	if sum != rep.Completed {
		return rep, fmt.Errorf("dnsperf output: response codes add up to %d, not %d completed", sum, rep.Completed)
	}
	if rep.Completed+rep.Lost+rep.Interrupted != rep.Sent {
		return rep, fmt.Errorf("dnsperf output: %d completed + %d lost + %d interrupted != %d sent",
			rep.Completed, rep.Lost, rep.Interrupted, rep.Sent)
	}
	return rep, nil
}

// dnsperfCount parses "1234 (12.34%)" or "1234".
func dnsperfCount(s string) (int, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0, errors.New("no number")
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad count %q", f[0])
	}
	return n, nil
}

func dnsperfFloat(s string) (float64, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0, errors.New("no number")
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil || math.IsNaN(v) || v < 0 || v > 1e12 {
		return 0, fmt.Errorf("bad number %q", f[0])
	}
	return v, nil
}

func dnsperfDuration(s string) (time.Duration, error) {
	v, err := dnsperfFloat(s)
	if err != nil {
		return 0, err
	}
	if v > 1e6 {
		return 0, fmt.Errorf("%v s is no dnsperf duration", v)
	}
	return time.Duration(v * float64(time.Second)), nil
}

// dnsperfLatency parses "0.000123 (min 0.000045, max 0.002345)".
func dnsperfLatency(s string, rep *DNSPerfReport) error {
	avg, rest, _ := strings.Cut(s, " ")
	var err error
	if rep.AvgLatency, err = dnsperfDuration(avg); err != nil {
		return err
	}
	rest = strings.Trim(strings.TrimSpace(rest), "()")
	for _, part := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), " ")
		if !ok {
			continue
		}
		switch k {
		case "min":
			rep.MinLatency, err = dnsperfDuration(v)
		case "max":
			rep.MaxLatency, err = dnsperfDuration(v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// dnsperfRCodes parses "NOERROR 80 (80.00%), NXDOMAIN 20 (20.00%)".
func dnsperfRCodes(s string, into map[string]int) error {
	for _, part := range strings.Split(s, ",") {
		f := strings.Fields(part)
		if len(f) == 0 {
			continue
		}
		if len(f) < 2 {
			return fmt.Errorf("bad response code %q", part)
		}
		n, err := strconv.Atoi(f[1])
		if err != nil || n < 0 {
			return fmt.Errorf("bad response code count %q", part)
		}
		if _, dup := into[f[0]]; dup {
			return fmt.Errorf("response code %s twice", f[0])
		}
		into[f[0]] = n
	}
	return nil
}
