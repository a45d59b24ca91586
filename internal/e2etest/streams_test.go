package e2etest

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/pano-observability/pano/internal/flowhashtest"
	"github.com/pano-observability/pano/internal/testenv"
)

// chainStreams is the number of PCAP-over-TCP streams, so of Zeek
// workers, in TestWholeChainStreams.
const chainStreams = 2

// streamClients is each dnsperf instance's number of sockets. The agent
// splits by flow, and one dnsperf client is one flow: with dnsperf's
// default of one, both instances land in one stream half the time. With
// 2x20 flows a stream gets less than minStreamShare of the load with a
// probability below 1e-7.
const streamClients = 20

// minStreamShare is the share of the records and packets each stream must
// carry for the split to count as one.
const minStreamShare = 0.1

// TestWholeChainStreams is TestWholeChain's steady phase with the capture
// split in two streams: the agent with PCA_STREAMS=2, Zeek started by the
// zeek-package's entrypoint with ZEEK_WORKERS=2 (worker i reads stream i
// and writes worker-i/dns.log), and one shim following worker-*/dns.log. The
// totals must still equal dnsperf's exactly; in addition each stream must
// carry a share of the load, each worker's log only the flows the flow
// hash puts in its stream, and the agent must have dropped nothing in
// either stream.
func TestWholeChainStreams(t *testing.T) {
	testenv.RequireRoot(t)
	for prog, pkg := range map[string]string{"tshark": "tshark", "dnsperf": "dnsperf", "unbound": "unbound"} {
		testenv.RequireProgram(t, prog, pkg)
	}
	dur := loadDuration(t)

	// Servers before the agent, as in TestWholeChain: everything captured
	// is dnsperf's.
	servers := serverPair(t)
	var ifaces []string
	for _, s := range servers {
		s.clients = streamClients
		ifaces = append(ifaces, s.ns.HostIf)
	}
	// Zeek rotates its logs every 10 s instead of hourly, so that each
	// worker's dns.log is rotated a few times under load and the shim's
	// hand-over from a rotated file to the new one is part of the counts.
	c := startChain(t, ifaces, chainStreams, "ZEEK_ROTATION_INTERVAL=10secs")

	t.Run("steady", func(t *testing.T) {
		reports := runPhase(t, c, servers, dur, false)
		for _, p := range c.logs {
			rotated, err := filepath.Glob(filepath.Join(filepath.Dir(p), "dns.[0-9][0-9][0-9][0-9]-*.log"))
			if err != nil || len(rotated) == 0 {
				t.Errorf("%s: no rotated dns.log beside it (%v): the rotation was not exercised", filepath.Dir(p), err)
			}
			t.Logf("%s: %d rotated dns.log files", filepath.Dir(p), len(rotated))
		}
		want := 0
		for _, r := range reports {
			want += r.Completed + r.Lost
		}
		checkStreams(t, c, want)
	})
}

// checkStreams compares each stream's dns.log with the flow hash and the
// agent's per-stream counters (through Prometheus) after a phase in which
// dnsperf sent want queries.
func checkStreams(t *testing.T, c *chain, want int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	records, misplaced := make([]int, len(c.logs)), make([]int, len(c.logs))
	flowsIn := make([]map[string]bool, len(c.logs))
	for i, p := range c.logs {
		flowsIn[i] = map[string]bool{}
		for _, r := range readDNSLog(t, p) {
			records[i]++
			f := recordFlow(t, r)
			flowsIn[i][fmt.Sprintf("%s %s:%d %s:%d", r.Proto, r.OrigH, r.OrigP, r.RespH, r.RespP)] = true
			if s := flowhashtest.Stream(f, len(c.logs)); s != i {
				if misplaced[i] == 0 {
					t.Errorf("%s: record %s (%s:%d -> %s:%d) belongs to stream %d", p, r.UID, r.OrigH, r.OrigP, r.RespH, r.RespP, s)
				}
				misplaced[i]++
			}
		}
	}
	if n := sumInts(records); n != want {
		t.Errorf("dns.log records over all streams %d, dnsperf sent %d queries", n, want)
	}

	if n := scalar(t, c.prom, ctx, `max(pano_agent_streams)`); n != float64(len(c.logs)) {
		t.Errorf("pano_agent_streams %v, want %d", n, len(c.logs))
	}
	captured := vectorBy(t, c.prom, `sum by (stream) (pano_agent_packets_captured_total)`, "stream")
	dropped := vectorBy(t, c.prom, `sum by (stream) (pano_agent_packets_dropped_total)`, "stream")
	// Deep IPv6 packets are counted without a stream (their ports, which
	// the hash needs, are unknown): none are sent here.
	if dr, present := dropped[""]; present {
		if dr != 0 {
			t.Errorf("agent dropped %v packets of no stream", dr)
		}
		delete(dropped, "")
	}
	if len(captured) != len(c.logs) || len(dropped) != len(c.logs) {
		t.Errorf("agent series by stream: captured %v, dropped %v; want streams 0..%d", captured, dropped, len(c.logs)-1)
	}
	totalPackets := sumOf(captured)
	for i := range c.logs {
		s := strconv.Itoa(i)
		pk, dr, ok := captured[s], dropped[s], misplaced[i] == 0
		if !ok {
			t.Errorf("stream %d: %d of %d records are of another stream's flows", i, misplaced[i], records[i])
		}
		// A query and at most one response per record.
		if pk < float64(records[i]) || pk > 2*float64(records[i]) {
			t.Errorf("stream %d: agent captured %v packets for %d dns.log records", i, pk, records[i])
			ok = false
		}
		if float64(records[i]) < minStreamShare*float64(want) || pk < minStreamShare*totalPackets {
			t.Errorf("stream %d carried %d of %d records, %v of %v packets: under %.0f%%",
				i, records[i], want, pk, totalPackets, minStreamShare*100)
			ok = false
		}
		if _, present := dropped[s]; !present || dr != 0 {
			t.Errorf("stream %d: agent dropped %v packets (series present: %v)", i, dr, present)
			ok = false
		}
		t.Logf("%-5v stream %d: %d flows, %d dns.log records (%.1f%%, %d of another stream's flows), %v packets captured (%.1f%%), %v dropped",
			okStr(ok), i, len(flowsIn[i]), records[i], 100*float64(records[i])/float64(max(want, 1)), misplaced[i], pk, 100*pk/max(totalPackets, 1), dr)
	}
}

// recordFlow is the flow a dns.log record's connection is.
func recordFlow(t *testing.T, r dnsRecord) flowhashtest.Flow {
	t.Helper()
	src, err1 := netip.ParseAddr(r.OrigH)
	dst, err2 := netip.ParseAddr(r.RespH)
	if err1 != nil || err2 != nil {
		t.Fatalf("record %s: addresses %q %q", r.UID, r.OrigH, r.RespH)
	}
	proto := map[string]uint8{"udp": 17, "tcp": 6}[r.Proto]
	if proto == 0 {
		t.Fatalf("record %s: proto %q", r.UID, r.Proto)
	}
	return flowhashtest.Flow{Src: src, Dst: dst, SrcPort: r.OrigP, DstPort: r.RespP, Proto: proto}
}

func sumInts(v []int) int {
	n := 0
	for _, x := range v {
		n += x
	}
	return n
}
