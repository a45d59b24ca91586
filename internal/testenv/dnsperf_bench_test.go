package testenv

import (
	"context"
	"testing"
	"time"
)

// BenchmarkDNSPerfUnbound measures what the harness itself can push:
// dnsperf against a single-threaded unbound, across the veth from the
// root namespace and, side by side in the same iteration, from inside
// the namespace (no veth crossing). Each iteration is two bounded 2 s
// runs; run it with -benchtime=1x.
func BenchmarkDNSPerfUnbound(b *testing.B) {
	ns := NewNetns(b)
	u := StartUnbound(b, ns, UnboundOptions{})
	qf := u.WriteQueryFile(b, QueryMix{Queries: 10000, NXShare: 0.2, ServfailShare: 0.05, AAAAShare: 0.3})
	var veth, inside, lost float64
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		rv := RunDNSPerf(ctx, b, DNSPerfOptions{Server: u.Addr, QueryFile: qf, Duration: 2 * time.Second})
		ri := RunDNSPerf(ctx, b, DNSPerfOptions{Server: u.Addr, QueryFile: qf, Duration: 2 * time.Second, Netns: ns})
		cancel()
		veth += rv.QPS
		inside += ri.QPS
		lost += float64(rv.Lost + ri.Lost)
	}
	n := float64(b.N)
	b.ReportMetric(veth/n, "veth-qps")
	b.ReportMetric(inside/n, "netns-qps")
	b.ReportMetric(veth/inside, "veth/netns")
	b.ReportMetric(lost/n, "lost/op")
}
