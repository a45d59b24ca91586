package bpf

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/cilium/ebpf/ringbuf"
)

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// tcpSegment builds a TCP header (no options) with payload.
func tcpSegment(sport, dport uint16, flags byte, payload string) []byte {
	b := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	b[12] = 5 << 4
	b[13] = flags
	return append(b, payload...)
}

// ipv4Checksum is the header checksum as a receiver verifies it: 0 when
// the header is intact.
func ipv4Checksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func withChecksum(ip []byte) []byte {
	binary.BigEndian.PutUint16(ip[10:], 0)
	binary.BigEndian.PutUint16(ip[10:], ipv4Checksum(ip[:20]))
	return ip
}

// budgetStep is one segment of a conversation and what the classifier
// must do with it: skip it (copied false), or copy it with payload bytes
// of its payload.
type budgetStep struct {
	what    string
	client  bool // from the client (port 40000) to the server (port)
	flags   byte
	payload string
	copied  bool
	payLen  int // payload bytes in the copy when copied
}

func runBudget(t *testing.T, expr string, port uint16, v6 bool, steps []budgetStep) *Classifier {
	t.Helper()
	c := loadForTest(t, expr, MaxSnapLen)
	rd, err := ringbuf.NewReader(c.RingBuffer())
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	for _, s := range steps {
		sport, dport, src, dst := port, uint16(40000), "198.18.0.1", "198.18.0.2"
		src6, dst6 := "fd00::1", "fd00::2"
		if s.client {
			sport, dport, src, dst, src6, dst6 = dport, sport, dst, src, dst6, src6
		}
		seg := tcpSegment(sport, dport, s.flags, s.payload)
		var data []byte
		if v6 {
			data = frame(nil, ipv6(src6, dst6, 6, nil, seg), 0x86dd)
		} else {
			data = frame(nil, withChecksum(ipv4(src, dst, 6, 1, 0, false, 0, seg)), 0x0800)
		}
		rec, ok := run(t, c, rd, c.Ingress(), data)
		if ok != s.copied {
			t.Fatalf("%s: copied %v, want %v", s.what, ok, s.copied)
		}
		if !ok {
			continue
		}
		meta, pkt := rec[:MetaSize], rec[MetaSize:]
		if orig := binary.NativeEndian.Uint32(meta[12:]); int(orig) != len(data) {
			t.Errorf("%s: original length %d, want the frame's %d", s.what, orig, len(data))
		}
		hdr := 14 + 20 + 20
		if v6 {
			hdr = 14 + 40 + 20
		}
		if len(pkt) != hdr+s.payLen {
			t.Errorf("%s: %d bytes copied, want headers and %d payload bytes (%d)", s.what, len(pkt), s.payLen, hdr+s.payLen)
			continue
		}
		if string(pkt[hdr:]) != s.payload[:s.payLen] {
			t.Errorf("%s: payload %q, want %q", s.what, pkt[hdr:], s.payload[:s.payLen])
		}
		// The IP header describes the copy, so that Zeek reads a whole
		// segment.
		if v6 {
			if got := binary.BigEndian.Uint16(pkt[14+4:]); int(got) != 20+s.payLen {
				t.Errorf("%s: IPv6 payload length %d, want %d", s.what, got, 20+s.payLen)
			}
		} else {
			ip := pkt[14:34]
			if got := binary.BigEndian.Uint16(ip[2:]); int(got) != 40+s.payLen {
				t.Errorf("%s: IPv4 total length %d, want %d", s.what, got, 40+s.payLen)
			}
			if ipv4Checksum(ip) != 0 {
				t.Errorf("%s: IPv4 header checksum wrong after the rewrite", s.what)
			}
		}
	}
	return c
}

// TestClassifierBudgetTurns: an HTTP/1.1 keep-alive conversation under
// budget=100: each side's turn gets its HTTP header and 100 payload bytes
// more, a new turn starts when the other side has spoken, a second
// message in one turn (pipelining) has the connection copied whole from
// then on, SYN/FIN/RST are always copied, pure ACKs never.
func TestClassifierBudgetTurns(t *testing.T) {
	get := "GET / HTTP/1.1\r\nHost: www.pano.test\r\n\r\n"
	head := "HTTP/1.1 200 OK\r\nContent-Length: 400\r\n\r\n"
	body := strings.Repeat("b", 200)
	for _, v6 := range []bool{false, true} {
		name := "ipv4"
		if v6 {
			name = "ipv6"
		}
		t.Run(name, func(t *testing.T) {
			c := runBudget(t, "udp,53;tcp,80,budget=100", 80, v6, []budgetStep{
				{what: "SYN", client: true, flags: tcpSYN, copied: true},
				{what: "SYN-ACK", flags: tcpSYN | tcpACK, copied: true},
				{what: "handshake ACK", client: true, flags: tcpACK},
				{what: "request", client: true, flags: tcpACK, payload: get, copied: true, payLen: len(get)},
				{what: "response header and 100 bytes of body", flags: tcpACK, payload: head + body, copied: true, payLen: len(head) + 100},
				{what: "more body", flags: tcpACK, payload: body},
				{what: "ACK of skipped body", client: true, flags: tcpACK},
				{what: "next request", client: true, flags: tcpACK, payload: get, copied: true, payLen: len(get)},
				{what: "small response", flags: tcpACK, payload: head, copied: true, payLen: len(head)},
				{what: "ACK of nothing skipped", client: true, flags: tcpACK},
				{what: "a second response in the turn: pipelining, copied whole", flags: tcpACK, payload: head + body, copied: true, payLen: len(head) + len(body)},
				{what: "and from then on", flags: tcpACK, payload: body, copied: true, payLen: len(body)},
				{what: "FIN with payload", flags: tcpFIN | tcpACK, payload: body, copied: true, payLen: len(body)},
				{what: "RST", client: true, flags: tcpRST, copied: true},
			})
			k, err := c.Counters()
			if err != nil {
				t.Fatal(err)
			}
			if cut := len(body) - 100; k.BudgetSkipped != 4 || k.BudgetTruncated != 1 || k.BudgetTruncatedBytes != uint64(cut) {
				t.Errorf("counters: %d skipped, %d truncated (%d bytes cut); want 4, 1 (%d)", k.BudgetSkipped, k.BudgetTruncated,
					k.BudgetTruncatedBytes, cut)
			}
			if k.Matched != 10 {
				t.Errorf("matched %d, want the 10 copied", k.Matched)
			}
		})
	}
}

// TestClassifierBudgetHandshake: handshake=100 gives each side 100 bytes
// of the whole connection, however the turns go.
func TestClassifierBudgetHandshake(t *testing.T) {
	hello := strings.Repeat("h", 60)
	runBudget(t, "tcp,443,handshake=100", 443, false, []budgetStep{
		{what: "SYN", client: true, flags: tcpSYN, copied: true},
		{what: "client hello", client: true, flags: tcpACK, payload: hello, copied: true, payLen: 60},
		{what: "server hello", flags: tcpACK, payload: hello, copied: true, payLen: 60},
		{what: "client finished, cut at 100", client: true, flags: tcpACK, payload: hello, copied: true, payLen: 40},
		{what: "server data, cut at 100", flags: tcpACK, payload: hello, copied: true, payLen: 40},
		{what: "client data, a new turn but no budget", client: true, flags: tcpACK, payload: hello},
		{what: "server data", flags: tcpACK, payload: hello},
		{what: "client FIN", client: true, flags: tcpFIN | tcpACK, copied: true},
	})
}

// TestClassifierBudgetHeaders: budget=1 copies an HTTP/1 header to its
// blank line, wherever the line falls in the first 2 KiB of the segment,
// and one byte of body; a turn that starts with something else gets one
// byte; once a side sends two messages in one turn (pipelining), the
// connection is copied whole.
func TestClassifierBudgetHeaders(t *testing.T) {
	long := "HTTP/1.1 200 OK\r\nServer: pano\r\nX-Filler: " + strings.Repeat("f", 1500) + "\r\n\r\n"
	short := "GET / HTTP/1.1\r\n\r\n"
	runBudget(t, "tcp,80,budget=1", 80, false, []budgetStep{
		{what: "short request", client: true, flags: tcpACK, payload: short + "body", copied: true, payLen: len(short) + 1},
		{what: "long header", flags: tcpACK, payload: long + strings.Repeat("b", 1500), copied: true, payLen: len(long) + 1},
		{what: "next request", client: true, flags: tcpACK, payload: short, copied: true, payLen: len(short)},
		{what: "header only", flags: tcpACK, payload: long, copied: true, payLen: len(long)},
		{what: "its body's first byte", flags: tcpACK, payload: "body", copied: true, payLen: 1},
		{what: "the rest", flags: tcpACK, payload: "body"},
		{what: "not HTTP", client: true, flags: tcpACK, payload: strings.Repeat("x", 100), copied: true, payLen: 1},
		{what: "three pipelined requests in one segment", client: true, flags: tcpACK, payload: short + short + short + "xyz", copied: true, payLen: len(short)*3 + 3},
		{what: "then the connection whole", flags: tcpACK, payload: long + strings.Repeat("b", 1500), copied: true, payLen: len(long) + 1500},
	})
}

// A rule without a budget copies every segment whole, pure ACKs included.
func TestClassifierNoBudget(t *testing.T) {
	big := strings.Repeat("x", 3000)
	runBudget(t, "tcp,80", 80, false, []budgetStep{
		{what: "ACK", client: true, flags: tcpACK, copied: true},
		{what: "data", flags: tcpACK, payload: big, copied: true, payLen: len(big)},
		{what: "data again", flags: tcpACK, payload: big, copied: true, payLen: len(big)},
	})
}
