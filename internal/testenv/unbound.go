package testenv

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Unbound is a running unbound serving Zone inside a Netns.
//
// The zone holds www0..www<Names-1>, each with one A and one AAAA
// record (see A and AAAA); any other name under the zone is NXDOMAIN,
// except ServfailName, which is SERVFAIL, and names outside the zone are
// REFUSED, so unbound never sends a query anywhere.
type Unbound struct {
	Addr, Addr6 netip.AddrPort // port 53 on PeerIP/PeerIP6
	Zone        string         // "pano.test."

	// Names is how many www<i> names the zone has.
	Names int
	// ServfailName answers SERVFAIL: "servfail.pano.test.".
	ServfailName string
	// ConfigPath and LogPath are unbound's configuration and log.
	ConfigPath, LogPath string
	// Pid is unbound's process id.
	Pid int
}

// UnboundOptions tunes StartUnbound; the zero value is fine.
type UnboundOptions struct {
	Threads int // num-threads, default 1
	Names   int // names www0..www<Names-1> with A and AAAA answers, default 100
	// Listen adds addresses to listen on (port 53), e.g. a VLAN's PeerIP;
	// they must be inside the namespace.
	Listen []netip.Addr
	// ExtraConfig is appended to the server: clause verbatim.
	ExtraConfig string
}

// QueryMix describes a dnsperf query list. Shares are fractions of the
// lines: NXShare of them ask for names that do not exist, ServfailShare
// for ServfailName, the rest for existing www<i> names; AAAAShare of all
// lines ask for AAAA, the others for A.
type QueryMix struct {
	Queries       int     // lines in the file, default 10000
	Names         int     // distinct existing names used, default all of the zone's
	NXShare       float64 // share of names that do not exist (NXDOMAIN)
	ServfailShare float64 // share of queries for the SERVFAIL name
	AAAAShare     float64 // share of AAAA queries (the rest are A)
	Seed          uint64  // for reproducible files
}

// UnboundZone is the zone StartUnbound serves.
const UnboundZone = "pano.test."

// StartUnbound runs Debian's unbound inside ns until the test ends. It
// returns once unbound answers a query on both addresses; unbound's log is
// printed if the test fails.
func StartUnbound(t testing.TB, ns *Netns, opts UnboundOptions) *Unbound {
	t.Helper()
	bin := RequireProgram(t, "unbound", "unbound")
	if opts.Threads <= 0 {
		opts.Threads = 1
	}
	if opts.Names <= 0 {
		opts.Names = 100
	}
	dir := t.TempDir()
	u := &Unbound{
		Addr:         netip.AddrPortFrom(ns.PeerIP, 53),
		Addr6:        netip.AddrPortFrom(ns.PeerIP6, 53),
		Zone:         UnboundZone,
		Names:        opts.Names,
		ServfailName: "servfail." + UnboundZone,
		ConfigPath:   filepath.Join(dir, "unbound.conf"),
		LogPath:      filepath.Join(dir, "unbound.log"),
	}
	if err := os.WriteFile(u.ConfigPath, []byte(u.config(dir, opts)), 0o644); err != nil {
		t.Fatalf("unbound config: %v", err)
	}
	if out, err := exec.Command(unboundSibling(bin, "unbound-checkconf"), u.ConfigPath).CombinedOutput(); err != nil {
		t.Fatalf("unbound-checkconf: %v\n%s", err, out)
	}

	logf, err := os.Create(u.LogPath)
	if err != nil {
		t.Fatalf("unbound log: %v", err)
	}
	cmd := ns.Command(context.Background(), bin, "-d", "-c", u.ConfigPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start unbound: %v", err)
	}
	u.Pid = cmd.Process.Pid
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			unboundDumpLog(t, u.LogPath)
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, server := range []netip.AddrPort{u.Addr, u.Addr6} {
		for {
			rcode, _, err := DNSQuery(ctx, server, "www0."+u.Zone, layers.DNSTypeA)
			if err == nil && rcode == layers.DNSResponseCodeNoErr {
				break
			}
			select {
			case err := <-done:
				unboundDumpLog(t, u.LogPath)
				t.Fatalf("unbound exited before answering: %v", err)
			case <-ctx.Done():
				unboundDumpLog(t, u.LogPath)
				t.Fatalf("unbound on %s not answering: rcode %v, %v", server, rcode, err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return u
}

func unboundSibling(bin, sibling string) string {
	if p, err := exec.LookPath(sibling); err == nil {
		return p
	}
	return filepath.Join(filepath.Dir(bin), sibling)
}

func unboundDumpLog(t testing.TB, path string) {
	t.Helper()
	b, _ := os.ReadFile(path)
	if len(b) > 16<<10 {
		b = b[len(b)-16<<10:]
	}
	t.Logf("unbound log (%s):\n%s", path, b)
}

// config renders unbound.conf.
func (u *Unbound) config(dir string, opts UnboundOptions) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("server:")
	w("  interface: %s", u.Addr.Addr())
	w("  interface: %s", u.Addr6.Addr())
	for _, a := range opts.Listen {
		w("  interface: %s", a)
	}
	w("  port: 53")
	w("  do-ip4: yes")
	w("  do-ip6: yes")
	w("  do-udp: yes")
	w("  do-tcp: yes")
	// Run as is: no chroot, no user switch, files in the test's directory.
	w("  chroot: \"\"")
	w("  username: \"\"")
	w("  directory: %q", dir)
	w("  pidfile: %q", filepath.Join(dir, "unbound.pid"))
	w("  use-syslog: no")
	w("  logfile: \"\"")
	w("  verbosity: 1")
	w("  num-threads: %d", opts.Threads)
	// Big socket buffers (unbound forces them as root) so that ~80k qps
	// bursts are not dropped in the socket.
	w("  so-rcvbuf: 8m")
	w("  so-sndbuf: 8m")
	w("  ratelimit: 0")
	w("  ip-ratelimit: 0")
	w("  access-control: 0.0.0.0/0 refuse")
	w("  access-control: ::/0 refuse")
	w("  access-control: 127.0.0.0/8 allow")
	w("  access-control: ::1/128 allow")
	w("  access-control: %s allow", netnsPool)
	w("  access-control: fd00::/8 allow")
	// No DNSSEC, no trust anchor, no root priming: iterator only.
	w("  module-config: \"iterator\"")
	w("  harden-referral-path: no")
	w("  qname-minimisation: no")
	w("  minimal-responses: yes")
	w("  statistics-interval: 0")
	w("  extended-statistics: no")
	// Everything outside the test zone is refused: unbound never sends a
	// query out of the namespace.
	w("  local-zone: \".\" refuse")
	w("  local-zone: %q static", u.Zone)
	w("  local-data: \"%s 3600 IN SOA ns.%s hostmaster.%s 1 3600 600 86400 60\"", u.Zone, u.Zone, u.Zone)
	w("  local-data: \"%s 3600 IN NS ns.%s\"", u.Zone, u.Zone)
	for i := range u.Names {
		name := fmt.Sprintf("www%d.%s", i, u.Zone)
		w("  local-data: \"%s 300 IN A %s\"", name, u.A(i))
		w("  local-data: \"%s 300 IN AAAA %s\"", name, u.AAAA(i))
	}
	// SERVFAIL: the name is handed on (transparent) to a forward zone whose
	// only server is 127.0.0.1, which do-not-query-localhost (default yes)
	// forbids. With no server to ask unbound answers SERVFAIL at once,
	// without sending anything.
	w("  local-zone: %q transparent", u.ServfailName)
	w("  do-not-query-localhost: yes")
	if opts.ExtraConfig != "" {
		w("%s", opts.ExtraConfig)
	}
	w("remote-control:")
	w("  control-enable: no")
	w("forward-zone:")
	w("  name: %q", u.ServfailName)
	w("  forward-addr: 127.0.0.1")
	return b.String()
}

// Name returns the i-th existing name, "www<i>.pano.test.".
func (u *Unbound) Name(i int) string { return fmt.Sprintf("www%d.%s", i, u.Zone) }

// A is the IPv4 answer for Name(i), from 192.0.2.0/24 (documentation
// addresses: nothing ever sends to them).
func (u *Unbound) A(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(i%254 + 1)}) }

// AAAA is the IPv6 answer for Name(i), from 2001:db8::/32 (documentation).
func (u *Unbound) AAAA(i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 12: byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)})
}

// WriteQueryFile writes a dnsperf input file ("name type" per line) for
// this server's zone into the test's temporary directory and returns its
// path. The same QueryMix always gives the same file.
func (u *Unbound) WriteQueryFile(t testing.TB, opts QueryMix) string {
	t.Helper()
	data, err := u.queryList(opts)
	if err != nil {
		t.Fatalf("query file: %v", err)
	}
	path := filepath.Join(t.TempDir(), "queries.txt")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatalf("query file: %v", err)
	}
	return path
}

func (u *Unbound) queryList(opts QueryMix) ([]byte, error) {
	if opts.Queries <= 0 {
		opts.Queries = 10000
	}
	if opts.Names <= 0 || opts.Names > u.Names {
		opts.Names = u.Names
	}
	for _, s := range []float64{opts.NXShare, opts.ServfailShare, opts.AAAAShare} {
		if s < 0 || s > 1 {
			return nil, fmt.Errorf("share %v out of [0,1]", s)
		}
	}
	if opts.NXShare+opts.ServfailShare > 1 {
		return nil, fmt.Errorf("NXShare %v + ServfailShare %v > 1", opts.NXShare, opts.ServfailShare)
	}
	// Exact counts rather than coin flips, so a test can predict the
	// rcode shares; the order is shuffled.
	nx := int(opts.NXShare*float64(opts.Queries) + 0.5)
	sf := int(opts.ServfailShare*float64(opts.Queries) + 0.5)
	aaaa := int(opts.AAAAShare*float64(opts.Queries) + 0.5)
	if nx+sf > opts.Queries {
		sf = opts.Queries - nx
	}
	kinds := make([]byte, opts.Queries) // 0 existing, 1 NX, 2 SERVFAIL
	for i := range nx {
		kinds[i] = 1
	}
	for i := nx; i < nx+sf; i++ {
		kinds[i] = 2
	}
	types := make([]bool, opts.Queries) // true = AAAA
	for i := range aaaa {
		types[i] = true
	}
	rng := rand.New(rand.NewPCG(opts.Seed, 0x70616e6f))
	rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	rng.Shuffle(len(types), func(i, j int) { types[i], types[j] = types[j], types[i] })

	var b bytes.Buffer
	for i := range opts.Queries {
		var name string
		switch kinds[i] {
		case 0:
			name = u.Name(rng.IntN(opts.Names))
		case 1:
			name = fmt.Sprintf("nx%d.%s", rng.IntN(1<<30), u.Zone)
		case 2:
			name = u.ServfailName
		}
		qtype := "A"
		if types[i] {
			qtype = "AAAA"
		}
		fmt.Fprintf(&b, "%s %s\n", name, qtype)
	}
	return b.Bytes(), nil
}

// DNSQuery sends one query over UDP and returns the response code and
// the A/AAAA addresses in the answer section.
func DNSQuery(ctx context.Context, server netip.AddrPort, name string, qtype layers.DNSType) (layers.DNSResponseCode, []netip.Addr, error) {
	id := uint16(rand.Uint32())
	q := &layers.DNS{
		ID: id, RD: true, OpCode: layers.DNSOpCodeQuery,
		Questions: []layers.DNSQuestion{{Name: []byte(strings.TrimSuffix(name, ".")), Type: qtype, Class: layers.DNSClassIN}},
	}
	buf := gopacket.NewSerializeBuffer()
	if err := q.SerializeTo(buf, gopacket.SerializeOptions{FixLengths: true}); err != nil {
		return 0, nil, fmt.Errorf("encode query: %w", err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", server.String())
	if err != nil {
		return 0, nil, err
	}
	defer conn.Close()
	deadline := time.Now().Add(time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = conn.SetDeadline(deadline)
	if _, err := conn.Write(buf.Bytes()); err != nil {
		return 0, nil, err
	}
	rb := make([]byte, 4096)
	for {
		n, err := conn.Read(rb)
		if err != nil {
			return 0, nil, err
		}
		var r layers.DNS
		if err := r.DecodeFromBytes(rb[:n], gopacket.NilDecodeFeedback); err != nil {
			return 0, nil, fmt.Errorf("decode response: %w", err)
		}
		if r.ID != id || !r.QR {
			continue // not ours
		}
		var addrs []netip.Addr
		for _, a := range r.Answers {
			if a.Type == layers.DNSTypeA || a.Type == layers.DNSTypeAAAA {
				if ip, ok := netip.AddrFromSlice(a.IP); ok {
					addrs = append(addrs, ip.Unmap())
				}
			}
		}
		return r.ResponseCode, addrs, nil
	}
}
