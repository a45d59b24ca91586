package zeekpackage_test

// The core's reconnection rules, without Zeek: the retry cap after a
// healthy stream, and how often failures are reported.

import (
	"math/bits"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var reconnectDelay = regexp.MustCompile(`reconnecting in ([0-9.e+-]+)s`)

// delays returns the reconnect delays the client reported.
func delays(t *testing.T, log string) []float64 {
	t.Helper()
	var out []float64
	for _, m := range reconnectDelay.FindAllStringSubmatch(log, -1) {
		d, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			t.Fatalf("bad delay %q", m[1])
		}
		out = append(out, d)
	}
	return out
}

// serveOnceThenRefuse accepts one connection, writes data to it, closes it
// and stops listening, so that every later attempt is refused.
func serveOnceThenRefuse(t *testing.T, data []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		c, err := ln.Accept()
		ln.Close()
		if err != nil {
			return
		}
		_, _ = c.Write(data)
		c.Close()
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// After a connection that delivered a valid stream, retries stay at
// -backoff-max-healthy however long the server is away; after one that
// ended before the pcap header they grow to -backoff-max as before.
func TestCoreRetryCapAfterHealthyStream(t *testing.T) {
	coreBinaries(t)
	const capHealthy = 0.05
	for _, tc := range []struct {
		name    string
		data    []byte
		healthy bool
	}{
		{"valid stream", encodeStream(false, false, 65535, 1, samplePackets(1, false)), true},
		{"closed before the header", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := serveOnceThenRefuse(t, tc.data)
			// -min-connects 2 is never reached: the client retries until
			// -timeout and exits with status 2.
			r := runClient(t, "-addr", addr, "-count", "0", "-min-connects", "2", "-backoff", "0.01", "-backoff-max", "10",
				"-backoff-max-healthy", strconv.FormatFloat(capHealthy, 'f', -1, 64), "-timeout", "1.5")
			if r.Err == nil {
				t.Fatalf("potclient reached 2 connections to a server that accepted one:\n%s", r.Log)
			}
			ds := delays(t, r.Log)
			if len(ds) < 3 {
				t.Fatalf("%d reconnect delays reported:\n%s", len(ds), r.Log)
			}
			maxDelay := 0.0
			for _, d := range ds {
				maxDelay = max(maxDelay, d)
			}
			if tc.healthy && maxDelay != capHealthy {
				t.Errorf("after a healthy stream the longest delay was %gs, want the cap %gs:\n%s", maxDelay, capHealthy, r.Log)
			}
			if !tc.healthy && maxDelay <= capHealthy {
				t.Errorf("after a connection without a stream the delay stayed at %gs, want it growing past %gs:\n%s", maxDelay, capHealthy, r.Log)
			}
		})
	}
}

// A server that stays away is retried often, but reported only at the
// 1st, 2nd, 4th, 8th... failure in a row.
func TestCoreFailuresReportedSparingly(t *testing.T) {
	coreBinaries(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r := runClient(t, "-addr", addr, "-count", "1", "-backoff", "0.005", "-backoff-max", "0.005", "-timeout", "1")
	failures := r.Stats["connect_failures"]
	if failures < 20 {
		t.Fatalf("%d connect failures in 1 s at a 5 ms backoff", failures)
	}
	reported := strings.Count(r.Log, "cannot connect to")
	if want := bits.Len64(uint64(failures)); reported != want {
		t.Errorf("%d failures reported %d times, want %d (powers of two):\n%s", failures, reported, want, r.Log)
	}
	for _, n := range []string{"(2 failed attempts in a row", "(16 failed attempts in a row"} {
		if !strings.Contains(r.Log, n) {
			t.Errorf("log lacks %q:\n%s", n, r.Log)
		}
	}
}
