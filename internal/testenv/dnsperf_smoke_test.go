package testenv

import (
	"context"
	"maps"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// TestDNSPerfSmoke runs dnsperf from the root namespace against unbound
// in a namespace, across the veth, with tcpdump on the veth, and checks
// dnsperf's report three ways: against its own printed text, against
// the query file (exact rcode counts), and against what tcpdump captured
// and tshark decoded.
func TestDNSPerfSmoke(t *testing.T) {
	ns := NewNetns(t)
	u := StartUnbound(t, ns, UnboundOptions{})
	mix := QueryMix{Queries: 2000, NXShare: 0.2, ServfailShare: 0.05, AAAAShare: 0.3, Seed: 1}
	qf := u.WriteQueryFile(t, mix)
	perLine := smokeExpected(t, u, qf) // rcodes and qtypes for one pass
	const passes = 5

	for _, server := range []netip.AddrPort{u.Addr, u.Addr6} {
		t.Run(server.Addr().String(), func(t *testing.T) {
			td := StartTcpdump(t, nil, ns.HostIf, "udp port 53")
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			r := RunDNSPerf(ctx, t, DNSPerfOptions{
				Server: server, QueryFile: qf, MaxQueries: passes * mix.Queries,
				QPS: 20000, Timeout: 5 * time.Second,
			})
			path, stats := td.Stop(t)

			checkDNSPerfAgainstText(t, r)
			if r.Sent != passes*mix.Queries || r.Lost != 0 || r.Completed != r.Sent {
				t.Fatalf("sent %d completed %d lost %d, want %d all completed", r.Sent, r.Completed, r.Lost, passes*mix.Queries)
			}
			want := map[string]int{}
			for k, v := range perLine.rcodes {
				want[k] = passes * v
			}
			if !maps.Equal(r.RCodes, want) {
				t.Errorf("dnsperf rcodes %v, want %v from the query file", r.RCodes, want)
			}
			if r.QPS <= 0 || r.AvgLatency <= 0 || r.MinLatency > r.AvgLatency || r.AvgLatency > r.MaxLatency {
				t.Errorf("implausible qps %v / latency min %v avg %v max %v", r.QPS, r.MinLatency, r.AvgLatency, r.MaxLatency)
			}

			// The wire, as tcpdump saw it.
			if stats.DroppedByKernel != 0 {
				t.Fatalf("tcpdump dropped %d packets: cannot compare", stats.DroppedByKernel)
			}
			if stats.Captured != r.Sent+r.Completed {
				t.Errorf("tcpdump captured %d, want %d queries + %d responses", stats.Captured, r.Sent, r.Completed)
			}
			wire := smokeDecode(t, path)
			if wire.queries != r.Sent || wire.responses != r.Completed {
				t.Errorf("tshark: %d queries %d responses, dnsperf: %d sent %d completed", wire.queries, wire.responses, r.Sent, r.Completed)
			}
			if !maps.Equal(wire.rcodes, r.RCodes) {
				t.Errorf("tshark rcodes %v, dnsperf %v", wire.rcodes, r.RCodes)
			}
			wantTypes := map[string]int{}
			for k, v := range perLine.qtypes {
				wantTypes[k] = passes * v
			}
			if !maps.Equal(wire.qtypes, wantTypes) {
				t.Errorf("tshark query types %v, want %v", wire.qtypes, wantTypes)
			}
		})
	}

	// dnsperf inside the namespace (Netns option) against the same server.
	r := RunDNSPerf(context.Background(), t, DNSPerfOptions{Server: u.Addr, QueryFile: qf, Netns: ns})
	if r.Sent != mix.Queries || r.Completed != mix.Queries || !maps.Equal(r.RCodes, perLine.rcodes) {
		t.Errorf("inside the namespace: sent %d completed %d rcodes %v, want %d and %v", r.Sent, r.Completed, r.RCodes, mix.Queries, perLine.rcodes)
	}
}

type smokeCounts struct {
	queries, responses int
	rcodes, qtypes     map[string]int
}

// smokeExpected derives, line by line, what unbound must answer to the
// query file, and checks the file follows the mix's shares.
func smokeExpected(t *testing.T, u *Unbound, path string) smokeCounts {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c := smokeCounts{rcodes: map[string]int{}, qtypes: map[string]int{}}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		name, qtype, _ := strings.Cut(l, " ")
		switch {
		case name == u.ServfailName:
			c.rcodes["SERVFAIL"]++
		case strings.HasPrefix(name, "nx"):
			c.rcodes["NXDOMAIN"]++
		case strings.HasPrefix(name, "www"):
			c.rcodes["NOERROR"]++
		default:
			t.Fatalf("unexpected line %q", l)
		}
		c.qtypes[qtype]++
	}
	if want := map[string]int{"NOERROR": 1500, "NXDOMAIN": 400, "SERVFAIL": 100}; !maps.Equal(c.rcodes, want) {
		t.Fatalf("query file kinds %v, want %v", c.rcodes, want)
	}
	if want := map[string]int{"A": 1400, "AAAA": 600}; !maps.Equal(c.qtypes, want) {
		t.Fatalf("query file types %v, want %v", c.qtypes, want)
	}
	return c
}

// smokeDecode counts queries, responses, response codes and query types
// in a pcap with tshark.
func smokeDecode(t *testing.T, path string) smokeCounts {
	t.Helper()
	out := Tshark(t, "-r", path, "-T", "fields", "-e", "dns.flags.response", "-e", "dns.flags.rcode", "-e", "dns.qry.type")
	rcodeNames := map[string]string{"0": "NOERROR", "2": "SERVFAIL", "3": "NXDOMAIN", "5": "REFUSED"}
	typeNames := map[string]string{"1": "A", "28": "AAAA"}
	c := smokeCounts{rcodes: map[string]int{}, qtypes: map[string]int{}}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(l, "\t")
		if len(f) != 3 {
			t.Fatalf("tshark line %q", l)
		}
		switch f[0] {
		case "0":
			c.queries++
			c.qtypes[typeNames[f[2]]]++
		case "1":
			c.responses++
			name, ok := rcodeNames[f[1]]
			if !ok {
				name = "rcode" + f[1]
			}
			c.rcodes[name]++
		default:
			t.Fatalf("tshark line %q", l)
		}
	}
	return c
}
