package testenv

import (
	"encoding/binary"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// FrameSpec describes one Ethernet frame holding a DNS query from the
// root namespace's end of a Netns to its peer, port 53.
type FrameSpec struct {
	VLAN    int  // 802.1Q tag in the frame's bytes, 0 for none
	IPv6    bool // HostIP6 -> PeerIP6 instead of HostIP -> PeerIP
	SrcPort uint16
	ID      uint16
	Name    string // e.g. "www1.pano.test."
	Type    layers.DNSType
}

// DNSQueryFrame builds the Ethernet frame described by f, addressed from
// HostIf's MAC to PeerIf's MAC, with correct lengths and checksums.
func (n *Netns) DNSQueryFrame(t testing.TB, f FrameSpec) []byte {
	t.Helper()
	src, err := net.InterfaceByName(n.HostIf)
	if err != nil {
		t.Fatalf("frame: %v", err)
	}
	dst := framesPeerMAC(t, n)
	eth := &layers.Ethernet{SrcMAC: src.HardwareAddr, DstMAC: dst}
	var ls []gopacket.SerializableLayer
	ls = append(ls, eth)
	etype := layers.EthernetTypeIPv4
	if f.IPv6 {
		etype = layers.EthernetTypeIPv6
	}
	if f.VLAN > 0 {
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: uint16(f.VLAN), Type: etype})
	} else {
		eth.EthernetType = etype
	}
	udp := &layers.UDP{SrcPort: layers.UDPPort(f.SrcPort), DstPort: 53}
	if f.IPv6 {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP,
			SrcIP: n.HostIP6.AsSlice(), DstIP: n.PeerIP6.AsSlice()}
		if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		ls = append(ls, ip)
	} else {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP,
			SrcIP: n.HostIP.AsSlice(), DstIP: n.PeerIP.AsSlice()}
		if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		ls = append(ls, ip)
	}
	dns := &layers.DNS{ID: f.ID, RD: true, OpCode: layers.DNSOpCodeQuery,
		Questions: []layers.DNSQuestion{{Name: []byte(strings.TrimSuffix(f.Name, ".")), Type: f.Type, Class: layers.DNSClassIN}}}
	ls = append(ls, udp, dns)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatalf("frame: %v", err)
	}
	return buf.Bytes()
}

func framesPeerMAC(t testing.TB, n *Netns) net.HardwareAddr {
	t.Helper()
	out, err := exec.Command("ip", "-n", n.Name, "-br", "link", "show", n.PeerIf).CombinedOutput()
	if err != nil {
		t.Fatalf("peer MAC: %v: %s", err, out)
	}
	// "pnXXXXXXp@if5  UP  aa:bb:cc:dd:ee:ff <...>"
	f := strings.Fields(string(out))
	if len(f) < 3 {
		t.Fatalf("peer MAC: %q", out)
	}
	mac, err := net.ParseMAC(f[2])
	if err != nil {
		t.Fatalf("peer MAC: %v", err)
	}
	return mac
}

// InjectFrames sends raw Ethernet frames out of HostIf through an
// AF_PACKET socket. They go through HostIf's egress hooks (tc, taps) and
// arrive on PeerIf like any other frame. This is how tests put
// 802.1Q-tagged frames on the veth when the kernel has no VLAN devices:
// the peer's kernel then drops them, after its ingress hooks saw them.
func (n *Netns) InjectFrames(t testing.TB, frames ...[]byte) {
	t.Helper()
	ifi, err := net.InterfaceByName(n.HostIf)
	if err != nil {
		t.Fatalf("inject: %v", err)
	}
	proto := framesHtons(syscall.ETH_P_ALL)
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(proto))
	if err != nil {
		t.Fatalf("inject: packet socket: %v", err)
	}
	defer syscall.Close(fd)
	sa := &syscall.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}
	if err := syscall.Bind(fd, sa); err != nil {
		t.Fatalf("inject: bind %s: %v", n.HostIf, err)
	}
	for i, fr := range frames {
		if _, err := syscall.Write(fd, fr); err != nil {
			t.Fatalf("inject: frame %d on %s: %v", i, n.HostIf, err)
		}
	}
}

func framesHtons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// String describes the frame for test logs.
func (f FrameSpec) String() string {
	fam := "IPv4"
	if f.IPv6 {
		fam = "IPv6"
	}
	return fmt.Sprintf("%s vlan %d %s %v id %d sport %d", fam, f.VLAN, f.Name, f.Type, f.ID, f.SrcPort)
}
