package agent_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pano-observability/pano/internal/testenv"
)

// TestCaptureMatchesTcpdump runs dnsperf against unbound across a veth
// while the agent and tcpdump capture the host end: the PCAP-over-TCP
// stream must hold exactly the packets tcpdump wrote, byte for byte, with
// timestamps that agree, and the agent must count no drop.
func TestCaptureMatchesTcpdump(t *testing.T) {
	for _, mode := range []string{"tcx", "tc"} {
		t.Run(mode, func(t *testing.T) {
			testenv.RequireRoot(t)
			// tcpdump is the reference, and on a busy machine it is the
			// one that drops (its socket buffer fills): then the run proves
			// nothing, and is repeated at a lower rate.
			for _, qps := range []int{15000, 5000, 2000} {
				if compareWithTcpdump(t, mode, qps) {
					return
				}
			}
			t.Fatal("tcpdump dropped packets at every rate tried: no reference to compare with")
		})
	}
}

// compareWithTcpdump runs one comparison; it returns false when tcpdump
// dropped packets, so that there is nothing to compare with.
func compareWithTcpdump(t *testing.T, mode string, qps int) bool {
	ns := testenv.NewNetns(t)
	u := testenv.StartUnbound(t, ns, testenv.UnboundOptions{})
	queries := u.WriteQueryFile(t, testenv.QueryMix{Queries: 5000, NXShare: 0.2, AAAAShare: 0.3, Seed: 4})

	ra := startAgent(t, map[string]string{
		"INTERFACES":  ns.HostIf,
		"ATTACH_MODE": mode,
		"PCA_FILTER":  "udp,53;tcp,53",
	}, ns.HostIf)
	if got := ra.Attached()[0].Mode; string(got) != mode {
		t.Fatalf("attached in mode %s, want %s", got, mode)
	}
	td := testenv.StartTcpdump(t, nil, ns.HostIf, "udp port 53 or tcp port 53")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// UDP over IPv4 and IPv6, then DNS over TCP (handshakes,
	// segments, FINs). The rate stays where tcpdump (the reference)
	// drops nothing on a busy machine; make bench-capture goes
	// faster.
	for _, run := range []testenv.DNSPerfOptions{
		{Server: u.Addr, QueryFile: queries, MaxQueries: 20000, QPS: qps, Timeout: 2 * time.Second},
		{Server: u.Addr6, QueryFile: queries, MaxQueries: 5000, QPS: qps, Timeout: 2 * time.Second},
		{Server: u.Addr, QueryFile: queries, MaxQueries: 2000, Timeout: 2 * time.Second, Clients: 4, ExtraArgs: []string{"-m", "tcp"}},
	} {
		rep := testenv.RunDNSPerf(ctx, t, run)
		if rep.Completed == 0 {
			t.Fatalf("dnsperf completed no query:\n%s", rep.Output)
		}
		t.Logf("dnsperf %s %v: %d sent, %d completed, %.0f qps", run.Server, run.ExtraArgs, rep.Sent, rep.Completed, rep.QPS)
	}

	pcapPath, tdStats := td.Stop(t)
	got := ra.stop(t)
	want := readPcap(t, pcapPath)
	if tdStats.DroppedByKernel != 0 {
		t.Logf("at %d queries/s tcpdump's kernel dropped %d packets: no reference to compare with", qps, tdStats.DroppedByKernel)
		return false
	}
	if ra.header.LinkType != 1 || ra.header.Nanosecond {
		t.Errorf("stream header %+v: want Ethernet, microseconds", ra.header)
	}

	cmp := compareCaptures(got, want)
	t.Logf("%s: agent %d packets, tcpdump %d (stats %+v); matched %d; timestamp skew mean %v max %v",
		mode, len(got), len(want), tdStats, cmp.matched, cmp.meanSkew(), cmp.maxSkew)
	if len(want) < 2*(20000+5000) {
		t.Errorf("tcpdump saw %d packets, fewer than the %d UDP queries and answers sent", len(want), 2*25000)
	}
	if len(cmp.onlyA) != 0 || len(cmp.onlyB) != 0 {
		t.Errorf("%d packets only in the agent's stream, %d only in tcpdump's file; first: %s",
			len(cmp.onlyA), len(cmp.onlyB), firstOf(cmp.onlyA, cmp.onlyB))
	}
	if cmp.lengthMismatch != 0 {
		t.Errorf("%d packets with different lengths", cmp.lengthMismatch)
	}
	// Both clocks are the wall clock; the stamps are taken at
	// different points of the stack (TC hook vs packet tap), and the
	// ingress tap stamps on enqueue to the backlog.
	// A wrong clock offset would show as a constant difference: the
	// mean catches it, the maximum allows for a stalled softirq.
	if cmp.meanSkew() > time.Millisecond || cmp.maxSkew > 50*time.Millisecond {
		t.Errorf("timestamps differ from tcpdump's by %v on average, %v at most", cmp.meanSkew(), cmp.maxSkew)
	}

	k, err := ra.Counters()
	if err != nil {
		t.Fatal(err)
	}
	srv := ra.ServerStats()
	rs := ra.ReaderStats()
	t.Logf("kernel %+v, reader %+v, server dropped queue_full %d disconnected %d", k, rs, srv.DroppedQueueFull, srv.DroppedDisconnected)
	if k.RingBufferFull != 0 || srv.DroppedQueueFull != 0 || srv.DroppedDisconnected != 0 || rs.Duplicates != 0 {
		t.Errorf("agent dropped packets: ring buffer full %d, client queue full %d, disconnected %d, duplicates %d",
			k.RingBufferFull, srv.DroppedQueueFull, srv.DroppedDisconnected, rs.Duplicates)
	}
	if k.Matched != uint64(len(got)) {
		t.Errorf("kernel matched %d packets, stream holds %d", k.Matched, len(got))
	}
	return true
}

func firstOf(a, b []packet) string {
	for _, l := range [][]packet{a, b} {
		if len(l) > 0 {
			return fmt.Sprintf("%d bytes at %v: % x", len(l[0].data), l[0].ci.Timestamp, l[0].data[:min(len(l[0].data), 64)])
		}
	}
	return "none"
}
