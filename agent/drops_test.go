package agent_test

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket/layers"
	dto "github.com/prometheus/client_model/go"

	"github.com/pano-observability/pano/internal/testenv"
)

// TestUncapturablePacketsCounted sends DNS datagrams through a captured
// veth in fragments, the last fragment first, and DNS queries in IPv6
// packets with more extension headers than the classifier follows.
// Neither the early fragments nor the deep packets can be captured; each
// must be counted in pano_agent_packets_dropped_total under its reason,
// and everything else captured.
func TestUncapturablePacketsCounted(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testenv.NewNetns(t)
	ra := startAgent(t, map[string]string{
		"INTERFACES":  ns.HostIf,
		"PCA_FILTER":  "udp,53",
		"PCA_STREAMS": "2",
	}, ns.HostIf)

	// The MAC addresses of a frame the peer accepts.
	q := ns.DNSQueryFrame(t, testenv.FrameSpec{SrcPort: 40000, Name: "x.pano.test.", Type: layers.DNSTypeA})
	eth := func(etype uint16, l3 []byte) []byte {
		f := append([]byte(nil), q[:12]...)
		f = binary.BigEndian.AppendUint16(f, etype)
		return append(f, l3...)
	}

	const datagrams, deep = 12, 7
	var frames [][]byte
	for i := range datagrams {
		sport, id := uint16(41000+i*13), uint16(500+i)
		var fr [3][]byte // first, middle, last
		if i%2 == 0 {
			for k := range fr {
				fr[k] = eth(0x0800, ipv4Fragment(ns.HostIP, ns.PeerIP, id, k, k < 2, udpPiece(k, sport, 3*1000)))
			}
		} else {
			for k := range fr {
				fr[k] = eth(0x86dd, ipv6Packet(ns.HostIP6, ns.PeerIP6, ipv6FragmentHdr(k, k < 2, uint32(id)), 0, udpPiece(k, sport, 3*1000)))
			}
		}
		frames = append(frames, fr[2], fr[0], fr[1])
	}
	for i := range deep {
		// Eight destination-options headers, then a DNS query's UDP header.
		var ext []byte
		for range 8 {
			ext = append(ext, 60, 0, 1, 4, 0, 0, 0, 0) // next header (fixed below), length 0, PadN
		}
		frames = append(frames, eth(0x86dd, ipv6Packet(ns.HostIP6, ns.PeerIP6, ext, 60, udpPiece(0, uint16(42000+i), 40))))
	}
	ns.InjectFrames(t, frames...)
	waitFor(t, "the in-order fragments captured", func() bool { return ra.ReaderStats().Packets >= 2*datagrams })

	families, err := ra.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for reason, want := range map[string]float64{
		"fragment_before_first":     datagrams,
		"ipv6_too_many_ext_headers": deep,
		"ring_buffer_full":          0,
		"cpu_buffer_busy":           0,
	} {
		if got := dropped(t, families, reason); got != want {
			t.Errorf("pano_agent_packets_dropped_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
	got := ra.stop(t)
	if len(got) != 2*datagrams {
		t.Errorf("captured %d packets, want the %d fragments that came after their first", len(got), 2*datagrams)
	}
}

// dropped sums pano_agent_packets_dropped_total{reason} over streams; -1
// when no series has that reason.
func dropped(t *testing.T, families []*dto.MetricFamily, reason string) float64 {
	t.Helper()
	sum, found := 0.0, false
	for _, f := range families {
		if f.GetName() != "pano_agent_packets_dropped_total" {
			continue
		}
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if l.GetName() == "reason" && l.GetValue() == reason {
					sum += m.GetCounter().GetValue()
					found = true
				}
			}
		}
	}
	if !found {
		return -1
	}
	return sum
}

// udpPiece is the k-th 1000-byte piece of a UDP datagram to port 53 of
// total bytes (the first piece starts with the UDP header, checksum
// zero); for total under 1000, the whole datagram.
func udpPiece(k int, sport uint16, total int) []byte {
	b := make([]byte, min(total, 1000))
	if k == 0 {
		binary.BigEndian.PutUint16(b[0:], sport)
		binary.BigEndian.PutUint16(b[2:], 53)
		binary.BigEndian.PutUint16(b[4:], uint16(total))
	}
	return b
}

// ipv4Fragment is the k-th fragment (1000 payload bytes each) of an IPv4
// datagram.
func ipv4Fragment(src, dst netip.Addr, id uint16, k int, more bool, payload []byte) []byte {
	h := make([]byte, 20)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	binary.BigEndian.PutUint16(h[4:], id)
	frag := uint16(k * 1000 / 8)
	if more {
		frag |= 0x2000
	}
	binary.BigEndian.PutUint16(h[6:], frag)
	h[8], h[9] = 64, 17
	s, d := src.As4(), dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(h[10:], ^uint16(sum))
	return append(h, payload...)
}

// ipv6FragmentHdr is the fragment header of the k-th fragment (1000
// payload bytes each); its next header is filled in by ipv6Packet.
func ipv6FragmentHdr(k int, more bool, id uint32) []byte {
	b := make([]byte, 8)
	b[0] = 44 // this header's own type, moved to the previous header by ipv6Packet
	off := uint16(k * 1000)
	if more {
		off |= 1
	}
	binary.BigEndian.PutUint16(b[2:], off)
	binary.BigEndian.PutUint32(b[4:], id)
	return b
}

// ipv6Packet builds an IPv6 packet carrying UDP. ext is a chain of 8-byte
// extension headers, each holding its own type in its first byte (first
// is that type for the fixed header, 0 to take it from ext); ipv6Packet
// rewrites the first bytes into next-header fields.
func ipv6Packet(src, dst netip.Addr, ext []byte, first byte, payload []byte) []byte {
	h := make([]byte, 40, 40+len(ext)+len(payload))
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(ext)+len(payload)))
	h[7] = 64
	s, d := src.As16(), dst.As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	h[6] = 17
	if len(ext) > 0 {
		if first == 0 {
			first = ext[0]
		}
		h[6] = first
		ext = append([]byte(nil), ext...)
		for i := 0; i < len(ext); i += 8 {
			next := byte(17)
			if i+8 < len(ext) {
				next = ext[i+8]
			}
			ext[i] = next
		}
	}
	return append(append(h, ext...), payload...)
}
