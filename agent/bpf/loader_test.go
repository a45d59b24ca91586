package bpf

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/pano-observability/pano/agent/filter"
	"github.com/pano-observability/pano/internal/testenv"
)

// frame builds an Ethernet frame with optional 802.1Q tags around an IP
// packet.
func frame(vlans []uint16, l3 []byte, ethertype uint16) []byte {
	b := make([]byte, 12, 14+4*len(vlans)+len(l3))
	b[0], b[6] = 0x02, 0x02
	for _, v := range vlans {
		b = binary.BigEndian.AppendUint16(b, 0x8100)
		b = binary.BigEndian.AppendUint16(b, v)
	}
	b = binary.BigEndian.AppendUint16(b, ethertype)
	return append(b, l3...)
}

// ipv4 builds an IPv4 packet; options adds 4-byte words of header options.
func ipv4(src, dst string, proto byte, id uint16, fragOff uint16, more bool, options int, payload []byte) []byte {
	ihl := 5 + options
	h := make([]byte, ihl*4)
	h[0] = 0x40 | byte(ihl)
	binary.BigEndian.PutUint16(h[2:], uint16(len(h)+len(payload)))
	binary.BigEndian.PutUint16(h[4:], id)
	f := fragOff / 8
	if more {
		f |= 0x2000
	}
	binary.BigEndian.PutUint16(h[6:], f)
	h[8] = 64
	h[9] = proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	for i := 20; i < len(h); i++ {
		h[i] = 1 // NOP options
	}
	return append(h, payload...)
}

// ipv6 builds an IPv6 packet; ext are (next header, body) pairs placed
// before the transport header.
func ipv6(src, dst string, proto byte, ext [][]byte, payload []byte) []byte {
	h := make([]byte, 40)
	h[0] = 0x60
	h[7] = 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	var body []byte
	next := proto
	// Build from the innermost extension header outwards.
	for i := len(ext) - 1; i >= 0; i-- {
		e := append([]byte(nil), ext[i][1:]...)
		e[0] = next
		next = ext[i][0]
		body = append(e, body...)
	}
	h[6] = next
	body = append(body, payload...)
	binary.BigEndian.PutUint16(h[4:], uint16(len(body)))
	return append(h, body...)
}

func l4(sport, dport uint16, n int) []byte {
	b := make([]byte, 8+n)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	return b
}

func loadForTest(t *testing.T, expr string, snaplen uint32) *Classifier {
	t.Helper()
	testenv.RequireRoot(t)
	rules, err := filter.Parse(expr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load(Options{SnapLen: snaplen, RingBufferSize: 1 << 20, Rules: rules})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// run feeds data to the program through BPF_PROG_TEST_RUN and reports
// whether a record came out of the ring buffer, returning it.
func run(t *testing.T, c *Classifier, rd *ringbuf.Reader, prog *ebpf.Program, data []byte) ([]byte, bool) {
	t.Helper()
	ret, err := prog.Run(&ebpf.RunOptions{Data: data})
	if err != nil {
		t.Fatalf("test run of %x: %v", data, err)
	}
	if int32(ret) != -1 {
		t.Fatalf("classifier returned %d, want TC_ACT_UNSPEC (-1)", int32(ret))
	}
	rd.SetDeadline(time.Now().Add(50 * time.Millisecond))
	rec, err := rd.Read()
	if err != nil {
		return nil, false
	}
	return rec.RawSample, true
}

func TestClassifierFilter(t *testing.T) {
	c := loadForTest(t, "udp,53;tcp,53,198.18.0.0/15;udp,5353,fd00::/8,in;any,any,192.0.2.7", MaxSnapLen)
	rd, err := ringbuf.NewReader(c.RingBuffer())
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()

	fragHdr := func(off uint16, more bool, id uint32) []byte {
		b := make([]byte, 9)
		b[0] = 44
		v := off &^ 7
		if more {
			v |= 1
		}
		binary.BigEndian.PutUint16(b[3:], v)
		binary.BigEndian.PutUint32(b[5:], id)
		return b
	}
	hopByHop := []byte{0, 0, 0, 1, 4, 0, 0, 0, 0} // next, len=0, PadN option
	dstOpts := []byte{60, 0, 0, 1, 4, 0, 0, 0, 0}

	const v4 = 0x0800
	const v6 = 0x86dd
	cases := []struct {
		name string
		dir  *ebpf.Program
		data []byte
		want bool
	}{
		{"udp 53 dst", c.Egress(), frame(nil, ipv4("10.0.0.1", "10.0.0.2", 17, 1, 0, false, 0, l4(40000, 53, 30)), v4), true},
		{"udp 53 src", c.Ingress(), frame(nil, ipv4("10.0.0.2", "10.0.0.1", 17, 1, 0, false, 0, l4(53, 40000, 30)), v4), true},
		{"udp 54", c.Egress(), frame(nil, ipv4("10.0.0.1", "10.0.0.2", 17, 1, 0, false, 0, l4(40000, 54, 30)), v4), false},
		{"tcp 53 outside cidr", c.Egress(), frame(nil, ipv4("10.0.0.1", "10.0.0.2", 6, 1, 0, false, 0, l4(40000, 53, 30)), v4), false},
		{"tcp 53 inside cidr", c.Egress(), frame(nil, ipv4("10.0.0.1", "198.19.4.2", 6, 1, 0, false, 0, l4(40000, 53, 30)), v4), true},
		{"udp 53 ip options", c.Egress(), frame(nil, ipv4("10.0.0.1", "10.0.0.2", 17, 1, 0, false, 3, l4(40000, 53, 30)), v4), true},
		{"udp 54 ip options", c.Egress(), frame(nil, ipv4("10.0.0.1", "10.0.0.2", 17, 1, 0, false, 3, l4(40000, 54, 30)), v4), false},
		{"one vlan", c.Egress(), frame([]uint16{100}, ipv4("10.0.0.1", "10.0.0.2", 17, 1, 0, false, 0, l4(40000, 53, 30)), v4), true},
		{"two vlans", c.Egress(), frame([]uint16{100, 200}, ipv4("10.0.0.1", "10.0.0.2", 17, 1, 0, false, 0, l4(40000, 53, 30)), v4), true},
		{"two vlans port 54", c.Egress(), frame([]uint16{100, 200}, ipv4("10.0.0.1", "10.0.0.2", 17, 1, 0, false, 0, l4(40000, 54, 30)), v4), false},
		{"ipv6 udp 53", c.Egress(), frame(nil, ipv6("fd00::1", "fd00::2", 17, nil, l4(40000, 53, 30)), v6), true},
		{"ipv6 udp 53 ext headers", c.Egress(), frame(nil, ipv6("fd00::1", "fd00::2", 17, [][]byte{hopByHop, dstOpts}, l4(40000, 53, 30)), v6), true},
		{"ipv6 udp 54 ext headers", c.Egress(), frame(nil, ipv6("fd00::1", "fd00::2", 17, [][]byte{hopByHop, dstOpts}, l4(40000, 54, 30)), v6), false},
		{"ipv6 vlan udp 53", c.Ingress(), frame([]uint16{7}, ipv6("fd00::1", "fd00::2", 17, nil, l4(40000, 53, 30)), v6), true},
		{"mdns v6 in", c.Ingress(), frame(nil, ipv6("fd00::1", "fd00::2", 17, nil, l4(5353, 5353, 30)), v6), true},
		{"mdns v6 out", c.Egress(), frame(nil, ipv6("fd00::1", "fd00::2", 17, nil, l4(5353, 5353, 30)), v6), false},
		{"mdns v6 outside cidr", c.Ingress(), frame(nil, ipv6("2001:db8::1", "2001:db8::2", 17, nil, l4(5353, 5353, 30)), v6), false},
		{"any proto to host", c.Ingress(), frame(nil, ipv4("10.0.0.1", "192.0.2.7", 1, 1, 0, false, 0, make([]byte, 20)), v4), true},
		{"arp", c.Ingress(), frame(nil, make([]byte, 28), 0x0806), false},
		{"bad ihl", c.Ingress(), frame(nil, append([]byte{0x44}, ipv4("10.0.0.1", "10.0.0.2", 17, 1, 0, false, 0, l4(40000, 53, 30))[1:]...), v4), false},
		{"not ipv6", c.Ingress(), frame(nil, append([]byte{0x40}, ipv6("fd00::1", "fd00::2", 17, nil, l4(40000, 53, 30))[1:]...), v6), false},
		// IPv4 fragments: the first matches by port, the rest by ID.
		{"v4 first fragment", c.Ingress(), frame(nil, ipv4("10.0.0.2", "10.0.0.1", 17, 77, 0, true, 0, l4(53, 40000, 1472)), v4), true},
		{"v4 later fragment", c.Ingress(), frame(nil, ipv4("10.0.0.2", "10.0.0.1", 17, 77, 1480, false, 0, make([]byte, 200)), v4), true},
		{"v4 unrelated later fragment", c.Ingress(), frame(nil, ipv4("10.0.0.2", "10.0.0.1", 17, 78, 1480, false, 0, make([]byte, 200)), v4), false},
		{"v6 first fragment", c.Ingress(), frame(nil, ipv6("fd00::2", "fd00::1", 17, [][]byte{fragHdr(0, true, 99)}, l4(53, 40000, 1400)), v6), true},
		{"v6 later fragment", c.Ingress(), frame(nil, ipv6("fd00::2", "fd00::1", 17, [][]byte{fragHdr(1408, false, 99)}, make([]byte, 100)), v6), true},
		{"v6 unrelated later fragment", c.Ingress(), frame(nil, ipv6("fd00::2", "fd00::1", 17, [][]byte{fragHdr(1408, false, 100)}, make([]byte, 100)), v6), false},
	}
	var want uint64
	for _, tc := range cases {
		rec, got := run(t, c, rd, tc.dir, tc.data)
		if got != tc.want {
			t.Errorf("%s: captured=%v, want %v", tc.name, got, tc.want)
			continue
		}
		if !got {
			continue
		}
		want++
		if len(rec) != MetaSize+len(tc.data) {
			t.Errorf("%s: record %d bytes, want %d", tc.name, len(rec), MetaSize+len(tc.data))
			continue
		}
		if string(rec[MetaSize:]) != string(tc.data) {
			t.Errorf("%s: captured bytes differ from the packet", tc.name)
		}
		if orig := binary.NativeEndian.Uint32(rec[12:]); orig != uint32(len(tc.data)) {
			t.Errorf("%s: original length %d, want %d", tc.name, orig, len(tc.data))
		}
	}
	cnt, err := c.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if cnt.Seen != uint64(len(cases)) || cnt.Matched != want || cnt.RingBufferFull != 0 {
		t.Errorf("counters %+v, want seen %d matched %d", cnt, len(cases), want)
	}
}

func TestClassifierSnapLen(t *testing.T) {
	c := loadForTest(t, "udp,53", 100)
	rd, err := ringbuf.NewReader(c.RingBuffer())
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	pkt := frame(nil, ipv4("10.0.0.1", "10.0.0.2", 17, 1, 0, false, 0, l4(40000, 53, 1400)), 0x0800)
	rec, ok := run(t, c, rd, c.Egress(), pkt)
	if !ok {
		t.Fatal("packet not captured")
	}
	if len(rec) != MetaSize+100 || string(rec[MetaSize:]) != string(pkt[:100]) {
		t.Fatalf("record of %d bytes, want %d", len(rec), MetaSize+100)
	}
	if orig := binary.NativeEndian.Uint32(rec[12:]); orig != uint32(len(pkt)) {
		t.Errorf("original length %d, want %d", orig, len(pkt))
	}
	if cl := binary.NativeEndian.Uint32(rec[16:]); cl != 100 {
		t.Errorf("capture length %d, want 100", cl)
	}
}

func TestClassifierRingBufferFull(t *testing.T) {
	c := loadForTest(t, "udp,53", MaxSnapLen)
	// Nobody reads: a 1 MiB ring fills after a few hundred 1.5 KB packets.
	pkt := frame(nil, ipv4("10.0.0.1", "10.0.0.2", 17, 1, 0, false, 0, l4(40000, 53, 1400)), 0x0800)
	ret, err := c.Egress().Run(&ebpf.RunOptions{Data: pkt, Repeat: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if int32(ret) != -1 {
		t.Fatalf("returned %d, want -1", int32(ret))
	}
	cnt, err := c.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if cnt.Matched != 1000 || cnt.RingBufferFull == 0 || cnt.RingBufferFull >= 1000 {
		t.Fatalf("counters %+v: want 1000 matched, some but not all lost to a full ring buffer", cnt)
	}
}

func TestLoadRejectsBadOptions(t *testing.T) {
	for _, o := range []Options{
		{SnapLen: 0, RingBufferSize: 1 << 20},
		{SnapLen: MaxSnapLen + 1, RingBufferSize: 1 << 20},
		{SnapLen: 100, RingBufferSize: 3 << 20},
		{SnapLen: 100, RingBufferSize: 1024},
	} {
		if c, err := Load(o); err == nil {
			c.Close()
			t.Errorf("Load(%+v) succeeded", o)
		}
	}
}
