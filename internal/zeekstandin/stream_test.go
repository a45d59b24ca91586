package zeekstandin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/pano-observability/pano/internal/testenv"
)

type pkt struct {
	ci   gopacket.CaptureInfo
	data []byte
}

func readTrace(t *testing.T, path string) ([]pkt, layers.LinkType) {
	t.Helper()
	r, err := pcapgo.NewReader(openMaybeGz(t, path))
	if err != nil {
		t.Fatal(err)
	}
	var out []pkt
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return out, r.LinkType()
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, pkt{ci, data})
	}
}

// countLines returns the lines of a growing dns.log and how many of them
// are queries without a response.
func countLines(t *testing.T, path string) (all, unanswered int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if !strings.HasSuffix(sc.Text(), "}") {
			t.Fatalf("partial line in dns.log: %q", sc.Text())
		}
		all++
		if !strings.Contains(sc.Text(), `"rcode"`) {
			unanswered++
		}
	}
	return all, unanswered
}

// TestStreamFlushesAsRecordsComplete feeds part of a capture through a
// stream that stays open, as the agent's PCAP-over-TCP stream does, and
// checks that the dns.log file holds every completed transaction, and then
// the unanswered queries once their timeout passed, before the stream ends.
// The expected counts come from gopacket's own DNS decoding of the packets.
func TestStreamFlushesAsRecordsComplete(t *testing.T) {
	testenv.RequireProgram(t, "tshark", "tshark")
	pkts, lt := readTrace(t, "testdata/zeek-dns-json/dnsperf-unbound/trace.pcap.gz")
	const n = 3001
	pkts = pkts[:n]

	type qk struct {
		port uint16
		id   uint16
	}
	open := map[qk]int{}
	pairs := 0
	for _, p := range pkts {
		g := gopacket.NewPacket(p.data, lt, gopacket.Default)
		u, _ := g.Layer(layers.LayerTypeUDP).(*layers.UDP)
		d, _ := g.Layer(layers.LayerTypeDNS).(*layers.DNS)
		if u == nil || d == nil {
			t.Fatalf("packet is not UDP DNS")
		}
		if !d.QR {
			open[qk{uint16(u.SrcPort), d.ID}]++
		} else if k := (qk{uint16(u.DstPort), d.ID}); open[k] > 0 {
			open[k]--
			pairs++
		}
	}
	unanswered := 0
	for _, v := range open {
		unanswered += v
	}
	if unanswered == 0 {
		t.Fatalf("cut at %d packets leaves no query unanswered; pick another", n)
	}

	pr, pw := io.Pipe()
	logPath := filepath.Join(t.TempDir(), "dns.log")
	out, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	var st Stats
	go func() {
		var err error
		st, err = Convert(ctx, pr, out, Options{RTT: RTTEveryResponse, IgnoreChecksums: true, Live: true, Timeout: time.Second})
		done <- err
	}()

	w := pcapgo.NewWriter(pw)
	if err := w.WriteFileHeader(65535, lt); err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		if err := w.WritePacket(p.ci, p.data); err != nil {
			t.Fatal(err)
		}
	}
	// The stream stays open: everything must show up anyway.
	var all, un int
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if all, un = countLines(t, logPath); all == pairs+unanswered && un == unanswered {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if all != pairs+unanswered || un != unanswered {
		t.Fatalf("stream open: %d records (%d unanswered), want %d (%d unanswered)", all, un, pairs+unanswered, unanswered)
	}
	pw.Close()
	if err := <-done; err != nil {
		t.Fatalf("Convert: %v", err)
	}
	if all, un = countLines(t, logPath); all != pairs+unanswered || un != unanswered || st.Records != all {
		t.Fatalf("after end: %d records (%d unanswered, stats %+v), want %d (%d)", all, un, st, pairs+unanswered, unanswered)
	}
	t.Logf("%d transactions and %d unanswered queries written while the stream was open", pairs, unanswered)
}

// TestBadInput: a stream that is not a pcap gives a clear error.
func TestBadInput(t *testing.T) {
	testenv.RequireProgram(t, "tshark", "tshark")
	var out strings.Builder
	_, err := Convert(context.Background(), strings.NewReader("this is not a capture file at all, no magic here"), &out, Options{})
	if err == nil || !strings.Contains(err.Error(), "tshark") {
		t.Fatalf("want a tshark error, got %v", err)
	}
	if out.Len() != 0 {
		t.Fatalf("wrote %q", out.String())
	}
	_, err = Convert(context.Background(), strings.NewReader(""), &out, Options{Tshark: "/nonexistent/tshark"})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/tshark") {
		t.Fatalf("want an error naming the program, got %v", err)
	}
}

func TestParseLineErrors(t *testing.T) {
	for _, line := range []string{"", "a\tb", strings.Repeat("\t", nFields-1), fmt.Sprintf("1.5\t%s", strings.Repeat("x\t", nFields-2))} {
		if _, err := ParseLine(line); err == nil {
			t.Errorf("ParseLine(%q): no error", line)
		}
	}
}

// FuzzParseLine: no input makes ParseLine panic, and what it accepts has
// a consistent answer section.
func FuzzParseLine(f *testing.F) {
	f.Fuzz(func(t *testing.T, line string) {
		m, err := ParseLine(line)
		if err != nil {
			return
		}
		if len(m.Answers) > m.ANCount {
			t.Fatalf("%d answers for count %d", len(m.Answers), m.ANCount)
		}
		a := newAnalyzer(RTTEveryResponse, 5, func(*Record) {})
		a.process(&m)
		a.flush()
	})
}
