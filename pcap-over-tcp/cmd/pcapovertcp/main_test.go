package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pano-observability/pano/internal/testenv"
	pcapovertcp "github.com/pano-observability/pano/pcap-over-tcp"
)

const trace = "../../testdata/zeek-dns-nsec.pcap"

var listeningRE = regexp.MustCompile(`msg=listening addr=(\S+)`)

// startServe runs "serve" in-process and returns its address and a
// channel closed when it returns, after which *result holds its error.
func startServe(t *testing.T, args ...string) (string, <-chan struct{}, *error, *testenv.SyncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &testenv.SyncBuffer{}
	done := make(chan struct{})
	var result error
	go func() {
		defer close(done)
		result = run(ctx, append([]string{"serve", "-addr", "127.0.0.1:0", "-progress", "0"}, args...), io.Discard, logs)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop")
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := listeningRE.FindStringSubmatch(logs.String()); m != nil {
			return m[1], done, &result, logs
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not log its address:\n%s", logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func dumpTo(t *testing.T, args ...string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out.pcap")
	var logs bytes.Buffer
	if err := run(context.Background(), append([]string{"dump", "-o", out, "-progress", "0"}, args...), io.Discard, &logs); err != nil {
		t.Fatalf("dump: %v\n%s", err, logs.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Served once and dumped, a little-endian microsecond trace comes back
// byte for byte.
func TestServeDumpRoundTrip(t *testing.T) {
	want, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	addr, done, result, logs := startServe(t, "-file", trace)
	got := dumpTo(t, "-addr", addr)
	if !bytes.Equal(got, want) {
		t.Fatalf("dumped %d bytes, differ from the %d-byte trace", len(got), len(want))
	}
	<-done // serve ends by itself once the file is played and delivered
	if *result != nil {
		t.Fatalf("serve: %v\n%s", *result, logs.String())
	}
}

func TestServeLoopAndDumpCount(t *testing.T) {
	want, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	records := want[pcapovertcp.FileHeaderLen:]

	addr, _, _, _ := startServe(t, "-file", trace, "-loop", "3")
	got := dumpTo(t, "-addr", addr)
	if wantAll := append(append(append([]byte(nil), want...), records...), records...); !bytes.Equal(got, wantAll) {
		t.Fatalf("-loop 3: dumped %d bytes, want the trace's records 3 times (%d bytes)", len(got), len(wantAll))
	}

	addr, _, _, _ = startServe(t, "-file", trace, "-loop", "forever")
	got = dumpTo(t, "-addr", addr, "-count", "10")
	if n := countPackets(t, got); n != 10 {
		t.Fatalf("-count 10: %d packets", n)
	}
}

func TestDumpDuration(t *testing.T) {
	// Realtime: the trace's 4 packets span 2.9 s, so a 300 ms dump ends by
	// its duration, with a valid file holding what arrived.
	addr, _, _, _ := startServe(t, "-file", trace, "-speed", "realtime")
	got := dumpTo(t, "-addr", addr, "-duration", "300ms")
	if n := countPackets(t, got); n < 1 || n > 4 {
		t.Fatalf("-duration: %d packets", n)
	}
}

func TestServeNanosecondAndRetime(t *testing.T) {
	addr, _, _, _ := startServe(t, "-file", trace, "-nsec", "-retime")
	before := time.Now()
	got := dumpTo(t, "-addr", addr)
	r, err := pcapovertcp.NewReader(bytes.NewReader(got))
	if err != nil {
		t.Fatal(err)
	}
	if !r.Header().Nanosecond {
		t.Fatalf("header %+v, want nanosecond", r.Header())
	}
	for {
		ci, _, err := r.ReadPacket()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ci.Timestamp.Before(before.Add(-time.Second)) {
			t.Fatalf("-retime: timestamp %v before the dump started (%v)", ci.Timestamp, before)
		}
	}
}

func countPackets(t *testing.T, b []byte) int {
	t.Helper()
	r, err := pcapovertcp.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		if _, _, err := r.ReadPacket(); err == io.EOF {
			return n
		} else if err != nil {
			t.Fatal(err)
		}
		n++
	}
}

func TestServeErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.pcap")
	if err := os.WriteFile(bad, []byte("this is not a pcap file at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := run(context.Background(), []string{"serve", "-file", bad, "-addr", "127.0.0.1:0"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "bad magic") || !strings.Contains(err.Error(), "byte offset 0") {
		t.Fatalf("bad file: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = run(context.Background(), []string{"serve", "-file", trace, "-addr", ln.Addr().String()}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "already in use") {
		t.Fatalf("port in use: %v", err)
	}
	for _, args := range [][]string{
		{"serve"},
		{"serve", "-file", trace, "-speed", "warp"},
		{"serve", "-file", trace, "-loop", "0"},
		{"serve", "-file", trace, "-allow", "localhost"},
		{"dump", "-count", "-1"},
		{"frobnicate"},
		{},
	} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

// -help lists every flag with its variable.
func TestHelpDocumentsFlagsAndEnv(t *testing.T) {
	for cmd, flags := range map[string][]string{
		"serve": {"file", "addr", "speed", "loop", "nsec", "retime", "wait-clients", "max-clients", "queue-bytes", "snaplen", "allow",
			"write-timeout", "drain-timeout", "progress", "metrics-addr", "log-level", "log-format"},
		"dump": {"addr", "o", "count", "duration", "reconnect", "progress", "log-level", "log-format"},
	} {
		var out bytes.Buffer
		err := run(context.Background(), []string{cmd, "-help"}, io.Discard, &out)
		if !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("%s -help: %v", cmd, err)
		}
		for _, f := range flags {
			want := "-" + f + ", PCAPOVERTCP_" + strings.ToUpper(strings.ReplaceAll(f, "-", "_"))
			if !strings.Contains(out.String(), want) {
				t.Errorf("%s -help lacks %q:\n%s", cmd, want, out.String())
			}
		}
	}
}

// A malformed variable fails the command before it listens or connects,
// with an error naming the variable.
func TestMalformedVariableNamesIt(t *testing.T) {
	for _, tc := range []struct{ cmd, env, val string }{
		{"serve", "PCAPOVERTCP_WRITE_TIMEOUT", "5"},
		{"serve", "PCAPOVERTCP_MAX_CLIENTS", "50k"},
		{"serve", "PCAPOVERTCP_NSEC", "yes"},
		{"serve", "PCAPOVERTCP_ADDR", "127.0.0.1"},
		{"serve", "PCAPOVERTCP_ADDR", "127.0.0.1:70000"},
		{"serve", "PCAPOVERTCP_ALLOW", "localhost"},
		{"serve", "PCAPOVERTCP_SPEED", "warp"},
		{"serve", "PCAPOVERTCP_LOOP", "0"},
		{"serve", "PCAPOVERTCP_LOG_LEVEL", "loud"},
		{"serve", "PCAPOVERTCP_LOG_FORMAT", "xml"},
		{"dump", "PCAPOVERTCP_COUNT", "ten"},
		{"dump", "PCAPOVERTCP_COUNT", "-1"},
		{"dump", "PCAPOVERTCP_DURATION", "10"},
		{"dump", "PCAPOVERTCP_RECONNECT", "yes"},
		{"dump", "PCAPOVERTCP_ADDR", "localhost"},
	} {
		t.Run(tc.cmd+"/"+tc.env+"="+tc.val, func(t *testing.T) {
			t.Setenv(tc.env, tc.val)
			// Were it started, serve would wait for a client and dump
			// would retry: the deadline turns that into a failure.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			args := []string{tc.cmd, "-file", trace}
			if tc.cmd == "dump" {
				args = []string{tc.cmd, "-o", filepath.Join(t.TempDir(), "out.pcap")}
			}
			var logs bytes.Buffer
			err := run(ctx, args, io.Discard, &logs)
			if err == nil || !strings.Contains(err.Error(), tc.env) {
				t.Fatalf("error %v, want one naming %s", err, tc.env)
			}
			if ctx.Err() != nil || logs.Len() > 0 {
				t.Fatalf("started before failing (%v):\n%s", ctx.Err(), logs.String())
			}
		})
	}
}

// A flag wins over its variable, which is then not even parsed.
func TestFlagWinsOverVariable(t *testing.T) {
	t.Setenv("PCAPOVERTCP_LOOP", "twice")
	addr, _, _, _ := startServe(t, "-file", trace, "-loop", "2")
	t.Setenv("PCAPOVERTCP_COUNT", "-1")
	if n := countPackets(t, dumpTo(t, "-addr", addr, "-count", "5")); n != 5 {
		t.Fatalf("-count 5 over PCAPOVERTCP_COUNT=-1, -loop 2 over PCAPOVERTCP_LOOP=twice: %d packets, want 5", n)
	}
}

// The built program, end to end with real peers: serve a trace twice to
// two dump processes at once, one writing to standard output into
// tcpdump, and check both with tcpdump and tshark.
func TestProgramWithTcpdumpAndTshark(t *testing.T) {
	tcpdump := testenv.RequireProgram(t, "tcpdump", "tcpdump")
	tshark := testenv.RequireProgram(t, "tshark", "tshark")
	dir := t.TempDir()
	bin := filepath.Join(dir, "pcapovertcp")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	serve := exec.Command(bin, "serve", "-file", trace, "-addr", "127.0.0.1:0", "-loop", "2", "-wait-clients", "2")
	logs := &testenv.SyncBuffer{}
	serve.Stderr = logs
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = serve.Process.Kill(); _ = serve.Wait() })
	var addr string
	eventuallyMatch(t, logs, func(s string) bool {
		if m := listeningRE.FindStringSubmatch(s); m != nil {
			addr = m[1]
			return true
		}
		return false
	})

	out := filepath.Join(dir, "out.pcap")
	toFile := exec.Command(bin, "dump", "-addr", addr, "-o", out)
	if err := toFile.Start(); err != nil {
		t.Fatal(err)
	}
	dump := exec.Command(bin, "dump", "-addr", addr, "-o", "-")
	td := exec.Command(tcpdump, "-r", "-", "-nn", "-tt")
	pipe, err := dump.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	td.Stdin = pipe
	var tdOut, tdErr bytes.Buffer
	td.Stdout, td.Stderr = &tdOut, &tdErr
	if err := dump.Start(); err != nil {
		t.Fatal(err)
	}
	if err := td.Start(); err != nil {
		t.Fatal(err)
	}
	if err := dump.Wait(); err != nil {
		t.Fatalf("dump: %v", err)
	}
	if err := td.Wait(); err != nil {
		t.Fatalf("tcpdump: %v\n%s", err, tdErr.String())
	}
	if err := toFile.Wait(); err != nil {
		t.Fatalf("dump -o file: %v", err)
	}
	if err := serve.Wait(); err != nil {
		t.Fatalf("serve: %v\n%s", err, logs.String())
	}

	ref, err := exec.Command(tcpdump, "-r", trace, "-nn", "-tt").Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := string(ref) + string(ref); tdOut.String() != want {
		t.Fatalf("tcpdump on the stream:\n%s\nwant the trace twice:\n%s", tdOut.String(), want)
	}
	fields := []string{"-T", "fields", "-e", "frame.time_epoch", "-e", "frame.len", "-e", "dns.id", "-e", "dns.qry.name"}
	refT, err := exec.Command(tshark, append([]string{"-r", trace}, fields...)...).Output()
	if err != nil {
		t.Fatal(err)
	}
	gotT, err := exec.Command(tshark, append([]string{"-r", out}, fields...)...).Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := string(refT) + string(refT); string(gotT) != want || len(refT) == 0 {
		t.Fatalf("tshark on the dump:\n%s\nwant the trace twice:\n%s", gotT, want)
	}
}

func eventuallyMatch(t *testing.T, logs *testenv.SyncBuffer, ok func(string) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok(logs.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out; logs:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
