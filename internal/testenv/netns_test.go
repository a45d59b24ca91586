package testenv

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// TestNetnsLeavesNothing builds a namespace with unbound and two
// tcpdumps (inside and outside) in a subtest, checks they work, and after
// the subtest's cleanups checks that the namespace, its link and the
// processes are gone.
func TestNetnsLeavesNothing(t *testing.T) {
	var ns *Netns
	var pids = map[string]int{}
	t.Run("use", func(t *testing.T) {
		ns = NewNetns(t)
		checkNetnsAddrs(t, ns)
		// Inside: the addresses are where they should be, lo is up, and
		// there is no default route out.
		addrs := ns.Exec(t, "ip", "-br", "addr")
		for _, want := range []string{ns.PeerIP.String(), ns.PeerIP6.String(), "127.0.0.1"} {
			if !strings.Contains(addrs, want) {
				t.Errorf("%s not in namespace:\n%s", want, addrs)
			}
		}
		if routes := ns.Exec(t, "ip", "route", "show", "default"); strings.TrimSpace(routes) != "" {
			t.Errorf("namespace has a default route: %s", routes)
		}

		u := StartUnbound(t, ns, UnboundOptions{})
		pids["unbound"] = u.Pid
		inside := StartTcpdump(t, ns, ns.PeerIf, "udp port 53")
		pids["tcpdump inside"] = inside.cmd.Process.Pid
		// Left running on purpose: the test's cleanup must stop it.
		outside := StartTcpdump(t, nil, ns.HostIf, "udp port 53")
		pids["tcpdump outside"] = outside.cmd.Process.Pid
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, server := range []netip.AddrPort{u.Addr, u.Addr6} {
			rcode, addrs, err := DNSQuery(ctx, server, u.Name(3), layers.DNSTypeAAAA)
			if err != nil || rcode != layers.DNSResponseCodeNoErr || len(addrs) != 1 || addrs[0] != u.AAAA(3) {
				t.Errorf("%s: %v %v %v", server, rcode, addrs, err)
			}
		}
		path, stats := inside.Stop(t)
		if stats.Captured != 4 || stats.DroppedByKernel != 0 {
			t.Errorf("tcpdump stats %+v, want 4 captured (2 queries, 2 answers)", stats)
		}
		out := Tshark(t, "-r", path, "-T", "fields", "-e", "dns.flags.response", "-e", "dns.qry.name")
		name := strings.TrimSuffix(u.Name(3), ".")
		if want := strings.Repeat("0\t"+name+"\n1\t"+name+"\n", 2); out != want {
			t.Errorf("tshark:\n%s\nwant\n%s", out, want)
		}
	})
	if ns == nil {
		t.Fatal("no namespace made")
	}
	if netnsListed(t, ns.Name) {
		t.Errorf("namespace %s still listed", ns.Name)
	}
	if _, err := os.Stat("/run/netns/" + ns.Name); err == nil {
		t.Errorf("/run/netns/%s still there", ns.Name)
	}
	if out, err := exec.Command("ip", "link", "show", ns.HostIf).CombinedOutput(); err == nil {
		t.Errorf("link %s still there: %s", ns.HostIf, out)
	}
	if len(pids) != 3 {
		t.Errorf("not everything started: %v", pids)
	}
	for name, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s pid %d still there: %v", name, pid, err)
		}
	}
}

func checkNetnsAddrs(t testing.TB, n *Netns) {
	t.Helper()
	if !netnsPool.Contains(n.HostIP) || !n.Prefix.Contains(n.HostIP) || !n.Prefix.Contains(n.PeerIP) || n.Prefix.Bits() != 30 || n.HostIP == n.PeerIP {
		t.Errorf("IPv4 %v/%v not in one /30 of %v", n.HostIP, n.PeerIP, netnsPool)
	}
	if !netip.MustParsePrefix("fd00::/8").Contains(n.HostIP6) || !n.Prefix6.Contains(n.HostIP6) || !n.Prefix6.Contains(n.PeerIP6) || n.Prefix6.Bits() != 64 || n.HostIP6 == n.PeerIP6 {
		t.Errorf("IPv6 %v/%v not in one ULA /64", n.HostIP6, n.PeerIP6)
	}
	if len(n.HostIf) > 15 || len(n.PeerIf) > 15 {
		t.Errorf("interface names %q %q longer than 15", n.HostIf, n.PeerIf)
	}
}

// TestNetnsVLAN checks AddVLAN where the kernel has 802.1Q devices:
// queries to unbound over the VLAN are tagged on the base veth.
func TestNetnsVLAN(t *testing.T) {
	ns := NewNetns(t)
	vlan := ns.AddVLAN(t, 42)
	checkNetnsAddrs(t, vlan)
	if vlan.Name != ns.Name || vlan.HostIf != ns.HostIf+".42" || vlan.Prefix == ns.Prefix || vlan.Prefix6 == ns.Prefix6 {
		t.Fatalf("vlan %+v on %+v", vlan, ns)
	}
	u := StartUnbound(t, ns, UnboundOptions{Listen: []netip.Addr{vlan.PeerIP, vlan.PeerIP6}})
	td := StartTcpdump(t, nil, ns.HostIf, "vlan 42 and udp port 53")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, server := range []netip.Addr{vlan.PeerIP, vlan.PeerIP6} {
		rcode, addrs, err := DNSQuery(ctx, netip.AddrPortFrom(server, 53), u.Name(3), layers.DNSTypeAAAA)
		if err != nil || rcode != layers.DNSResponseCodeNoErr || len(addrs) != 1 || addrs[0] != u.AAAA(3) {
			t.Errorf("over vlan to %s: %v %v %v", server, rcode, addrs, err)
		}
	}
	// Not over the VLAN: must not be in the capture.
	if _, _, err := DNSQuery(ctx, u.Addr, u.Name(3), layers.DNSTypeA); err != nil {
		t.Error(err)
	}
	path, stats := td.Stop(t)
	if stats.Captured != 4 || stats.DroppedByKernel != 0 {
		t.Errorf("tcpdump stats %+v, want 4 captured (2 queries, 2 answers over vlan 42)", stats)
	}
	out := Tshark(t, "-r", path, "-T", "fields", "-e", "vlan.id", "-e", "dns.qry.name")
	if want := strings.Repeat("42\t"+strings.TrimSuffix(u.Name(3), ".")+"\n", 4); out != want {
		t.Errorf("tshark:\n%s\nwant\n%s", out, want)
	}
}

// TestInjectVLANFrames puts 802.1Q-tagged DNS queries on the veth with
// raw frames (works without kernel VLAN devices) and checks that tcpdump
// sees them leave the host end and arrive at the peer end, tag intact.
func TestInjectVLANFrames(t *testing.T) {
	ns := NewNetns(t)
	specs := []FrameSpec{
		{VLAN: 42, SrcPort: 40001, ID: 0x1111, Name: "www1.pano.test.", Type: layers.DNSTypeA},
		{VLAN: 42, IPv6: true, SrcPort: 40002, ID: 0x2222, Name: "www2.pano.test.", Type: layers.DNSTypeAAAA},
		{VLAN: 0, SrcPort: 40003, ID: 0x3333, Name: "untagged.pano.test.", Type: layers.DNSTypeA},
		{VLAN: 7, SrcPort: 40004, ID: 0x4444, Name: "other-vlan.pano.test.", Type: layers.DNSTypeA},
	}
	var frames [][]byte
	for _, s := range specs {
		frames = append(frames, ns.DNSQueryFrame(t, s))
	}
	filter := "vlan 42 and udp dst port 53"
	out := StartTcpdump(t, nil, ns.HostIf, filter)
	in := StartTcpdump(t, ns, ns.PeerIf, filter)
	ns.InjectFrames(t, frames...)
	want := "42\t0x1111\twww1.pano.test\t1\n42\t0x2222\twww2.pano.test\t28\n"
	for side, c := range map[string]*Tcpdump{"host end": out, "peer end": in} {
		path, stats := c.Stop(t)
		if stats.Captured != 2 {
			t.Errorf("%s: captured %d, want the 2 frames tagged 42", side, stats.Captured)
		}
		got := Tshark(t, "-r", path, "-T", "fields", "-e", "vlan.id", "-e", "dns.id", "-e", "dns.qry.name", "-e", "dns.qry.type")
		if got != want {
			t.Errorf("%s: tshark:\n%s\nwant\n%s", side, got, want)
		}
		// Checksums the frame builder computed must be right.
		if bad := Tshark(t, "-r", path, "-o", "udp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
			"-Y", "udp.checksum.status == \"Bad\" || ip.checksum.status == \"Bad\""); bad != "" {
			t.Errorf("%s: bad checksums:\n%s", side, bad)
		}
	}
}

func netnsListed(t testing.TB, name string) bool {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == name {
			return true
		}
	}
	return false
}

// TestNetnsUnique makes several namespaces at once and checks that names,
// links and networks never collide.
func TestNetnsUnique(t *testing.T) {
	seen := map[string]bool{}
	var prefixes []netip.Prefix
	for range 4 {
		n := NewNetns(t)
		for _, s := range []string{n.Name, n.HostIf, n.PeerIf} {
			if seen[s] {
				t.Errorf("%s twice", s)
			}
			seen[s] = true
		}
		for _, p := range prefixes {
			if p.Overlaps(n.Prefix) || p.Overlaps(n.Prefix6) {
				t.Errorf("%v overlaps %v or %v", p, n.Prefix, n.Prefix6)
			}
		}
		prefixes = append(prefixes, n.Prefix, n.Prefix6)
		// The root namespace reaches each namespace over its own veth; the
		// bind to PeerIP proves ListenUDP's socket is inside the namespace
		// (the root namespace has no such address).
		for _, a := range []netip.Addr{n.PeerIP, n.PeerIP6} {
			srv := n.ListenUDP(t, netip.AddrPortFrom(a, 0))
			go func() {
				buf := make([]byte, 64)
				nr, from, err := srv.ReadFromUDPAddrPort(buf)
				if err == nil {
					_, _ = srv.WriteToUDPAddrPort(buf[:nr], from)
				}
			}()
			c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(srv.LocalAddr().(*net.UDPAddr).AddrPort()))
			if err != nil {
				t.Fatal(err)
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write([]byte(n.Name)); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 64)
			nr, err := c.Read(buf)
			c.Close()
			if err != nil || string(buf[:nr]) != n.Name {
				t.Errorf("echo via %s: %q %v", a, buf[:nr], err)
			}
		}
	}
}
