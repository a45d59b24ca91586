package agent_test

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/pano-observability/pano/internal/testenv"
)

// TestFilterKeepsOnlyMatchingTraffic sends DNS over UDP and TCP, UDP and
// TCP to other ports and the ICMP errors they cause, with the agent
// filtering udp,53: its stream must hold exactly the UDP port 53 packets
// of tcpdump's unfiltered capture of the same interface.
func TestFilterKeepsOnlyMatchingTraffic(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testenv.NewNetns(t)
	u := testenv.StartUnbound(t, ns, testenv.UnboundOptions{})
	queries := u.WriteQueryFile(t, testenv.QueryMix{Queries: 1000, NXShare: 0.2, Seed: 9})

	ra := startAgent(t, map[string]string{"INTERFACES": ns.HostIf, "PCA_FILTER": "udp,53"}, ns.HostIf)
	td := testenv.StartTcpdump(t, nil, ns.HostIf, "")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	testenv.RunDNSPerf(ctx, t, testenv.DNSPerfOptions{Server: u.Addr, QueryFile: queries, MaxQueries: 1000, QPS: 5000})
	testenv.RunDNSPerf(ctx, t, testenv.DNSPerfOptions{Server: u.Addr6, QueryFile: queries, MaxQueries: 300, QPS: 5000, ExtraArgs: []string{"-m", "tcp"}})
	// UDP to a closed port (the peer answers ICMP port unreachable) and
	// TCP to a closed port (RST).
	for _, port := range []int{5353, 54, 5300} {
		c, err := net.Dial("udp", net.JoinHostPort(ns.PeerIP.String(), strconv.Itoa(port)))
		if err != nil {
			t.Fatal(err)
		}
		for range 5 {
			_, _ = c.Write([]byte("not dns"))
		}
		c.Close()
		if c, err := net.DialTimeout("tcp", net.JoinHostPort(ns.PeerIP6.String(), strconv.Itoa(port)), time.Second); err == nil {
			c.Close()
		}
	}

	pcapPath, _ := td.Stop(t)
	got := ra.stop(t)
	all := readPcap(t, pcapPath)

	var want []packet
	others := map[string]int{}
	for _, p := range all {
		if isUDPPort(p.data, 53) {
			want = append(want, p)
		} else {
			others[kind(p.data)]++
		}
	}
	t.Logf("tcpdump: %d packets, %d UDP port 53; others: %v; agent: %d", len(all), len(want), others, len(got))
	if others["tcp"] == 0 || others["udp"] == 0 || others["icmp"] == 0 {
		t.Fatalf("the test sent no TCP, other UDP or ICMP traffic (%v): it proves nothing", others)
	}
	for _, p := range got {
		if !isUDPPort(p.data, 53) {
			t.Errorf("agent captured a %s packet the filter excludes: % x", kind(p.data), p.data[:min(64, len(p.data))])
		}
	}
	cmp := compareCaptures(got, want)
	if len(cmp.onlyA) != 0 || len(cmp.onlyB) != 0 || len(want) < 2000 {
		t.Errorf("agent %d packets, tcpdump %d UDP/53: %d only in the agent's, %d only in tcpdump's", len(got), len(want), len(cmp.onlyA), len(cmp.onlyB))
	}
}

// TestFilterIPv6AndVLAN checks that DNS over IPv6 and inside 802.1Q
// frames (one tag, and 802.1ad + 802.1Q double tags) is captured whole,
// tags included, exactly as tcpdump sees it. The tagged frames are
// injected with the tag in their bytes, as a trunk port delivers them
// (the peer drops them: it has no such VLAN).
func TestFilterIPv6AndVLAN(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testenv.NewNetns(t)
	u := testenv.StartUnbound(t, ns, testenv.UnboundOptions{})

	ra := startAgent(t, map[string]string{"INTERFACES": ns.HostIf, "PCA_FILTER": "udp,53;tcp,53"}, ns.HostIf)
	// Unfiltered, selected below: libpcap's "vlan" keyword shifts the
	// offsets of everything after it, even across "or", so one pcap
	// expression cannot select port 53 at several tag depths.
	td := testenv.StartTcpdump(t, nil, ns.HostIf, "")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 20
	for i := range n {
		rcode, _, err := testenv.DNSQuery(ctx, u.Addr6, u.Name(i), layers.DNSTypeAAAA)
		if err != nil || rcode != layers.DNSResponseCodeNoErr {
			t.Fatalf("query %s: %v %v", u.Addr6, rcode, err)
		}
	}
	var frames [][]byte
	for i := range n {
		f := ns.DNSQueryFrame(t, testenv.FrameSpec{VLAN: 7, IPv6: i%2 == 0, SrcPort: uint16(40000 + i), ID: uint16(i), Name: u.Name(i), Type: layers.DNSTypeA})
		frames = append(frames, f, doubleTag(f, 100))
		// Same query on port 54 with tags: must not be captured.
		g := ns.DNSQueryFrame(t, testenv.FrameSpec{VLAN: 7, IPv6: i%2 == 0, SrcPort: uint16(40000 + i), ID: uint16(i), Name: u.Name(i), Type: layers.DNSTypeA})
		setUDPDstPort(t, g, 54)
		frames = append(frames, g, doubleTag(g, 100))
	}
	ns.InjectFrames(t, frames...)

	pcapPath, _ := td.Stop(t)
	got := ra.stop(t)
	var want []packet
	for _, p := range readPcap(t, pcapPath) {
		if isUDPPort(p.data, 53) {
			want = append(want, p)
		}
	}

	counts := map[string]int{}
	for _, p := range got {
		counts[describe(t, p.data)]++
	}
	t.Logf("agent: %v; tcpdump: %d UDP/53 packets", counts, len(want))
	for k, c := range map[string]int{
		"untagged/ipv6/53":  2 * n, // query and answer
		"vlan7/ipv4/53":     n / 2,
		"vlan7/ipv6/53":     n / 2,
		"vlan100.7/ipv4/53": n / 2,
		"vlan100.7/ipv6/53": n / 2,
	} {
		if counts[k] != c {
			t.Errorf("%s: %d packets captured, want %d", k, counts[k], c)
		}
	}
	if len(counts) != 5 {
		t.Errorf("unexpected packets captured: %v", counts)
	}
	cmp := compareCaptures(got, want)
	if len(cmp.onlyA) != 0 || len(cmp.onlyB) != 0 {
		t.Errorf("agent %d packets, tcpdump %d: %d only in the agent's (first %s), %d only in tcpdump's (first %s)",
			len(got), len(want), len(cmp.onlyA), firstOf(cmp.onlyA, nil), len(cmp.onlyB), firstOf(cmp.onlyB, nil))
	}
}

// TestVLANSubinterface sends DNS through an 802.1Q sub-interface of the
// veth, where the kernel keeps the tag out of the packet bytes (VLAN
// offload): the agent must put it back, as tcpdump does.
func TestVLANSubinterface(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testenv.NewNetns(t)
	vlan := ns.AddVLAN(t, 42) // skips when the kernel has no 802.1Q support
	u := testenv.StartUnbound(t, ns, testenv.UnboundOptions{Listen: []netip.Addr{vlan.PeerIP, vlan.PeerIP6}})

	ra := startAgent(t, map[string]string{"INTERFACES": ns.HostIf, "PCA_FILTER": "udp,53"}, ns.HostIf)
	td := testenv.StartTcpdump(t, nil, ns.HostIf, "vlan and udp port 53")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 20
	for _, server := range []netip.Addr{vlan.PeerIP, vlan.PeerIP6} {
		for i := range n {
			if _, _, err := testenv.DNSQuery(ctx, netip.AddrPortFrom(server, 53), u.Name(i), layers.DNSTypeA); err != nil {
				t.Fatalf("query %s: %v", server, err)
			}
		}
	}
	pcapPath, _ := td.Stop(t)
	got := ra.stop(t)
	want := readPcap(t, pcapPath)
	counts := map[string]int{}
	for _, p := range got {
		counts[describe(t, p.data)]++
	}
	if counts["vlan42/ipv4/53"] != 2*n || counts["vlan42/ipv6/53"] != 2*n {
		t.Errorf("captured %v, want %d queries and answers in VLAN 42 per family", counts, n)
	}
	cmp := compareCaptures(got, want)
	if len(cmp.onlyA) != 0 || len(cmp.onlyB) != 0 {
		t.Errorf("agent %d packets, tcpdump %d: %d only in the agent's, %d only in tcpdump's", len(got), len(want), len(cmp.onlyA), len(cmp.onlyB))
	}
}

// describe names a captured frame "vlanOUTER.INNER/family/port".
func describe(t *testing.T, frame []byte) string {
	t.Helper()
	pk := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	v := ""
	for _, l := range pk.Layers() {
		if d, ok := l.(*layers.Dot1Q); ok {
			if v == "" {
				v = "vlan"
			} else {
				v += "."
			}
			v += strconv.Itoa(int(d.VLANIdentifier))
		}
	}
	if v == "" {
		v = "untagged"
	}
	fam := "ipv4"
	if pk.Layer(layers.LayerTypeIPv6) != nil {
		fam = "ipv6"
	}
	port := "?"
	if u, ok := pk.Layer(layers.LayerTypeUDP).(*layers.UDP); ok {
		port = strconv.Itoa(int(min(u.SrcPort, u.DstPort)))
	}
	if pk.Layer(layers.LayerTypeDNS) == nil {
		t.Errorf("captured packet without DNS: % x", frame[:min(64, len(frame))])
	}
	return v + "/" + fam + "/" + port
}

// doubleTag wraps a single-tagged frame in an outer 802.1ad tag.
func doubleTag(frame []byte, outer uint16) []byte {
	out := append([]byte(nil), frame[:12]...)
	out = append(out, 0x88, 0xa8, byte(outer>>8), byte(outer))
	return append(out, frame[12:]...)
}

// setUDPDstPort rewrites the destination port of a frame from
// DNSQueryFrame (one tag) and fixes the UDP checksum.
func setUDPDstPort(t *testing.T, frame []byte, port uint16) {
	t.Helper()
	pk := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	u, ok := pk.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if !ok {
		t.Fatal("frame has no UDP")
	}
	off := len(frame) - len(u.Contents) - len(u.Payload)
	old := uint32(frame[off+2])<<8 | uint32(frame[off+3])
	frame[off+2], frame[off+3] = byte(port>>8), byte(port)
	// RFC 1624 incremental checksum update.
	sum := uint32(^(uint16(frame[off+6])<<8 | uint16(frame[off+7])))
	sum += uint32(^uint16(old)) + uint32(port)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	c := ^uint16(sum)
	frame[off+6], frame[off+7] = byte(c>>8), byte(c)
}

func isUDPPort(frame []byte, port layers.UDPPort) bool {
	pk := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	u, ok := pk.Layer(layers.LayerTypeUDP).(*layers.UDP)
	// An ICMP error quoting a UDP header decodes as UDP too: only the
	// outermost transport counts.
	if !ok || pk.Layer(layers.LayerTypeICMPv4) != nil || pk.Layer(layers.LayerTypeICMPv6) != nil {
		return false
	}
	return u.SrcPort == port || u.DstPort == port
}

func kind(frame []byte) string {
	pk := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	switch {
	case pk.Layer(layers.LayerTypeICMPv4) != nil || pk.Layer(layers.LayerTypeICMPv6) != nil:
		return "icmp"
	case pk.Layer(layers.LayerTypeTCP) != nil:
		return "tcp"
	case pk.Layer(layers.LayerTypeUDP) != nil:
		return "udp"
	}
	return "other"
}
