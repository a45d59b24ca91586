package testenv

import (
	"context"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// TestUnboundAnswers checks every kind of answer the test zone promises,
// over IPv4 and IPv6, from the root namespace across the veth.
func TestUnboundAnswers(t *testing.T) {
	ns := NewNetns(t)
	u := StartUnbound(t, ns, UnboundOptions{Names: 300})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for _, server := range []netip.AddrPort{u.Addr, u.Addr6} {
		for _, i := range []int{0, 7, 299} {
			for _, tc := range []struct {
				qtype layers.DNSType
				want  netip.Addr
			}{{layers.DNSTypeA, u.A(i)}, {layers.DNSTypeAAAA, u.AAAA(i)}} {
				rcode, addrs, err := DNSQuery(ctx, server, u.Name(i), tc.qtype)
				if err != nil {
					t.Fatalf("%s %s %v: %v", server, u.Name(i), tc.qtype, err)
				}
				if rcode != layers.DNSResponseCodeNoErr || !slices.Equal(addrs, []netip.Addr{tc.want}) {
					t.Errorf("%s %s %v: rcode %v answers %v, want NOERROR [%v]", server, u.Name(i), tc.qtype, rcode, addrs, tc.want)
				}
			}
		}
		for _, tc := range []struct {
			name string
			want layers.DNSResponseCode
		}{
			{"www300." + u.Zone, layers.DNSResponseCodeNXDomain}, // one past the last
			{"nx12345." + u.Zone, layers.DNSResponseCodeNXDomain},
			{u.ServfailName, layers.DNSResponseCodeServFail},
			{"example.com.", layers.DNSResponseCodeRefused}, // never leaves the namespace
		} {
			start := time.Now()
			rcode, addrs, err := DNSQuery(ctx, server, tc.name, layers.DNSTypeA)
			if err != nil {
				t.Fatalf("%s %s: %v", server, tc.name, err)
			}
			if rcode != tc.want || len(addrs) != 0 {
				t.Errorf("%s %s: rcode %v answers %v, want %v and none", server, tc.name, rcode, addrs, tc.want)
			}
			t.Logf("%s %s: %v in %v", server, tc.name, rcode, time.Since(start))
		}
	}
}

// TestQueryList checks the query file holds exactly the mix asked for,
// is reproducible, and rejects impossible mixes.
func TestQueryList(t *testing.T) {
	u := &Unbound{Zone: UnboundZone, Names: 50, ServfailName: "servfail." + UnboundZone}
	mix := QueryMix{Queries: 1000, Names: 10, NXShare: 0.1, ServfailShare: 0.02, AAAAShare: 0.25, Seed: 7}
	b, err := u.queryList(mix)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := u.queryList(mix)
	if string(again) != string(b) {
		t.Error("same mix, different file")
	}
	mix.Seed = 8
	if other, _ := u.queryList(mix); string(other) == string(b) {
		t.Error("different seed, same file")
	}
	kinds := map[string]int{}
	names := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		name, qtype, ok := strings.Cut(l, " ")
		if !ok || (qtype != "A" && qtype != "AAAA") || !strings.HasSuffix(name, "."+UnboundZone) {
			t.Fatalf("bad line %q", l)
		}
		kinds[qtype]++
		switch {
		case name == u.ServfailName:
			kinds["servfail"]++
		case strings.HasPrefix(name, "nx"):
			kinds["nx"]++
		default:
			names[name] = true
		}
	}
	if want := map[string]int{"A": 750, "AAAA": 250, "nx": 100, "servfail": 20}; !maps.Equal(kinds, want) {
		t.Errorf("kinds %v, want %v", kinds, want)
	}
	if len(names) != 10 {
		t.Errorf("%d distinct existing names, want 10", len(names))
	}
	for _, bad := range []QueryMix{{NXShare: 0.7, ServfailShare: 0.5}, {AAAAShare: 1.5}, {NXShare: -0.1}} {
		if _, err := u.queryList(bad); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

// TestUnboundConfig has unbound-checkconf accept the generated
// configuration (no root needed).
func TestUnboundConfig(t *testing.T) {
	RequireProgram(t, "unbound-checkconf", "unbound")
	u := &Unbound{
		Addr: netip.MustParseAddrPort("198.18.0.2:53"), Addr6: netip.MustParseAddrPort("[fd00::2]:53"),
		Zone: UnboundZone, Names: 5, ServfailName: "servfail." + UnboundZone,
	}
	dir := t.TempDir()
	conf := u.config(dir, UnboundOptions{Threads: 2, Listen: []netip.Addr{netip.MustParseAddr("198.18.0.6")}})
	for _, want := range []string{"interface: 198.18.0.6", "num-threads: 2", `local-data: "www4.pano.test. 300 IN AAAA 2001:db8::4"`, `local-zone: "." refuse`} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %q", want)
		}
	}
	path := filepath.Join(dir, "unbound.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("unbound-checkconf", path).CombinedOutput(); err != nil {
		t.Fatalf("unbound-checkconf: %v\n%s", err, out)
	}
}
