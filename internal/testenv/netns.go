package testenv

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// Netns is a network namespace joined to the root namespace by a veth
// pair, with one IPv4 /30 and one IPv6 /64 of the test's own.
//
// The root namespace reaches PeerIP and PeerIP6 directly over the veth;
// the namespace has no default route, so nothing started inside it can
// reach any address but the test's own.
//
// Offloads are left at the veth defaults on purpose. They cannot make a
// capture on the veth differ from what an eBPF program sees for DNS over
// UDP: TSO/GSO only segment TCP, and veth does GRO only when an XDP
// program or NAPI is enabled on it, which tests do not do. A test that
// sends large TCP through the veth and compares packet counts must turn
// them off itself.
type Netns struct {
	Name           string     // unique per test, e.g. "pano-3f9a1c"
	HostIf, PeerIf string     // veth: HostIf in the root namespace, PeerIf inside Name
	HostIP, PeerIP netip.Addr // IPv4 /30 out of 198.18.0.0/15, unique per test
	HostIP6        netip.Addr // IPv6 /64 out of fd00::/8 (nodad)
	PeerIP6        netip.Addr

	// Prefix and Prefix6 are the networks the addresses are in.
	Prefix, Prefix6 netip.Prefix
}

// netnsPool is where NewNetns and AddVLAN take their IPv4 /30s from:
// 198.18.0.0/15, reserved for benchmarking (RFC 2544), so it cannot be
// anybody's real network.
var netnsPool = netip.MustParsePrefix("198.18.0.0/15")

// NewNetns creates a namespace "pano-<random>" and a veth pair between it
// and the root namespace, with addresses on both ends and both ends and
// the namespace's loopback up. t.Cleanup kills what still runs inside,
// deletes the veth and then the namespace.
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	RequireRoot(t)
	RequireProgram(t, "ip", "iproute2")

	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		n, err := netnsCreate(t)
		if err == nil {
			return n
		}
		lastErr = err
		if !errors.Is(err, errNetnsClash) {
			break
		}
	}
	t.Fatalf("network namespace: %v", lastErr)
	return nil
}

// errNetnsClash means another test took the name or the addresses at the
// same moment; picking new random ones is enough.
var errNetnsClash = errors.New("name or address taken")

func netnsCreate(t testing.TB) (*Netns, error) {
	t.Helper()
	suffix := netnsRandHex(3)
	n := &Netns{
		Name: "pano-" + suffix,
		// Interface names are at most 15 bytes; "pn" + 6 + "h" leaves room
		// for a ".4094" VLAN suffix.
		HostIf: "pn" + suffix + "h",
		PeerIf: "pn" + suffix + "p",
	}
	if err := n.pickAddrs(); err != nil {
		return nil, err
	}

	if out, err := netnsIP("netns", "add", n.Name); err != nil {
		if strings.Contains(out, "exists") {
			return nil, fmt.Errorf("%w: %s", errNetnsClash, out)
		}
		return nil, fmt.Errorf("ip netns add %s: %v: %s", n.Name, err, out)
	}
	t.Cleanup(func() { n.destroy(t) })

	if out, err := netnsIP("link", "add", n.HostIf, "type", "veth", "peer", "name", n.PeerIf, "netns", n.Name); err != nil {
		if strings.Contains(out, "exists") {
			return nil, fmt.Errorf("%w: %s", errNetnsClash, out)
		}
		return nil, fmt.Errorf("veth %s/%s: %v: %s", n.HostIf, n.PeerIf, err, out)
	}
	if err := n.configure(n.HostIf, n.PeerIf); err != nil {
		return nil, err
	}
	if out, err := netnsIP("-n", n.Name, "link", "set", "lo", "up"); err != nil {
		return nil, fmt.Errorf("lo up in %s: %v: %s", n.Name, err, out)
	}
	if err := n.checkUnique(n.HostIf); err != nil {
		return nil, err
	}
	return n, nil
}

// configure puts the addresses on hostIf and peerIf and brings both up.
func (n *Netns) configure(hostIf, peerIf string) error {
	steps := [][]string{
		{"addr", "add", netip.PrefixFrom(n.HostIP, 30).String(), "dev", hostIf},
		{"-6", "addr", "add", netip.PrefixFrom(n.HostIP6, 64).String(), "dev", hostIf, "nodad"},
		{"link", "set", hostIf, "up"},
		{"-n", n.Name, "addr", "add", netip.PrefixFrom(n.PeerIP, 30).String(), "dev", peerIf},
		{"-n", n.Name, "-6", "addr", "add", netip.PrefixFrom(n.PeerIP6, 64).String(), "dev", peerIf, "nodad"},
		{"-n", n.Name, "link", "set", peerIf, "up"},
	}
	for _, args := range steps {
		if out, err := netnsIP(args...); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// pickAddrs takes a random IPv4 /30 from netnsPool and a random ULA /64
// that no address or route of the root namespace overlaps.
func (n *Netns) pickAddrs() error {
	used, err := netnsUsedPrefixes()
	if err != nil {
		return err
	}
	for range 100 {
		b := netnsPool.Addr().As4()
		v := binary.BigEndian.Uint32(b[:]) | (netnsRandUint32() & (1<<(32-netnsPool.Bits()) - 1) &^ 3)
		binary.BigEndian.PutUint32(b[:], v)
		p4 := netip.PrefixFrom(netip.AddrFrom4(b), 30)

		var b6 [16]byte
		copy(b6[:8], netnsRandBytes(8))
		b6[0] = 0xfd // ULA, locally assigned (RFC 4193)
		p6 := netip.PrefixFrom(netip.AddrFrom16(b6), 64)

		if netnsOverlaps(used, p4) || netnsOverlaps(used, p6) {
			continue
		}
		n.Prefix, n.Prefix6 = p4, p6
		n.HostIP = p4.Addr().Next()
		n.PeerIP = n.HostIP.Next()
		b6[15] = 1
		n.HostIP6 = netip.AddrFrom16(b6)
		b6[15] = 2
		n.PeerIP6 = netip.AddrFrom16(b6)
		return nil
	}
	return errors.New("no free /30 left in " + netnsPool.String())
}

// checkUnique fails with errNetnsClash if another interface of the root
// namespace got an address in our networks at the same time as us.
func (n *Netns) checkUnique(ourIf string) error {
	addrs, err := netnsAddrs()
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if a.ifname == ourIf {
			continue
		}
		if a.prefix.Overlaps(n.Prefix) || a.prefix.Overlaps(n.Prefix6) {
			return fmt.Errorf("%w: %s has %s", errNetnsClash, a.ifname, a.prefix)
		}
	}
	return nil
}

func (n *Netns) destroy(t testing.TB) {
	t.Helper()
	// A process left inside would keep the namespace alive after its
	// name is gone; kill them all first.
	if out, err := netnsIP("netns", "pids", n.Name); err == nil {
		for _, f := range strings.Fields(out) {
			if pid, err := strconv.Atoi(f); err == nil {
				t.Logf("netns %s: killing leftover pid %d", n.Name, pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	// Deleting one end of a veth deletes both, even while the namespace
	// lingers.
	if out, err := netnsIP("link", "del", n.HostIf); err != nil && !strings.Contains(out, "Cannot find") {
		t.Errorf("netns %s: ip link del %s: %v: %s", n.Name, n.HostIf, err, out)
	}
	if out, err := netnsIP("netns", "del", n.Name); err != nil {
		t.Errorf("ip netns del %s: %v: %s", n.Name, err, out)
	}
}

// Command returns a command that runs inside the namespace. "ip netns
// exec" execs the program in place, so cmd.Process is the program itself
// and signals reach it.
func (n *Netns) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Exec runs a program inside the namespace, fails the test on error and
// returns its combined output.
func (n *Netns) Exec(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := n.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("in netns %s: %s %s: %v\n%s", n.Name, name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// WireSegments makes both veth ends send TCP in segments of one MSS, as
// a physical link carries them, instead of the veth's 64 KiB GSO
// segments: gso_max_segs 1 on each end. A capture then sees as many
// packets as one on a wire (or on a NIC with offloads off, as Zeek asks
// of its capture interfaces) would.
func (n *Netns) WireSegments(t testing.TB) {
	t.Helper()
	if out, err := netnsIP("link", "set", "dev", n.HostIf, "gso_max_segs", "1"); err != nil {
		t.Fatalf("gso_max_segs on %s: %v: %s", n.HostIf, err, out)
	}
	n.Exec(t, "ip", "link", "set", "dev", n.PeerIf, "gso_max_segs", "1")
}

// AddVLAN adds 802.1Q sub-interfaces with tag id on both veth ends, named
// <veth>.<id>, with their own /30 and /64. The returned Netns shares Name
// with n and describes the sub-interfaces.
func (n *Netns) AddVLAN(t testing.TB, id int) *Netns {
	t.Helper()
	if id < 1 || id > 4094 {
		t.Fatalf("vlan id %d out of 1..4094", id)
	}
	var lastErr error
	for range 5 {
		v := &Netns{
			Name:   n.Name,
			HostIf: fmt.Sprintf("%s.%d", n.HostIf, id),
			PeerIf: fmt.Sprintf("%s.%d", n.PeerIf, id),
		}
		lastErr = v.pickAddrs()
		if lastErr != nil {
			break
		}
		if out, err := netnsIP("link", "add", "link", n.HostIf, "name", v.HostIf, "type", "vlan", "id", strconv.Itoa(id)); err != nil {
			if strings.Contains(out, "Unknown device type") {
				// No package can fix a kernel built without 802.1Q, so
				// this skips even under CI; InjectFrames with VLANFrame
				// still puts tagged frames on the veth.
				t.Skipf("kernel has no 802.1Q VLAN devices (CONFIG_VLAN_8021Q): %s", out)
			}
			t.Fatalf("vlan %s: %v: %s", v.HostIf, err, out)
		}
		t.Cleanup(func() {
			// Usually gone already with the veth; only report real failures.
			if out, err := netnsIP("link", "del", v.HostIf); err != nil && !strings.Contains(out, "Cannot find") {
				t.Errorf("ip link del %s: %v: %s", v.HostIf, err, out)
			}
		})
		if out, err := netnsIP("-n", n.Name, "link", "add", "link", n.PeerIf, "name", v.PeerIf, "type", "vlan", "id", strconv.Itoa(id)); err != nil {
			t.Fatalf("vlan %s in %s: %v: %s", v.PeerIf, n.Name, err, out)
		}
		if err := v.configure(v.HostIf, v.PeerIf); err != nil {
			t.Fatalf("vlan %d: %v", id, err)
		}
		lastErr = v.checkUnique(v.HostIf)
		if lastErr == nil {
			return v
		}
		// Another test took the same addresses at the same moment: start
		// over with new ones.
		_, _ = netnsIP("link", "del", v.HostIf)
		_, _ = netnsIP("-n", n.Name, "link", "del", v.PeerIf)
	}
	t.Fatalf("vlan %d: %v", id, lastErr)
	return nil
}

// ListenUDP opens a UDP socket inside the namespace, bound to addr (for
// example PeerIP with port 0), closed at the end of the test. The socket
// stays in the namespace whatever goroutine uses it afterwards.
func (n *Netns) ListenUDP(t testing.TB, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var conn *net.UDPConn
	err := n.do(func() error {
		var err error
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	})
	if err != nil {
		t.Fatalf("listen udp %s in %s: %v", addr, n.Name, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// commandIn is a command run inside ns, or in the root namespace when ns
// is nil.
func commandIn(ctx context.Context, ns *Netns, name string, args ...string) *exec.Cmd {
	if ns != nil {
		return ns.Command(ctx, name, args...)
	}
	return exec.CommandContext(ctx, name, args...)
}

// ListenTCP opens a TCP listener inside the namespace, bound to addr,
// closed at the end of the test; like ListenUDP, it stays in the
// namespace whatever goroutine accepts on it.
func (n *Netns) ListenTCP(t testing.TB, addr netip.AddrPort) net.Listener {
	t.Helper()
	var ln net.Listener
	err := n.do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr.String())
		return err
	})
	if err != nil {
		t.Fatalf("listen tcp %s in %s: %v", addr, n.Name, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// do runs f on an OS thread switched into the namespace. The thread is
// thrown away afterwards if switching back fails.
func (n *Netns) do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("current netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(n.Name)
		if err != nil {
			errc <- fmt.Errorf("netns %s: %w", n.Name, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", n.Name, err)
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it dies with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("leave netns %s: %w", n.Name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// netnsIP runs iproute2's ip and returns its combined output.
func netnsIP(args ...string) (string, error) {
	out, err := exec.Command("ip", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

type netnsAddr struct {
	ifname string
	prefix netip.Prefix
}

// netnsAddrs lists the root namespace's addresses with their networks.
func netnsAddrs() ([]netnsAddr, error) {
	out, err := exec.Command("ip", "-j", "addr", "show").Output()
	if err != nil {
		return nil, fmt.Errorf("ip -j addr show: %w", err)
	}
	var links []struct {
		Ifname   string `json:"ifname"`
		AddrInfo []struct {
			Local     string `json:"local"`
			Prefixlen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		return nil, fmt.Errorf("ip -j addr show: %w", err)
	}
	var res []netnsAddr
	for _, l := range links {
		for _, a := range l.AddrInfo {
			ip, err := netip.ParseAddr(a.Local)
			if err != nil {
				continue
			}
			p, err := ip.Prefix(a.Prefixlen)
			if err != nil {
				continue
			}
			res = append(res, netnsAddr{l.Ifname, p})
		}
	}
	return res, nil
}

// netnsUsedPrefixes returns every network the root namespace has an
// address in or a route to, in all routing tables, IPv4 and IPv6.
func netnsUsedPrefixes() ([]netip.Prefix, error) {
	addrs, err := netnsAddrs()
	if err != nil {
		return nil, err
	}
	var used []netip.Prefix
	for _, a := range addrs {
		used = append(used, a.prefix)
	}
	for _, fam := range []string{"-4", "-6"} {
		out, err := exec.Command("ip", "-j", fam, "route", "show", "table", "all").Output()
		if err != nil {
			return nil, fmt.Errorf("ip -j %s route show table all: %w", fam, err)
		}
		var routes []struct {
			Dst string `json:"dst"`
		}
		if err := json.Unmarshal(out, &routes); err != nil {
			return nil, fmt.Errorf("ip -j %s route: %w", fam, err)
		}
		for _, r := range routes {
			// "default" would overlap everything and is no clash: our
			// more specific connected routes win over it.
			if r.Dst == "default" || r.Dst == "" {
				continue
			}
			if p, err := netip.ParsePrefix(r.Dst); err == nil {
				used = append(used, p)
			} else if a, err := netip.ParseAddr(r.Dst); err == nil {
				used = append(used, netip.PrefixFrom(a, a.BitLen()))
			}
		}
	}
	return used, nil
}

func netnsOverlaps(used []netip.Prefix, p netip.Prefix) bool {
	for _, u := range used {
		// Multicast and link-local routes (ff00::/8, fe80::/64) never hold
		// our addresses; the Overlaps test simply never matches them.
		if u.Overlaps(p) {
			return true
		}
	}
	return false
}

func netnsRandBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return b
}

func netnsRandHex(n int) string { return hex.EncodeToString(netnsRandBytes(n)) }

func netnsRandUint32() uint32 { return binary.BigEndian.Uint32(netnsRandBytes(4)) }
