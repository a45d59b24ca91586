package e2etest

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/pano-observability/pano/internal/testenv"
)

// The flood's defaults; PANO_FLOOD_QPS and PANO_FLOOD_DURATION override
// them.
const (
	floodQPS      = 100000
	floodDuration = 30 * time.Second
)

// floodSockets is the number of client sockets (so of connections in
// Zeek) the flood comes from, as a forwarder's few upstream sockets.
const floodSockets = 8

// BenchmarkZeekUnansweredFlood measures Zeek's memory under a flood of DNS
// queries that are never answered: floodDNS sends PANO_FLOOD_QPS
// queries/s for PANO_FLOOD_DURATION to an address in a namespace that drops them
// (nftables), the agent captures them on the host side of the veth and
// Zeek, started by zeek-package's entrypoint with its production settings
// (no test redefs), reads the stream. Each query stays pending in Zeek's
// DNS state until its connection expires (udp_inactivity_timeout, 1 min
// without a packet, which a flood on the same sockets never reaches) or
// until a per-connection limit flushes it (DNS::max_pending_msgs per
// transaction ID, DNS::max_pending_query_ids IDs; see
// zeek-package/scripts/dns-options.zeek). It reports Zeek's peak RSS
// (VmHWM), its RSS before the flood, the queries that reached Zeek (the
// agent's PCAP-over-TCP packets sent) and those the agent dropped, and
// the RSS growth per query that reached Zeek.
//
//	sudo go test -run '^$' -bench BenchmarkZeekUnansweredFlood -benchtime 1x ./internal/e2etest/
func BenchmarkZeekUnansweredFlood(b *testing.B) {
	testenv.RequireRoot(b)
	testenv.RequireProgram(b, "nft", "nftables")
	qps, dur, err := floodConfig()
	if err != nil {
		b.Fatal(err)
	}
	img := testenv.CachedZeekImage(b)
	agentBin := build(b, binDir, "agent/cmd/pano-agent")

	ns := testenv.NewNetns(b)
	dropAllDNS(b, ns)
	ag := startAgent(b, agentBin, []string{ns.HostIf}, 1, "udp,53;tcp,53")
	z := testenv.StartZeek(b, img, testenv.ZeekOptions{Port: ag.basePort})
	c := &chain{ag: ag, zeek: z}
	c.waitZeekConnected(b, 1)
	// Zeek's scripts are loaded once it reads the stream: the baseline.
	time.Sleep(2 * time.Second)
	rss0, _, err := procMemory(z.Pid())
	if err != nil {
		b.Fatal(err)
	}

	// RSS once a second during the flood, to see it grow.
	var (
		mu      sync.Mutex
		samples []string
	)
	ctx, cancel := context.WithTimeout(context.Background(), dur+2*time.Minute)
	defer cancel()
	sampling, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t0 := time.Now()
		for sampling.Err() == nil {
			if rss, _, err := procMemory(z.Pid()); err == nil {
				mu.Lock()
				samples = append(samples, fmt.Sprintf("%ds %.0f MiB", int(time.Since(t0).Seconds()), float64(rss)/(1<<20)))
				mu.Unlock()
			}
			select {
			case <-sampling.Done():
			case <-time.After(time.Second):
			}
		}
	}()

	sent0, drops0 := agentCounters(b, ag)
	sent, err := floodDNS(ctx, netip.AddrPortFrom(ns.PeerIP, 53), qps, dur, floodSockets)
	if err != nil {
		b.Fatal(err)
	}
	// Let the agent's queue drain into Zeek before reading the peak.
	time.Sleep(5 * time.Second)
	stopSampling()
	<-sampled
	c.zeekAlive(b)
	rss, hwm, err := procMemory(z.Pid())
	if err != nil {
		b.Fatal(err)
	}
	sent1, drops1 := agentCounters(b, ag)
	toZeek, dropped := sent1-sent0, drops1-drops0

	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(hwm)/(1<<20), "peak-rss-MiB")
	b.ReportMetric(float64(rss0)/(1<<20), "start-rss-MiB")
	b.ReportMetric(float64(sent)/dur.Seconds(), "sent-queries/s")
	b.ReportMetric(toZeek, "queries-to-zeek")
	b.ReportMetric(dropped, "agent-drops")
	if toZeek > 0 {
		b.ReportMetric(float64(hwm-rss0)/toZeek, "rss-bytes/query")
	}
	mu.Lock()
	b.Logf("sent %d queries in %v over %d sockets; the agent sent %v packets to Zeek and dropped %v; Zeek's RSS %.0f MiB before, %.0f MiB after, peak %.0f MiB; RSS each second: %s",
		sent, dur, floodSockets, toZeek, dropped, float64(rss0)/(1<<20), float64(rss)/(1<<20), float64(hwm)/(1<<20), strings.Join(samples, ", "))
	mu.Unlock()
}

func floodConfig() (int, time.Duration, error) {
	qps, dur := floodQPS, floodDuration
	if v := os.Getenv("PANO_FLOOD_QPS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return 0, 0, fmt.Errorf("PANO_FLOOD_QPS=%q: want queries/s", v)
		}
		qps = n
	}
	if v := os.Getenv("PANO_FLOOD_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			return 0, 0, fmt.Errorf("PANO_FLOOD_DURATION=%q: want a duration of at least 1s", v)
		}
		dur = d
	}
	return qps, dur, nil
}

// dropAllDNS makes the namespace swallow every DNS query: no answer and no
// ICMP error, as a server that is down behind a firewall.
func dropAllDNS(b *testing.B, ns *testenv.Netns) {
	b.Helper()
	f := filepath.Join(b.TempDir(), "drop.nft")
	rules := "table inet pano_flood {\n  chain in { type filter hook input priority 0; policy accept; udp dport 53 drop; }\n}\n"
	if err := os.WriteFile(f, []byte(rules), 0o644); err != nil {
		b.Fatal(err)
	}
	ns.Exec(b, "nft", "-f", f)
}

// agentCounters are the agent's PCAP-over-TCP packets sent and packets
// dropped so far.
func agentCounters(b *testing.B, ag *agent) (sent, dropped float64) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := scrape(ctx, "http://"+ag.metricsAddr+"/metrics")
	if err != nil {
		b.Fatal(err)
	}
	return m["pano_agent_pcap_over_tcp_packets_sent_total"], m["pano_agent_packets_dropped_total"]
}

// procMemory is a process's resident set size and its peak (VmRSS and
// VmHWM), in bytes.
func procMemory(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status %s: %q", pid, k, v)
		}
		if k == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	return rss, hwm, sc.Err()
}

// floodDNS sends qps DNS queries per second for dur to dst from sockets
// UDP sockets, each numbering its queries 0, 1, ... (mod 65536), and
// returns how many it sent. dnsperf cannot be the sender here: it keeps
// every unanswered query for its timeout and sends only a few thousand
// per second when none is answered.
func floodDNS(ctx context.Context, dst netip.AddrPort, qps int, dur time.Duration, sockets int) (int, error) {
	conns := make([]*net.UDPConn, sockets)
	for i := range conns {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return 0, fmt.Errorf("flood socket: %w", err)
		}
		defer c.Close()
		conns[i] = c
	}
	msgs := make([][]byte, 1000)
	for i := range msgs {
		q := layers.DNS{RD: true, QDCount: 1, Questions: []layers.DNSQuestion{{
			Name: []byte(fmt.Sprintf("host%d.flood.test", i)), Type: layers.DNSTypeA, Class: layers.DNSClassIN}}}
		buf := gopacket.NewSerializeBuffer()
		if err := q.SerializeTo(buf, gopacket.SerializeOptions{FixLengths: true}); err != nil {
			return 0, err
		}
		msgs[i] = buf.Bytes()
	}
	ids := make([]uint16, sockets)
	start := time.Now()
	sent := 0
	for ctx.Err() == nil {
		elapsed := time.Since(start)
		if elapsed >= dur {
			break
		}
		// Catch up with the schedule, then sleep a millisecond.
		for due := int(elapsed.Seconds() * float64(qps)); sent < due; sent++ {
			s := sent % sockets
			m := msgs[sent%len(msgs)]
			binary.BigEndian.PutUint16(m[0:2], ids[s])
			ids[s]++
			if _, err := conns[s].Write(m); err != nil {
				return sent, fmt.Errorf("flood send: %w", err)
			}
		}
		time.Sleep(time.Millisecond)
	}
	return sent, ctx.Err()
}
