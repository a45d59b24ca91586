package e2etest

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/pano-observability/pano/internal/testenv"
)

// resolverZone is answered through an upstream that takes upstreamDelay
// per query, as a recursive resolver's cache misses do.
const (
	resolverZone  = "slow.test."
	upstreamDelay = 20 * time.Millisecond
	upstreamPort  = 5300
)

// newResolver starts unbound in a fresh namespace forwarding resolverZone
// to a slow upstream in the same namespace: www<i> names have A and AAAA
// answers (TTL 0, so that unbound asks every time), other names are
// NXDOMAIN. The server's response time is then milliseconds, like a real
// resolver's, instead of the tens of microseconds of local data.
func newResolver(t *testing.T, nxShare float64, qps int, seed uint64) *server {
	t.Helper()
	ns := testenv.NewNetns(t)
	up := netip.AddrPortFrom(ns.PeerIP, upstreamPort)
	startUpstream(t, ns, up)
	u := testenv.StartUnbound(t, ns, testenv.UnboundOptions{ExtraConfig: fmt.Sprintf(
		"  local-zone: %q transparent\nforward-zone:\n  name: %q\n  forward-addr: %s@%d",
		resolverZone, resolverZone, up.Addr(), up.Port())})
	return &server{ns: ns, u: u, queries: resolverQueries(t, nxShare, seed), qps: qps}
}

func resolverQueries(t *testing.T, nxShare float64, seed uint64) string {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 0))
	var b strings.Builder
	for i := range 5000 {
		name := fmt.Sprintf("www%d.%s", r.IntN(100), resolverZone)
		if r.Float64() < nxShare {
			name = fmt.Sprintf("nx%d.%s", i, resolverZone)
		}
		qtype := "A"
		if r.IntN(2) == 0 {
			qtype = "AAAA"
		}
		fmt.Fprintf(&b, "%s %s\n", name, qtype)
	}
	p := filepath.Join(t.TempDir(), "resolver-queries.txt")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// startUpstream answers DNS on addr inside ns after upstreamDelay.
func startUpstream(t *testing.T, ns *testenv.Netns, addr netip.AddrPort) {
	t.Helper()
	conn := ns.ListenUDP(t, addr)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return // closed at the end of the test
			}
			out, err := upstreamAnswer(buf[:n])
			if err != nil {
				continue
			}
			time.AfterFunc(upstreamDelay, func() { _, _ = conn.WriteToUDPAddrPort(out, from) })
		}
	}()
}

func upstreamAnswer(query []byte) ([]byte, error) {
	var q layers.DNS
	if err := q.DecodeFromBytes(query, gopacket.NilDecodeFeedback); err != nil {
		return nil, err
	}
	if q.QR || len(q.Questions) != 1 {
		return nil, fmt.Errorf("not a query")
	}
	qu := q.Questions[0]
	r := layers.DNS{ID: q.ID, QR: true, OpCode: layers.DNSOpCodeQuery, AA: true, RD: q.RD,
		Questions: []layers.DNSQuestion{qu}}
	name := strings.ToLower(string(qu.Name))
	switch {
	case !strings.HasPrefix(name, "www"):
		r.ResponseCode = layers.DNSResponseCodeNXDomain
	case qu.Type == layers.DNSTypeA:
		r.Answers = []layers.DNSResourceRecord{{Name: qu.Name, Type: layers.DNSTypeA, Class: layers.DNSClassIN, IP: []byte{192, 0, 2, 99}}}
	case qu.Type == layers.DNSTypeAAAA:
		r.Answers = []layers.DNSResourceRecord{{Name: qu.Name, Type: layers.DNSTypeAAAA, Class: layers.DNSClassIN,
			IP: netip.MustParseAddr("2001:db8::99").AsSlice()}}
	}
	r.ANCount = uint16(len(r.Answers))
	r.QDCount = 1
	buf := gopacket.NewSerializeBuffer()
	if err := r.SerializeTo(buf, gopacket.SerializeOptions{FixLengths: true}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
