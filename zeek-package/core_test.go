package zeekpackage_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pano-observability/pano/internal/testenv"
	pcapovertcp "github.com/pano-observability/pano/pcap-over-tcp"
)

// The core is built once per test binary, with the sanitizers on.
var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
	buildLog  []byte
)

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range []string{buildDir, benchDir} {
		if d != "" {
			os.RemoveAll(d)
		}
	}
	os.Exit(code)
}

// coreBinaries builds core/ with g++ -fsanitize=address,undefined and
// returns the directory holding parser_test and potclient.
func coreBinaries(t *testing.T) string {
	t.Helper()
	testenv.RequireProgram(t, "g++", "g++")
	testenv.RequireProgram(t, "make", "make")
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "pano-zeek-core-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("make", "-C", "core", "OUT="+buildDir, "SANITIZE=1")
		buildLog, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("building the core: %v\n%s", buildErr, buildLog)
	}
	return buildDir
}

// pkt is one packet as the tests send and expect it.
type pkt struct {
	Sec, Frac uint32 // Frac in µs, or ns for nanosecond streams
	Len       uint32
	Data      []byte
}

func (p pkt) String() string {
	return fmt.Sprintf("%d.%d len=%d caplen=%d", p.Sec, p.Frac, p.Len, len(p.Data))
}

// encodeStream writes a libpcap stream by hand, in either byte order, so
// that the tests do not depend on the writer under test for the cases it
// cannot produce (big-endian, malformed).
func encodeStream(bigEndian, nano bool, snaplen, linktype uint32, pkts []pkt) []byte {
	var bo binary.AppendByteOrder = binary.LittleEndian
	if bigEndian {
		bo = binary.BigEndian
	}
	magic := uint32(0xa1b2c3d4)
	if nano {
		magic = 0xa1b23c4d
	}
	b := bo.AppendUint32(nil, magic)
	b = bo.AppendUint16(b, 2)
	b = bo.AppendUint16(b, 4)
	b = bo.AppendUint32(b, 0)
	b = bo.AppendUint32(b, 0)
	b = bo.AppendUint32(b, snaplen)
	b = bo.AppendUint32(b, linktype)
	for _, p := range pkts {
		b = appendRecord(b, bo, p.Sec, p.Frac, uint32(len(p.Data)), p.Len)
		b = append(b, p.Data...)
	}
	return b
}

func appendRecord(b []byte, bo binary.AppendByteOrder, sec, frac, caplen, length uint32) []byte {
	b = bo.AppendUint32(b, sec)
	b = bo.AppendUint32(b, frac)
	b = bo.AppendUint32(b, caplen)
	return bo.AppendUint32(b, length)
}

// samplePackets returns n packets of varied sizes (including empty ones and
// one captured shorter than its wire length).
func samplePackets(n int, nano bool) []pkt {
	out := make([]pkt, n)
	for i := range out {
		size := (i * 37) % 180
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(i*7 + j)
		}
		frac := uint32(999_999 - i)
		if nano {
			frac = uint32(999_999_999 - i*1001)
		}
		length := uint32(size)
		if i%5 == 3 {
			length += 1000
		}
		out[i] = pkt{Sec: uint32(1_795_642_521 + i), Frac: frac, Len: length, Data: data}
	}
	return out
}

// clientResult is what potclient printed.
type clientResult struct {
	Packets []pkt
	Nano    []bool
	Stats   map[string]int64
	Log     string
	Err     error // nil, or the exit error
}

func parseClientOutput(t *testing.T, stdout, stderr []byte, runErr error) clientResult {
	t.Helper()
	r := clientResult{Stats: map[string]int64{}, Log: string(stderr), Err: runErr}
	sc := bufio.NewScanner(bytes.NewReader(stdout))
	sc.Buffer(make([]byte, 1<<20), 1<<22)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 6 && f[0] == "pkt":
			var p pkt
			sec, _ := strconv.ParseUint(f[1], 10, 32)
			frac, _ := strconv.ParseUint(f[2], 10, 32)
			length, _ := strconv.ParseUint(f[5], 10, 32)
			caplen, _ := strconv.Atoi(f[4])
			p.Sec, p.Frac, p.Len = uint32(sec), uint32(frac), uint32(length)
			if len(f) == 7 {
				d, err := hex.DecodeString(f[6])
				if err != nil {
					t.Fatalf("bad hex from potclient: %v", err)
				}
				p.Data = d
			} else {
				p.Data = []byte{}
			}
			if len(p.Data) != caplen {
				t.Fatalf("potclient printed caplen %d with %d bytes", caplen, len(p.Data))
			}
			r.Packets = append(r.Packets, p)
			r.Nano = append(r.Nano, f[3] == "1")
		case len(f) > 0 && f[0] == "stats":
			for _, kv := range f[1:] {
				k, v, _ := strings.Cut(kv, "=")
				n, _ := strconv.ParseInt(v, 10, 64)
				r.Stats[k] = n
			}
		}
	}
	if len(r.Stats) == 0 {
		t.Fatalf("potclient printed no stats (err %v)\nstderr:\n%s", runErr, stderr)
	}
	return r
}

type runningClient struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	done           chan struct{}
	err            error
}

// startClient runs potclient with args; Wait collects its output.
func startClient(t *testing.T, args ...string) *runningClient {
	t.Helper()
	bin := filepath.Join(coreBinaries(t), "potclient")
	rc := &runningClient{done: make(chan struct{})}
	rc.cmd = exec.Command(bin, args...)
	rc.cmd.Stdout = &rc.stdout
	rc.cmd.Stderr = &rc.stderr
	rc.cmd.Env = append(os.Environ(), "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0", "UBSAN_OPTIONS=print_stacktrace=1")
	if err := rc.cmd.Start(); err != nil {
		t.Fatalf("start potclient: %v", err)
	}
	go func() {
		rc.err = rc.cmd.Wait()
		close(rc.done)
	}()
	t.Cleanup(func() {
		select {
		case <-rc.done:
		default:
			_ = rc.cmd.Process.Kill()
			<-rc.done
		}
	})
	return rc
}

func (rc *runningClient) Wait(t *testing.T) clientResult {
	t.Helper()
	select {
	case <-rc.done:
	case <-time.After(60 * time.Second):
		_ = rc.cmd.Process.Kill()
		<-rc.done
		t.Fatalf("potclient did not exit\nstderr:\n%s", rc.stderr.String())
	}
	r := parseClientOutput(t, rc.stdout.Bytes(), rc.stderr.Bytes(), rc.err)
	// A sanitizer report ends the program with a failure status and a
	// report on stderr; either is a test failure.
	if strings.Contains(r.Log, "Sanitizer") || strings.Contains(r.Log, "runtime error:") {
		t.Fatalf("sanitizer report from potclient:\n%s", r.Log)
	}
	return r
}

func runClient(t *testing.T, args ...string) clientResult {
	t.Helper()
	return startClient(t, args...).Wait(t)
}

func requireSuccess(t *testing.T, r clientResult) {
	t.Helper()
	if r.Err != nil {
		t.Fatalf("potclient: %v, stats %v\nstderr:\n%s", r.Err, r.Stats, r.Log)
	}
}

func comparePackets(t *testing.T, got, want []pkt) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d packets, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Sec != w.Sec || g.Frac != w.Frac || g.Len != w.Len || !bytes.Equal(g.Data, w.Data) {
			t.Fatalf("packet %d: got %v, want %v", i, g, w)
		}
	}
}

// rawServer accepts connections on 127.0.0.1:0 (or addr) and hands each
// one, in order, to the next handler; connections beyond the handlers
// are held open without data until the test ends.
type rawServer struct {
	ln   net.Listener
	wg   sync.WaitGroup
	errs chan error
}

func startRaw(t *testing.T, network, addr string, handlers ...func(net.Conn) error) *rawServer {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	s := &rawServer{ln: ln, errs: make(chan error, len(handlers)+1)}
	var conns []net.Conn
	var mu sync.Mutex
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if i >= len(handlers) {
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				continue
			}
			if err := handlers[i](c); err != nil {
				s.errs <- fmt.Errorf("handler %d: %w", i, err)
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		s.wg.Wait()
		close(s.errs)
		for err := range s.errs {
			t.Errorf("raw server: %v", err)
		}
	})
	return s
}

func (s *rawServer) Addr() string { return s.ln.Addr().String() }

// sendAndClose writes the chunks with a short pause between them (so that
// the client sees them in separate reads) and closes the connection.
func sendAndClose(chunks ...[]byte) func(net.Conn) error {
	return func(c net.Conn) error {
		defer c.Close()
		for i, ch := range chunks {
			if i > 0 {
				time.Sleep(2 * time.Millisecond)
			}
			if _, err := c.Write(ch); err != nil {
				return err
			}
		}
		return nil
	}
}

// sendAndHold writes data and keeps the connection open until the client
// closes it (so the client's exit, not ours, ends the connection).
func sendAndHold(data []byte) func(net.Conn) error {
	return func(c net.Conn) error {
		if _, err := c.Write(data); err != nil {
			c.Close()
			return err
		}
		go func() {
			_, _ = io.Copy(io.Discard, c)
			c.Close()
		}()
		return nil
	}
}

func TestCoreParserUnit(t *testing.T) {
	bin := filepath.Join(coreBinaries(t), "parser_test")
	out, err := exec.Command(bin).CombinedOutput()
	if err != nil {
		t.Fatalf("parser_test: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "parser_test: ok") {
		t.Fatalf("parser_test output: %s", out)
	}
}

// The hand encoder must agree with the real writer for the case both
// produce, or the malformed-stream tests would prove nothing.
func TestEncoderMatchesRealWriter(t *testing.T) {
	for _, nano := range []bool{false, true} {
		pkts := samplePackets(20, nano)
		var buf bytes.Buffer
		w, err := pcapovertcp.NewWriter(&buf, 65535, 1, nano)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pkts {
			ts := time.Unix(int64(p.Sec), int64(p.Frac)*1000)
			if nano {
				ts = time.Unix(int64(p.Sec), int64(p.Frac))
			}
			if err := w.WritePacket(pcapovertcp.CaptureInfo{Timestamp: ts, CaptureLength: len(p.Data), Length: int(p.Len)}, p.Data); err != nil {
				t.Fatal(err)
			}
		}
		want := encodeStream(binary.NativeEndian.Uint16([]byte{1, 0}) != 1, nano, 65535, 1, pkts)
		if !bytes.Equal(buf.Bytes(), want) {
			t.Fatalf("nano=%v: the writer's stream differs from the hand-encoded one", nano)
		}
	}
}

func TestCoreByteOrdersAndResolutions(t *testing.T) {
	coreBinaries(t)
	for _, bigEndian := range []bool{false, true} {
		for _, nano := range []bool{false, true} {
			t.Run(fmt.Sprintf("bigendian=%v/nano=%v", bigEndian, nano), func(t *testing.T) {
				pkts := samplePackets(50, nano)
				stream := encodeStream(bigEndian, nano, 65535, 1, pkts)
				srv := startRaw(t, "tcp", "127.0.0.1:0", sendAndHold(stream))
				r := runClient(t, "-addr", srv.Addr(), "-count", "50", "-timeout", "20")
				requireSuccess(t, r)
				comparePackets(t, r.Packets, pkts)
				for i, n := range r.Nano {
					if n != nano {
						t.Fatalf("packet %d: nanosecond flag %v, want %v", i, n, nano)
					}
				}
				if want := "big-endian"; bigEndian != strings.Contains(r.Log, want) {
					t.Fatalf("log does not report the byte order:\n%s", r.Log)
				}
			})
		}
	}
}

// Every split of the stream into two writes, one connection per split,
// then one connection writing a byte at a time.
func TestCorePartialReadsAtEveryBoundary(t *testing.T) {
	coreBinaries(t)
	pkts := samplePackets(4, false) // sizes 0, 37, 74, 111
	stream := encodeStream(false, false, 65535, 1, pkts)
	var handlers []func(net.Conn) error
	for cut := 0; cut <= len(stream); cut++ {
		handlers = append(handlers, sendAndClose(stream[:cut], stream[cut:]))
	}
	var bytewise [][]byte
	for i := range stream {
		bytewise = append(bytewise, stream[i:i+1])
	}
	handlers = append(handlers, sendAndClose(bytewise...))
	srv := startRaw(t, "tcp", "127.0.0.1:0", handlers...)
	total := len(handlers) * len(pkts)
	// Zeek's loop: one packet per wake-up, woken only by the descriptor or
	// by a zero timeout for records already buffered. A record left in the
	// buffer unannounced would stall this run.
	r := runClient(t, "-addr", srv.Addr(), "-count", strconv.Itoa(total), "-backoff", "0.001", "-timeout", "50", "-loop", "zeek")
	requireSuccess(t, r)
	var want []pkt
	for range handlers {
		want = append(want, pkts...)
	}
	comparePackets(t, r.Packets, want)
	if r.Stats["truncated"] != 0 || r.Stats["protocol_errors"] != 0 {
		t.Fatalf("clean streams reported losses: %v", r.Stats)
	}
	if r.Stats["connects"] != int64(len(handlers)) {
		t.Fatalf("connects = %d, want %d", r.Stats["connects"], len(handlers))
	}
}

func TestCoreTruncatedRecord(t *testing.T) {
	coreBinaries(t)
	pkts := samplePackets(3, false)
	first := encodeStream(false, false, 65535, 1, pkts[:2])
	cut := len(first) - len(pkts[1].Data)/2 // the second record loses half its data
	second := encodeStream(false, false, 65535, 1, pkts[2:])
	srv := startRaw(t, "tcp", "127.0.0.1:0", sendAndClose(first[:cut]), sendAndHold(second))
	r := runClient(t, "-addr", srv.Addr(), "-count", "2", "-min-connects", "2", "-backoff", "0.01", "-timeout", "20")
	requireSuccess(t, r)
	comparePackets(t, r.Packets, []pkt{pkts[0], pkts[2]})
	if r.Stats["truncated"] != 1 || r.Stats["disconnects"] != 1 {
		t.Fatalf("stats %v: want truncated=1 disconnects=1", r.Stats)
	}
	// What was buffered of the cut record: its header and half its data.
	wantDiscarded := int64(cut - (len(first) - 16 - len(pkts[1].Data)))
	if r.Stats["discarded_bytes"] != wantDiscarded {
		t.Fatalf("discarded_bytes %d, want %d", r.Stats["discarded_bytes"], wantDiscarded)
	}
	if !strings.Contains(r.Log, "server closed the connection ("+strconv.FormatInt(wantDiscarded, 10)+" buffered bytes discarded)") {
		t.Fatalf("log does not explain the loss:\n%s", r.Log)
	}
}

func TestCoreOversizedRecord(t *testing.T) {
	coreBinaries(t)
	pkts := samplePackets(3, false)
	bad := encodeStream(false, false, 128, 1, pkts[:1])
	bad = appendRecord(bad, binary.LittleEndian, 1, 2, 5000, 5000)
	bad = append(bad, make([]byte, 5000)...)
	good := encodeStream(false, false, 128, 1, pkts[1:])
	srv := startRaw(t, "tcp", "127.0.0.1:0", sendAndHold(bad), sendAndHold(good))
	r := runClient(t, "-addr", srv.Addr(), "-count", "3", "-min-protocol-errors", "1", "-backoff", "0.01", "-timeout", "20")
	requireSuccess(t, r)
	comparePackets(t, r.Packets, pkts)
	if !strings.Contains(r.Log, "record 2: captured length 5000 exceeds the snaplen 128") {
		t.Fatalf("no clear error for the oversized record:\n%s", r.Log)
	}
	if r.Stats["protocol_errors"] != 1 {
		t.Fatalf("stats %v: want protocol_errors=1", r.Stats)
	}

	// A header claiming a huge snaplen does not lift the client's bound.
	huge := encodeStream(false, false, 0x7fffffff, 1, nil)
	huge = appendRecord(huge, binary.LittleEndian, 1, 2, 1<<30, 1<<30)
	srv2 := startRaw(t, "tcp", "127.0.0.1:0", sendAndHold(huge))
	r2 := runClient(t, "-addr", srv2.Addr(), "-min-protocol-errors", "1", "-max-record", "65536", "-timeout", "20")
	requireSuccess(t, r2)
	if !strings.Contains(r2.Log, "captured length 1073741824 exceeds the maximum record size 65536") {
		t.Fatalf("no clear error for the huge record:\n%s", r2.Log)
	}
}

func TestCoreBadHeaders(t *testing.T) {
	coreBinaries(t)
	pcapng := []byte{0x0a, 0x0d, 0x0d, 0x0a, 0x1c, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	v1 := encodeStream(true, false, 65535, 1, nil)
	binary.BigEndian.PutUint16(v1[4:], 1)
	sll := encodeStream(false, false, 65535, 113, samplePackets(1, false))
	cases := []struct {
		name, stream, want string
		args               []string
	}{
		{"pcapng", string(pcapng), "bad magic 0x0a0d0d0a", nil},
		{"version", string(v1), "unsupported pcap version 1.4", nil},
		{"linktype", string(sll), "link type 113 in the pcap header, expected 1", []string{"-linktype", "1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The same bad stream twice: the client reports it, backs off,
			// retries, and reports it again (Zeek keeps running).
			srv := startRaw(t, "tcp", "127.0.0.1:0", sendAndHold([]byte(tc.stream)), sendAndHold([]byte(tc.stream)))
			args := append([]string{"-addr", srv.Addr(), "-min-protocol-errors", "2", "-backoff", "0.01", "-timeout", "20"}, tc.args...)
			r := runClient(t, args...)
			requireSuccess(t, r)
			if !strings.Contains(r.Log, tc.want) {
				t.Fatalf("log lacks %q:\n%s", tc.want, r.Log)
			}
			if len(r.Packets) != 0 || r.Stats["connects"] != 0 {
				t.Fatalf("bad stream delivered something: %v", r.Stats)
			}
		})
	}
}

// servePackets runs a real pcapovertcp.Server until the returned stop
// function is called.
func startRealServer(t *testing.T, cfg pcapovertcp.ServerConfig) (*pcapovertcp.Server, func()) {
	t.Helper()
	var srv *pcapovertcp.Server
	var err error
	// After a restart the port may take a moment to be bindable again.
	for i := 0; i < 100; i++ {
		if srv, err = pcapovertcp.NewServer(cfg); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return srv, stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// tracePackets reads the first n packets of the dnsperf fixture capture.
func tracePackets(t testing.TB, n int) []pkt {
	t.Helper()
	rd, err := pcapovertcp.NewReader(testenv.OpenTestdata(t, "testdata/dnsperf-unbound.pcap.gz"))
	if err != nil {
		t.Fatal(err)
	}
	var out []pkt
	for len(out) < n {
		ci, data, err := rd.ReadPacket()
		if err != nil {
			t.Fatalf("reading the fixture: %v", err)
		}
		out = append(out, pkt{
			Sec:  uint32(ci.Timestamp.Unix()),
			Frac: uint32(ci.Timestamp.Nanosecond()),
			Len:  uint32(ci.Length),
			Data: append([]byte(nil), data...),
		})
	}
	return out
}

func writeAll(srv *pcapovertcp.Server, pkts []pkt) {
	for _, p := range pkts {
		srv.WritePacket(pcapovertcp.CaptureInfo{
			Timestamp:     time.Unix(int64(p.Sec), int64(p.Frac)),
			CaptureLength: len(p.Data),
			Length:        int(p.Len),
		}, p.Data)
	}
}

func asResolution(pkts []pkt, nano bool) []pkt {
	out := make([]pkt, len(pkts))
	for i, p := range pkts {
		out[i] = p
		if !nano {
			out[i].Frac = p.Frac / 1000
		}
	}
	return out
}

// Real DNS packets through the real Go server, in both resolutions.
func TestCoreRealServer(t *testing.T) {
	coreBinaries(t)
	trace := tracePackets(t, 3000)
	for _, nano := range []bool{false, true} {
		t.Run(fmt.Sprintf("nano=%v", nano), func(t *testing.T) {
			srv, _ := startRealServer(t, pcapovertcp.ServerConfig{Addr: "127.0.0.1:0", Nanosecond: nano})
			rc := startClient(t, "-addr", srv.Addr().String(), "-count", strconv.Itoa(len(trace)), "-timeout", "40", "-loop", "zeek")
			waitFor(t, "the client to connect", func() bool { return len(srv.Stats().Clients) == 1 })
			writeAll(srv, trace)
			r := rc.Wait(t)
			requireSuccess(t, r)
			comparePackets(t, r.Packets, asResolution(trace, nano))
			var bytes int64
			for _, p := range trace {
				bytes += int64(len(p.Data))
			}
			if r.Stats["bytes"] != bytes || r.Stats["packets"] != int64(len(trace)) {
				t.Fatalf("stats %v: want packets=%d bytes=%d", r.Stats, len(trace), bytes)
			}
		})
	}
}

// The server goes away and comes back on the same port: the client says
// so, reconnects by itself and loses nothing that was sent.
func TestCoreServerRestart(t *testing.T) {
	coreBinaries(t)
	trace := tracePackets(t, 400)
	srv, stop := startRealServer(t, pcapovertcp.ServerConfig{Addr: "127.0.0.1:0"})
	addr := srv.Addr().String()
	rc := startClient(t, "-addr", addr, "-count", "400", "-min-connects", "2", "-backoff", "0.02", "-backoff-max", "0.2", "-timeout", "40")
	waitFor(t, "the first connection", func() bool { return len(srv.Stats().Clients) == 1 })
	writeAll(srv, trace[:200])
	waitFor(t, "the first half to be sent", func() bool { return srv.Stats().SentPackets == 200 })
	stop()

	srv2, _ := startRealServer(t, pcapovertcp.ServerConfig{Addr: addr})
	waitFor(t, "the reconnection", func() bool { return len(srv2.Stats().Clients) == 1 })
	writeAll(srv2, trace[200:])
	r := rc.Wait(t)
	requireSuccess(t, r)
	comparePackets(t, r.Packets, asResolution(trace, false))
	if r.Stats["connects"] != 2 || r.Stats["disconnects"] != 1 || r.Stats["truncated"] != 0 {
		t.Fatalf("stats %v: want connects=2 disconnects=1 truncated=0", r.Stats)
	}
	if !strings.Contains(r.Log, "server closed the connection") || !strings.Contains(r.Log, "reconnecting in") {
		t.Fatalf("the client did not report the outage:\n%s", r.Log)
	}
}

// Nothing listening yet: the client retries with a growing delay (not in
// a loop) and connects once the server appears.
func TestCoreConnectRetryWithBackoff(t *testing.T) {
	coreBinaries(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	pkts := samplePackets(5, false)
	rc := startClient(t, "-addr", addr, "-count", "5", "-backoff", "0.02", "-backoff-max", "0.16", "-timeout", "30")
	time.Sleep(700 * time.Millisecond)
	startRaw(t, "tcp", addr, sendAndHold(encodeStream(false, false, 65535, 1, pkts)))
	r := rc.Wait(t)
	requireSuccess(t, r)
	comparePackets(t, r.Packets, pkts)
	// 0.02+0.04+0.08+0.16+0.16... s: a handful of attempts in 0.7 s; a
	// reconnect loop without backoff would make thousands.
	if f := r.Stats["connect_failures"]; f < 2 || f > 40 {
		t.Fatalf("connect_failures = %d: want a few (exponential backoff)", f)
	}
	if !strings.Contains(r.Log, "Connection refused") {
		t.Fatalf("the refusal was not reported:\n%s", r.Log)
	}
}

// While the server is silent the client blocks in poll(): a busy loop
// would show as thousands of wake-ups.
func TestCoreIdleDoesNotSpin(t *testing.T) {
	coreBinaries(t)
	pkts := samplePackets(2, false)
	stream := encodeStream(false, false, 65535, 1, pkts)
	split := len(stream) - 16 - len(pkts[1].Data) - 5 // leave a partial record pending
	srv := startRaw(t, "tcp", "127.0.0.1:0", func(c net.Conn) error {
		if _, err := c.Write(stream[:split]); err != nil {
			return err
		}
		time.Sleep(1500 * time.Millisecond)
		_, err := c.Write(stream[split:])
		go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
		return err
	})
	r := runClient(t, "-addr", srv.Addr(), "-count", "2", "-timeout", "20")
	requireSuccess(t, r)
	comparePackets(t, r.Packets, pkts)
	if r.Stats["polls"] > 25 {
		t.Fatalf("%d polls during 1.5 s of silence: the client spins", r.Stats["polls"])
	}
}

func TestCoreIPv6AndHostname(t *testing.T) {
	coreBinaries(t)
	pkts := samplePackets(3, false)
	stream := encodeStream(false, false, 65535, 1, pkts)
	t.Run("ipv6", func(t *testing.T) {
		ln, err := net.Listen("tcp6", "[::1]:0")
		if err != nil {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		ln.Close()
		srv := startRaw(t, "tcp6", "[::1]:0", sendAndHold(stream))
		r := runClient(t, "-addr", srv.Addr(), "-count", "3", "-timeout", "20")
		requireSuccess(t, r)
		comparePackets(t, r.Packets, pkts)
		if !strings.Contains(r.Log, "connected to [::1]:") {
			t.Fatalf("log: %s", r.Log)
		}
	})
	t.Run("hostname", func(t *testing.T) {
		// localhost may resolve to ::1 first; the client must fall back to
		// the next address instead of giving up.
		srv := startRaw(t, "tcp4", "127.0.0.1:0", sendAndHold(stream))
		_, port, _ := net.SplitHostPort(srv.Addr())
		r := runClient(t, "-addr", "localhost:"+port, "-count", "3", "-timeout", "20")
		requireSuccess(t, r)
		comparePackets(t, r.Packets, pkts)
	})
	t.Run("bad address", func(t *testing.T) {
		bin := filepath.Join(coreBinaries(t), "potclient")
		out, err := exec.Command(bin, "-addr", "::1:57012").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "an IPv6 address needs brackets") {
			t.Fatalf("want a clear error for an unbracketed IPv6 address, got %v: %s", err, out)
		}
	})
}

func TestCoreReceiveBufferOption(t *testing.T) {
	coreBinaries(t)
	pkts := samplePackets(1, false)
	stream := encodeStream(false, false, 65535, 1, pkts)
	// Below the usual net.core.rmem_max: always granted (Linux doubles it).
	// Above it: granted with CAP_NET_ADMIN (SO_RCVBUFFORCE), otherwise the
	// client must say what it got and how to get more.
	for _, want := range []int64{64 << 10, 4 << 20} {
		srv := startRaw(t, "tcp", "127.0.0.1:0", sendAndHold(stream))
		r := runClient(t, "-addr", srv.Addr(), "-count", "1", "-rcvbuf", strconv.FormatInt(want, 10), "-timeout", "20")
		requireSuccess(t, r)
		got := r.Stats["rcvbuf"]
		if got >= want {
			continue
		}
		if want <= 64<<10 || !strings.Contains(r.Log, "raise net.core.rmem_max or grant CAP_NET_ADMIN") {
			t.Fatalf("SO_RCVBUF %d below the %d asked for, without a warning:\n%s", got, want, r.Log)
		}
	}
}
