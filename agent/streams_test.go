package agent_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	dto "github.com/prometheus/client_model/go"

	"github.com/pano-observability/pano/internal/flowhashtest"
	"github.com/pano-observability/pano/internal/testenv"
)

// TestStreamsSplitFlows runs the agent with PCA_STREAMS=4 while thousands
// of DNS flows (IPv4 and IPv6, UDP and TCP, one source port each, some
// datagrams fragmented) cross a veth that tcpdump captures too. The four
// streams together must hold exactly tcpdump's packets (so each packet is
// in exactly one stream), both directions of every flow and every
// fragment of a datagram must be in one stream, the stream must be the
// one the Go reference of the hash names, and the streams' shares must
// be within 15% of each other.
func TestStreamsSplitFlows(t *testing.T) {
	testenv.RequireRoot(t)
	// tcpdump (the reference) is the one that drops on a busy machine:
	// then nothing can be compared, and the run is repeated slower.
	for _, workers := range []int{32, 8} {
		if splitFlows(t, workers) {
			return
		}
	}
	t.Fatal("tcpdump dropped packets at every rate tried: no reference to compare with")
}

func splitFlows(t *testing.T, workers int) bool {
	const streams = 4
	ns := testenv.NewNetns(t)
	u := testenv.StartUnbound(t, ns, testenv.UnboundOptions{})
	queries := u.WriteQueryFile(t, testenv.QueryMix{Queries: 2000, NXShare: 0.2, AAAAShare: 0.3, Seed: 10})
	ra := startAgent(t, map[string]string{
		"INTERFACES":  ns.HostIf,
		"PCA_FILTER":  "udp,53;tcp,53",
		"PCA_STREAMS": strconv.Itoa(streams),
	}, ns.HostIf)
	if n := len(ra.PCAPAddrs()); n != streams {
		t.Fatalf("%d stream listeners, want %d", n, streams)
	}
	// Later IPv4 fragments and IPv6 fragments have no ports for tcpdump's
	// "udp port 53"; the agent captures them when their first fragment
	// matched, which is the case for every fragment sent here.
	td := testenv.StartTcpdump(t, nil, ns.HostIf,
		"udp port 53 or tcp port 53 or (ip and ip[6:2] & 0x1fff != 0) or (ip6 and ip6[6] == 44)")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// One query per socket: every query is a flow of its own.
	const flows = 20000
	answered := manyFlows(ctx, t, workers, []netip.AddrPort{u.Addr, u.Addr6}, flows, func(i int) string { return u.Name(i % u.Names) })
	fragmented := bigDatagrams(ctx, t, []netip.AddrPort{u.Addr, u.Addr6}, 300)
	t.Logf("%d single-query flows answered, %d fragmented datagrams sent", answered, fragmented)
	if answered < flows*9/10 {
		t.Fatalf("only %d of %d queries answered", answered, flows)
	}
	// Real load tools too: dnsperf over UDP (200 clients, IPv4 and IPv6)
	// and over TCP (handshakes, segments, FINs). Their flows are few and
	// long, so they are kept a small part of the traffic: the shares
	// below are those of a flow hash over many flows.
	for _, run := range []testenv.DNSPerfOptions{
		{Server: u.Addr, QueryFile: queries, MaxQueries: 1000, Clients: 200, QPS: 5000, Timeout: 2 * time.Second},
		{Server: u.Addr6, QueryFile: queries, MaxQueries: 500, Clients: 100, QPS: 5000, Timeout: 2 * time.Second},
		{Server: u.Addr, QueryFile: queries, MaxQueries: 100, Clients: 20, Timeout: 2 * time.Second, ExtraArgs: []string{"-m", "tcp"}},
	} {
		rep := testenv.RunDNSPerf(ctx, t, run)
		if rep.Completed == 0 {
			t.Fatalf("dnsperf completed no query:\n%s", rep.Output)
		}
	}

	pcapPath, tdStats := td.Stop(t)
	byStream := ra.stopStreams(t)
	if tdStats.DroppedByKernel != 0 {
		t.Logf("with %d senders tcpdump's kernel dropped %d packets: no reference to compare with", workers, tdStats.DroppedByKernel)
		return false
	}
	want := readPcap(t, pcapPath)

	// Every packet in exactly one stream: the union of the streams is
	// tcpdump's multiset of packets, no more (a copy in two streams) and
	// no less.
	var union []packet
	counts := make([]int, streams)
	for s, ps := range byStream {
		union = append(union, ps...)
		counts[s] = len(ps)
	}
	cmp := compareCaptures(union, want)
	t.Logf("streams %v (%d packets), tcpdump %d", counts, len(union), len(want))
	if len(cmp.onlyA) != 0 || len(cmp.onlyB) != 0 || cmp.lengthMismatch != 0 {
		t.Errorf("%d packets only in the streams, %d only in tcpdump's file, %d lengths differ; first: %s",
			len(cmp.onlyA), len(cmp.onlyB), cmp.lengthMismatch, firstOf(cmp.onlyA, cmp.onlyB))
	}

	// Both directions of a flow, and all fragments of a datagram, in one
	// stream: the one the Go reference of the hash names.
	flowStream := map[string]int{}
	flowDirs := map[string]map[string]bool{}
	// Fragments by datagram identity (addresses, protocol, IP ID). An
	// IPv4 ID can come round again for a later datagram, so each later
	// fragment belongs to the latest first fragment before it.
	type fragment struct {
		at     time.Time
		first  bool
		stream int
	}
	frags := map[string][]fragment{}
	firsts, laters := 0, 0
	wrongStream, unparsed := 0, 0
	for s, ps := range byStream {
		for _, p := range ps {
			pi, ok := parseFlow(p.data)
			if !ok {
				unparsed++
				continue
			}
			if pi.fragment != 0 {
				frags[pi.fragKey] = append(frags[pi.fragKey], fragment{p.ci.Timestamp, pi.fragment == 1, s})
			}
			if pi.fragment == 2 {
				laters++
				continue
			}
			if pi.fragment == 1 {
				firsts++
			}
			key := pi.key()
			if prev, seen := flowStream[key]; seen && prev != s {
				t.Errorf("flow %s in streams %d and %d", key, prev, s)
			}
			flowStream[key] = s
			if flowDirs[key] == nil {
				flowDirs[key] = map[string]bool{}
			}
			flowDirs[key][pi.flow.Src.String()] = true
			if ref := flowhashtest.Stream(pi.flow, streams); ref != s {
				wrongStream++
			}
		}
	}
	if unparsed != 0 {
		t.Errorf("%d captured packets are not IP: the filter admits only DNS", unparsed)
	}
	if wrongStream != 0 {
		t.Errorf("%d packets in another stream than the Go reference of the hash names", wrongStream)
	}
	for key, fs := range frags {
		sort.SliceStable(fs, func(i, j int) bool { return fs[i].at.Before(fs[j].at) })
		first := -1
		for _, f := range fs {
			switch {
			case f.first:
				first = f.stream
			case first < 0:
				t.Errorf("later fragment of %s captured before any first fragment", key)
			case f.stream != first:
				t.Errorf("later fragment of %s in stream %d, its first fragment in %d", key, f.stream, first)
			}
		}
	}
	bothWays := 0
	for _, dirs := range flowDirs {
		if len(dirs) == 2 {
			bothWays++
		}
	}
	t.Logf("%d flows, %d seen in both directions, %d fragmented datagrams (%d later fragments)", len(flowStream), bothWays, firsts, laters)
	flowCounts := make([]int, streams)
	for _, s := range flowStream {
		flowCounts[s]++
	}
	t.Logf("flows by stream %v", flowCounts)
	// Sockets opened one after another may reuse a source port, and a
	// reused port is the same flow: fewer flows than queries.
	if bothWays < flows*3/4 {
		t.Errorf("only %d flows seen in both directions", bothWays)
	}
	if firsts != fragmented || laters < fragmented {
		t.Errorf("%d first fragments and %d later ones captured, want %d datagrams of 2 or more fragments", firsts, laters, fragmented)
	}

	// Even shares: the largest stream carries at most 15% more than the
	// smallest.
	lo, hi := counts[0], counts[0]
	for _, c := range counts {
		lo, hi = min(lo, c), max(hi, c)
	}
	t.Logf("stream shares: largest/smallest = %.3f", float64(hi)/float64(lo))
	if lo == 0 || float64(hi) > 1.15*float64(lo) {
		t.Errorf("uneven streams %v: largest/smallest %.3f, want at most 1.15", counts, float64(hi)/float64(lo))
	}

	// Counters: nothing lost, and the per-stream metrics agree with what
	// each stream's client received.
	k, err := ra.Counters()
	if err != nil {
		t.Fatal(err)
	}
	srv := ra.ServerStats()
	if k.RingBufferFull != 0 || srv.DroppedQueueFull != 0 || srv.DroppedDisconnected != 0 {
		t.Errorf("agent dropped packets: ring buffer full %d, client queue full %d, disconnected %d",
			k.RingBufferFull, srv.DroppedQueueFull, srv.DroppedDisconnected)
	}
	if k.Matched != uint64(len(union)) {
		t.Errorf("kernel matched %d packets, streams hold %d", k.Matched, len(union))
	}
	families, err := ra.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for s, c := range counts {
		for _, name := range []string{"pano_agent_packets_captured_total", "pano_agent_pcap_over_tcp_packets_sent_total"} {
			if got := streamValue(families, name, s); got != float64(c) {
				t.Errorf("%s{stream=%d} = %v, the stream's client received %d", name, s, got, c)
			}
		}
		if st := ra.StreamStats(s); st.SentPackets != uint64(c) || st.Accepted != 1 {
			t.Errorf("stream %d server stats %+v, client received %d", s, st, c)
		}
	}
	return true
}

// streamValue finds a counter's value for one stream in gathered metrics.
func streamValue(families []*dto.MetricFamily, name string, stream int) float64 {
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if l.GetName() == "stream" && l.GetValue() == strconv.Itoa(stream) {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

// manyFlows sends n queries, each from a new socket (so a new source
// port), alternating between servers, with the given number of senders
// at once. It returns how many were answered.
func manyFlows(ctx context.Context, t *testing.T, workers int, servers []netip.AddrPort, n int, name func(int) string) int {
	t.Helper()
	var next, answered atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				qtype := layers.DNSTypeA
				if i%3 == 0 {
					qtype = layers.DNSTypeAAAA
				}
				if _, _, err := testenv.DNSQuery(ctx, servers[i%len(servers)], name(i), qtype); err == nil {
					answered.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return int(answered.Load())
}

// bigDatagrams sends n UDP datagrams of 3000 bytes to port 53, each from
// its own socket, alternating between servers: over a 1500-byte MTU each
// leaves as fragments. It returns how many were sent.
func bigDatagrams(ctx context.Context, t *testing.T, servers []netip.AddrPort, n int) int {
	t.Helper()
	payload := make([]byte, 3000)
	binary.BigEndian.PutUint16(payload[4:], 1) // one question (of garbage): the resolver may answer FORMERR
	sent := 0
	for i := range n {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "udp", servers[i%len(servers)].String())
		if err != nil {
			t.Fatal(err)
		}
		binary.BigEndian.PutUint16(payload, uint16(i))
		if _, err := conn.Write(payload); err != nil {
			t.Fatalf("send a fragmented datagram: %v", err)
		}
		sent++
		// Wait briefly for an answer so that it does not meet a closed
		// port (and an ICMP error).
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, _ = conn.Read(make([]byte, 512))
		conn.Close()
	}
	return sent
}

// packetFlow is what the test reads from a captured frame.
type packetFlow struct {
	flow     flowhashtest.Flow
	fragment int    // 0 none, 1 first, 2 later
	fragKey  string // addresses, protocol and IP ID of a fragment
}

// key names the conversation the same way in both directions.
func (p packetFlow) key() string {
	a := netip.AddrPortFrom(p.flow.Src, p.flow.SrcPort).String()
	b := netip.AddrPortFrom(p.flow.Dst, p.flow.DstPort).String()
	if a > b {
		a, b = b, a
	}
	return fmt.Sprintf("%d %s %s", p.flow.Proto, a, b)
}

// parseFlow reads the flow of an untagged Ethernet frame, written
// independently of the classifier's parser (no extension headers but the
// fragment header are sent here).
func parseFlow(f []byte) (packetFlow, bool) {
	var p packetFlow
	if len(f) < 14 {
		return p, false
	}
	ip := f[14:]
	var l4 []byte
	var id uint32
	switch binary.BigEndian.Uint16(f[12:]) {
	case 0x0800:
		if len(ip) < 20 {
			return p, false
		}
		ihl := int(ip[0]&0x0f) * 4
		p.flow.Src, _ = netip.AddrFromSlice(ip[12:16])
		p.flow.Dst, _ = netip.AddrFromSlice(ip[16:20])
		p.flow.Proto = ip[9]
		frag := binary.BigEndian.Uint16(ip[6:])
		id = uint32(binary.BigEndian.Uint16(ip[4:]))
		switch {
		case frag&0x1fff != 0:
			p.fragment = 2
		case frag&0x2000 != 0:
			p.fragment = 1
		}
		l4 = ip[ihl:]
	case 0x86dd:
		if len(ip) < 40 {
			return p, false
		}
		p.flow.Src, _ = netip.AddrFromSlice(ip[8:24])
		p.flow.Dst, _ = netip.AddrFromSlice(ip[24:40])
		p.flow.Proto = ip[6]
		l4 = ip[40:]
		if p.flow.Proto == 44 && len(l4) >= 8 {
			p.flow.Proto = l4[0]
			id = binary.BigEndian.Uint32(l4[4:])
			if binary.BigEndian.Uint16(l4[2:])&0xfff8 != 0 {
				p.fragment = 2
			} else {
				p.fragment = 1
			}
			l4 = l4[8:]
		}
	default:
		return p, false
	}
	if p.fragment != 0 {
		p.fragKey = fmt.Sprintf("%s %s %d %d", p.flow.Src, p.flow.Dst, p.flow.Proto, id)
	}
	if p.fragment != 2 && (p.flow.Proto == 6 || p.flow.Proto == 17) && len(l4) >= 4 {
		p.flow.SrcPort = binary.BigEndian.Uint16(l4[0:])
		p.flow.DstPort = binary.BigEndian.Uint16(l4[2:])
	}
	return p, true
}
