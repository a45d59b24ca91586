package pcapovertcp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pano-observability/pano/internal/testenv"
)

// peer is an external program reading a stream from its standard input:
// the client socket itself, or (tshark refuses sockets) a pipe that the
// test feeds from the client socket.
type peer struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
}

func startPeer(t *testing.T, s *Server, viaPipe bool, name string, args ...string) *peer {
	t.Helper()
	conn, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{name: name + " " + strings.Join(args, " ")}
	p.cmd = exec.Command(name, args...)
	if viaPipe {
		t.Cleanup(func() { conn.Close() })
		p.cmd.Stdin = conn // exec copies it into a pipe
	} else {
		f, err := conn.(*net.TCPConn).File()
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		p.cmd.Stdin = f
	}
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	})
	return p
}

func (p *peer) wait(t *testing.T) string {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v\nstderr: %s", p.name, err, p.stderr.String())
		}
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Fatalf("%s did not finish after the stream ended\nstderr: %s", p.name, p.stderr.String())
	}
	return p.stdout.String()
}

// interopPackets are the traces, built IPv4/IPv6 DNS packets, and one
// packet longer than the snap length.
func interopPackets(t *testing.T) []testPacket {
	pkts := append(fixturePackets(t), builtPackets(t, 40)...)
	big := append([]byte(nil), pkts[0].data...)
	big = append(big, bytes.Repeat([]byte{0x5a}, 2000-len(big))...)
	ts := time.Date(2026, 1, 2, 3, 4, 59, 999999999, time.UTC)
	return append(pkts, testPacket{ci: CaptureInfo{Timestamp: ts, Length: 2000}, data: big})
}

// Every client of one server (tshark twice, tcpdump, gopacket's pcapgo
// and this package's Reader, all connected at once) must see exactly the
// packets written, byte for byte, in both timestamp resolutions.
func TestInteropRealPeers(t *testing.T) {
	testenv.RequireProgram(t, "tshark", "tshark")
	testenv.RequireProgram(t, "tcpdump", "tcpdump")
	for _, nsec := range []bool{false, true} {
		t.Run(fmt.Sprintf("nanosecond=%v", nsec), func(t *testing.T) { interop(t, nsec) })
	}
}

func interop(t *testing.T, nsec bool) {
	const snaplen = 1600
	pkts := interopPackets(t)
	s := startServer(t, ServerConfig{SnapLen: snaplen, Nanosecond: nsec, WriteTimeout: time.Minute})

	tsharkHex := startPeer(t, s, true, "tshark", "-r", "-", "-x", "-o", "tcp.desegment_tcp_streams:FALSE")
	tsharkFields := startPeer(t, s, true, "tshark", "-r", "-", "-T", "fields", "-e", "frame.time_epoch", "-e", "frame.len", "-e", "frame.cap_len")
	precision := "micro"
	if nsec {
		precision = "nano"
	}
	tcpdump := startPeer(t, s, false, "tcpdump", "-r", "-", "-nn", "-tt", "-xx", "--time-stamp-precision="+precision)

	gopktc, gopkterr, ourc := make(chan []testPacket, 1), make(chan error, 1), make(chan []testPacket, 1)
	gconn, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer gconn.Close()
	go func() {
		pkts, err := pcapgoRead(gconn)
		gopktc <- pkts
		gopkterr <- err
	}()
	r, oconn, err := Dial(context.Background(), s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer oconn.Close()
	if h := r.Header(); h.SnapLen != snaplen || h.Nanosecond != nsec || h.LinkType != LinkTypeEthernet {
		t.Fatalf("header %+v", h)
	}
	go func() {
		var got []testPacket
		for {
			ci, data, err := r.ReadPacket()
			if err != nil {
				ourc <- got
				return
			}
			got = append(got, testPacket{ci: ci, data: append([]byte(nil), data...)})
		}
	}()

	waitClients(t, s, 5)
	for _, p := range pkts {
		s.WritePacket(p.ci, p.data)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close() // every peer sees the end of the stream

	st := s.Stats()
	if st.SentPackets != uint64(5*len(pkts)) || st.DroppedQueueFull != 0 || st.TruncatedPackets != 1 {
		t.Errorf("stats: sent %d (want %d), dropped %d, truncated %d (want 1)", st.SentPackets, 5*len(pkts), st.DroppedQueueFull, st.TruncatedPackets)
	}

	expectSame(t, <-ourc, pkts, snaplen, nsec)
	gopkts := <-gopktc
	if err := <-gopkterr; err != nil {
		t.Fatal(err)
	}
	expectSame(t, gopkts, pkts, snaplen, nsec)

	// tshark -x: the bytes of every frame.
	frames := parseTsharkHex(t, tsharkHex.wait(t))
	expectData(t, "tshark -x", frames, pkts, snaplen)

	// tshark fields: timestamp, orig_len, incl_len.
	lines := strings.Split(strings.TrimSpace(tsharkFields.wait(t)), "\n")
	if len(lines) != len(pkts) {
		t.Fatalf("tshark fields: %d lines, want %d", len(lines), len(pkts))
	}
	for i, line := range lines {
		want := fmt.Sprintf("%s\t%d\t%d", epoch(pkts[i].ci.Timestamp, nsec, 9), len(pkts[i].data), min(len(pkts[i].data), snaplen))
		if line != want {
			t.Fatalf("tshark fields, packet %d: %q, want %q", i, line, want)
		}
	}

	// tcpdump -tt -xx: timestamp and bytes.
	stamps, tframes := parseTcpdump(t, tcpdump.wait(t))
	expectData(t, "tcpdump -xx", tframes, pkts, snaplen)
	digits := 6
	if nsec {
		digits = 9
	}
	for i, ts := range stamps {
		if want := epoch(pkts[i].ci.Timestamp, nsec, digits); ts != want {
			t.Fatalf("tcpdump, packet %d: timestamp %s, want %s", i, ts, want)
		}
	}
}

// epoch formats t as seconds.fraction the way the peers print it.
func epoch(t time.Time, nsec bool, digits int) string {
	frac := t.Nanosecond()
	if !nsec {
		frac = frac / 1000 * 1000
	}
	s := fmt.Sprintf("%d.%09d", t.Unix(), frac)
	return s[:len(s)-(9-digits)]
}

func expectData(t *testing.T, who string, got [][]byte, pkts []testPacket, snaplen int) {
	t.Helper()
	if len(got) != len(pkts) {
		t.Fatalf("%s: %d packets, want %d", who, len(got), len(pkts))
	}
	for i, p := range pkts {
		want := p.data[:min(len(p.data), snaplen)]
		if !bytes.Equal(got[i], want) {
			t.Fatalf("%s: packet %d differs:\n got %x\nwant %x", who, i, got[i], want)
		}
	}
}

// parseTsharkHex reads tshark -x output: per frame, lines of
// "OOOO  hh hh ... (16 bytes)   ascii", frames separated by blank lines.
func parseTsharkHex(t *testing.T, out string) [][]byte {
	t.Helper()
	var frames [][]byte
	var cur []byte
	flush := func() {
		if cur != nil {
			frames = append(frames, cur)
			cur = nil
		}
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		if len(line) < 8 || line[4:6] != "  " {
			t.Fatalf("tshark -x: unexpected line %q", line)
		}
		off, err := strconv.ParseUint(line[:4], 16, 32)
		if err != nil || int(off) != len(cur) {
			t.Fatalf("tshark -x: line %q: offset %d, have %d bytes", line, off, len(cur))
		}
		hexPart := line[6:min(len(line), 6+16*3-1)]
		for _, f := range strings.Fields(hexPart) {
			b, err := hex.DecodeString(f)
			if err != nil || len(b) != 1 {
				t.Fatalf("tshark -x: line %q: bad byte %q", line, f)
			}
			cur = append(cur, b[0])
		}
	}
	flush()
	return frames
}

// parseTcpdump reads tcpdump -tt -xx output: a summary line starting with
// the timestamp, then "\t0xOOOO:  hhhh hhhh ..." lines.
func parseTcpdump(t *testing.T, out string) (stamps []string, frames [][]byte) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "\t0x") {
			stamps = append(stamps, strings.Fields(line)[0])
			frames = append(frames, []byte{})
			continue
		}
		if len(frames) == 0 {
			t.Fatalf("tcpdump: hex before a packet: %q", line)
		}
		_, hexPart, ok := strings.Cut(line, ":  ")
		if !ok {
			t.Fatalf("tcpdump: unexpected line %q", line)
		}
		b, err := hex.DecodeString(strings.ReplaceAll(hexPart, " ", ""))
		if err != nil {
			t.Fatalf("tcpdump: line %q: %v", line, err)
		}
		frames[len(frames)-1] = append(frames[len(frames)-1], b...)
	}
	return stamps, frames
}
