package testenv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// H2loadOptions are h2load's command line. A run is always bounded: with
// neither Requests nor Duration, RunH2load asks for each URI once.
type H2loadOptions struct {
	// URIs are requested in this order by every client, over and over;
	// the first one's scheme, host and port count for all (h2load's rule),
	// the others may be paths only.
	URIs []string
	// ConnectTo is where every connection goes (--connect-to), so that
	// the URIs can carry names nothing resolves; zero = the first URI's host.
	ConnectTo netip.AddrPort
	Requests  int           // -n, across all clients
	Clients   int           // -c
	Threads   int           // -t
	RPS       float64       // --rps, requests per second of each client
	Duration  time.Duration // -D (then Requests is ignored), whole milliseconds
	// H1 forces HTTP/1.1 over http:// and https:// (--h1); otherwise
	// https:// negotiates HTTP/2 and http:// speaks h2c.
	H1        bool
	Netns     *Netns   // nil = the root namespace
	ExtraArgs []string // appended before the URIs
}

// H2loadRequests is h2load's "requests:" line. Succeeded are answered
// 2xx or 3xx; Failed holds the 4xx and 5xx answers and the Errored
// requests (no answer: connection refused or reset, Timeout).
type H2loadRequests struct {
	Total, Started, Done, Succeeded, Failed, Errored, Timeout int
}

// H2loadTimes is one line of h2load's min/max/mean/sd table.
type H2loadTimes struct {
	Min, Max, Mean, SD time.Duration
}

// H2loadReport is h2load's own final report.
type H2loadReport struct {
	Requests                                   H2loadRequests
	Status2xx, Status3xx, Status4xx, Status5xx int
	// Traffic in bytes (the exact counts h2load prints in parentheses):
	// everything received, the response headers, the response bodies.
	TrafficTotal, TrafficHeaders, TrafficData int64
	// RequestTime is "time for request": from sending a request to the
	// end of its response.
	RequestTime, ConnectTime, FirstByte H2loadTimes
	// ReqPerSec and Finished are the "finished in" line: requests per
	// second over the whole run, and its length.
	ReqPerSec float64
	Finished  time.Duration
	// TLSProtocol and Cipher are the first TLS connection's ("" over
	// http://); ApplicationProtocol is "http/1.1" or "h2" ("" when no
	// connection was made).
	TLSProtocol, Cipher, ApplicationProtocol string
	Output                                   string
}

// RunH2load runs h2load to completion and returns its parsed report.
// h2load's output is logged; a failure to run or to parse fails the test.
func RunH2load(ctx context.Context, t testing.TB, opts H2loadOptions) H2loadReport {
	t.Helper()
	bin := RequireProgram(t, "h2load", "nghttp2-client")
	args, err := h2loadArgs(opts)
	if err != nil {
		t.Fatalf("h2load: %v", err)
	}
	cmd := commandIn(ctx, opts.Netns, bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t.Logf("h2load %s", strings.Join(args, " "))
	err = cmd.Run()
	t.Logf("h2load output:\n%s", h2loadShorten(out.String()))
	if err != nil {
		t.Fatalf("h2load: %v", err)
	}
	rep, err := ParseH2load(out.String())
	if err != nil {
		t.Fatalf("h2load report: %v", err)
	}
	return rep
}

// h2loadShorten drops the "progress: N% done" lines from a log.
func h2loadShorten(out string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(out, "\n") {
		if !strings.HasPrefix(l, "progress: ") {
			b.WriteString(l)
		}
	}
	return b.String()
}

func h2loadArgs(o H2loadOptions) ([]string, error) {
	if len(o.URIs) == 0 {
		return nil, errors.New("no URI")
	}
	if !strings.HasPrefix(o.URIs[0], "http://") && !strings.HasPrefix(o.URIs[0], "https://") {
		return nil, fmt.Errorf("first URI %q: want http:// or https:// (it sets the scheme, host and port)", o.URIs[0])
	}
	if o.Duration > 0 && o.Duration%time.Millisecond != 0 {
		return nil, fmt.Errorf("duration %v: h2load takes whole milliseconds", o.Duration)
	}
	if o.RPS < 0 || math.IsNaN(o.RPS) || math.IsInf(o.RPS, 0) {
		return nil, fmt.Errorf("rps %v", o.RPS)
	}
	var args []string
	if o.Duration > 0 {
		args = append(args, "-D", strconv.FormatInt(o.Duration.Milliseconds(), 10)+"ms")
	} else {
		n := o.Requests
		if n <= 0 {
			n = len(o.URIs)
		}
		args = append(args, "-n", strconv.Itoa(n))
	}
	if o.Clients > 0 {
		args = append(args, "-c", strconv.Itoa(o.Clients))
	}
	if o.Threads > 0 {
		args = append(args, "-t", strconv.Itoa(o.Threads))
	}
	if o.RPS > 0 {
		args = append(args, "--rps="+strconv.FormatFloat(o.RPS, 'f', -1, 64))
	}
	if o.H1 {
		args = append(args, "--h1")
	}
	if o.ConnectTo.IsValid() {
		args = append(args, "--connect-to="+o.ConnectTo.String())
	}
	args = append(args, o.ExtraArgs...)
	return append(args, o.URIs...), nil
}

// The report's lines, as nghttp2 1.52's h2load prints them.
var (
	h2loadFinishedRE = regexp.MustCompile(`^finished in (\S+), ([0-9.]+) req/s, \S+/s$`)
	h2loadRequestsRE = regexp.MustCompile(`^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored(?:, (\d+) timeout)?$`)
	h2loadStatusRE   = regexp.MustCompile(`^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx$`)
	h2loadTrafficRE  = regexp.MustCompile(`^traffic: \S+ \((\d+)\) total, \S+ \((\d+)\) headers \(space savings [0-9.]+%\), \S+ \((\d+)\) data$`)
	h2loadTimesRE    = regexp.MustCompile(`^(time for request|time for connect|time to 1st byte):\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+[0-9.]+%$`)
	h2loadDurationRE = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?(us|ms|s)$`)
)

// ParseH2load parses the report h2load prints at the end of a run. The
// "finished in", "requests:", "status codes:", "traffic:" and "time for
// request:" lines must be there, once each; a line that is there but
// malformed, or counts that contradict each other, are an error.
func ParseH2load(output string) (H2loadReport, error) {
	rep := H2loadReport{Output: output}
	seen := map[string]bool{}
	once := func(key string) error {
		if seen[key] {
			return fmt.Errorf("h2load output: %q twice (two reports?)", key)
		}
		seen[key] = true
		return nil
	}
	sc := bufio.NewScanner(strings.NewReader(output))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		key, val, _ := strings.Cut(line, ":")
		var err error
		switch {
		case key == "TLS Protocol" || key == "Cipher" || key == "Application protocol":
			// Printed once, for the first connection.
			if err = once(key); err == nil {
				val = strings.TrimSpace(val)
				switch key {
				case "TLS Protocol":
					rep.TLSProtocol = val
				case "Cipher":
					rep.Cipher = val
				default:
					rep.ApplicationProtocol = val
				}
			}
		case strings.HasPrefix(line, "finished in "):
			if err = once("finished in"); err == nil {
				err = h2loadFinished(line, &rep)
			}
		case key == "requests":
			if err = once(key); err == nil {
				err = h2loadInts(h2loadRequestsRE, line, &rep.Requests.Total, &rep.Requests.Started, &rep.Requests.Done,
					&rep.Requests.Succeeded, &rep.Requests.Failed, &rep.Requests.Errored, &rep.Requests.Timeout)
			}
		case key == "status codes":
			if err = once(key); err == nil {
				err = h2loadInts(h2loadStatusRE, line, &rep.Status2xx, &rep.Status3xx, &rep.Status4xx, &rep.Status5xx)
			}
		case key == "traffic":
			if err = once(key); err == nil {
				err = h2loadTraffic(line, &rep)
			}
		case key == "time for request" || key == "time for connect" || key == "time to 1st byte":
			if err = once(key); err == nil {
				into := map[string]*H2loadTimes{"time for request": &rep.RequestTime, "time for connect": &rep.ConnectTime, "time to 1st byte": &rep.FirstByte}[key]
				err = h2loadTimesLine(line, into)
			}
		}
		if err != nil {
			return rep, err
		}
	}
	if err := sc.Err(); err != nil {
		return rep, fmt.Errorf("h2load output: %w", err)
	}
	for _, k := range []string{"finished in", "requests", "status codes", "traffic", "time for request"} {
		if !seen[k] {
			return rep, fmt.Errorf("h2load output: no %q line (not a finished run?)", k)
		}
	}
	return rep, h2loadConsistent(rep)
}

// h2loadConsistent checks what h2load's counting guarantees (h2load.cc:
// a request is started, then done; succeeded and failed exclude each
// other; errored and timed-out requests are failed ones).
func h2loadConsistent(r H2loadReport) error {
	q := r.Requests
	status := r.Status2xx + r.Status3xx + r.Status4xx + r.Status5xx
	switch {
	case q.Started > q.Total || q.Done > q.Started:
		return fmt.Errorf("h2load report: %d total, %d started, %d done: out of order", q.Total, q.Started, q.Done)
	case q.Succeeded > q.Done || q.Succeeded+q.Failed > q.Total:
		return fmt.Errorf("h2load report: %d succeeded + %d failed do not fit %d done of %d", q.Succeeded, q.Failed, q.Done, q.Total)
	case q.Errored > q.Failed || q.Timeout > q.Failed:
		return fmt.Errorf("h2load report: %d errored, %d timeout exceed %d failed", q.Errored, q.Timeout, q.Failed)
	case status > q.Started:
		return fmt.Errorf("h2load report: %d status codes for %d requests started", status, q.Started)
	case r.TrafficHeaders > r.TrafficTotal:
		return fmt.Errorf("h2load report: %d bytes of headers in %d in all", r.TrafficHeaders, r.TrafficTotal)
	}
	for name, tm := range map[string]H2loadTimes{"request": r.RequestTime, "connect": r.ConnectTime, "1st byte": r.FirstByte} {
		if tm.Min > tm.Max || tm.Mean < tm.Min || tm.Mean > tm.Max {
			return fmt.Errorf("h2load report: time for %s: min %v, mean %v, max %v out of order", name, tm.Min, tm.Mean, tm.Max)
		}
	}
	return nil
}

func h2loadFinished(line string, rep *H2loadReport) error {
	m := h2loadFinishedRE.FindStringSubmatch(line)
	if m == nil {
		return fmt.Errorf("h2load: malformed %q", line)
	}
	var err error
	if rep.Finished, err = h2loadDuration(m[1]); err != nil {
		return fmt.Errorf("h2load: finished in: %w", err)
	}
	if rep.ReqPerSec, err = strconv.ParseFloat(m[2], 64); err != nil || rep.ReqPerSec > 1e12 {
		return fmt.Errorf("h2load: bad req/s %q", m[2])
	}
	return nil
}

// h2loadInts fills into with re's groups; an absent optional group is 0.
func h2loadInts(re *regexp.Regexp, line string, into ...*int) error {
	m := re.FindStringSubmatch(line)
	if m == nil {
		return fmt.Errorf("h2load: malformed %q", line)
	}
	for i, p := range into {
		if m[i+1] == "" {
			*p = 0
			continue
		}
		n, err := strconv.Atoi(m[i+1])
		if err != nil || n > 1<<40 {
			return fmt.Errorf("h2load: bad count %q in %q", m[i+1], line)
		}
		*p = n
	}
	return nil
}

func h2loadTraffic(line string, rep *H2loadReport) error {
	m := h2loadTrafficRE.FindStringSubmatch(line)
	if m == nil {
		return fmt.Errorf("h2load: malformed %q", line)
	}
	for i, p := range []*int64{&rep.TrafficTotal, &rep.TrafficHeaders, &rep.TrafficData} {
		n, err := strconv.ParseInt(m[i+1], 10, 64)
		if err != nil || n > 1<<50 {
			return fmt.Errorf("h2load: bad byte count %q in %q", m[i+1], line)
		}
		*p = n
	}
	return nil
}

func h2loadTimesLine(line string, into *H2loadTimes) error {
	m := h2loadTimesRE.FindStringSubmatch(line)
	if m == nil {
		return fmt.Errorf("h2load: malformed %q", line)
	}
	for i, p := range []*time.Duration{&into.Min, &into.Max, &into.Mean, &into.SD} {
		d, err := h2loadDuration(m[i+2])
		if err != nil {
			return fmt.Errorf("h2load: %s: %w", m[1], err)
		}
		*p = d
	}
	return nil
}

// h2loadDuration parses h2load's durations: "812us", "1.25ms", "3.51s".
func h2loadDuration(s string) (time.Duration, error) {
	if !h2loadDurationRE.MatchString(s) {
		return 0, fmt.Errorf("%q is no h2load duration", s)
	}
	d, err := time.ParseDuration(s)
	if err != nil || d > 1000*time.Hour {
		return 0, fmt.Errorf("%q is no h2load duration", s)
	}
	return d, nil
}
