package agent_test

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/pano-observability/pano/internal/testenv"
)

// BenchmarkStreamsGOMAXPROCS (make bench-gomaxprocs) floods a captured
// veth at rising rates with the agent split into 4 streams, one client
// each, once with GOMAXPROCS=1 (the agent's default) and once with one
// thread per CPU, and reports for each the highest rate captured with
// under 0.1% loss and the agent's CPU per packet. The flows (64 source
// ports) spread over all four streams. It measures; it asserts nothing
// about speed.
func BenchmarkStreamsGOMAXPROCS(b *testing.B) {
	testenv.RequireRoot(b)
	const streams = 4
	for _, procs := range []int{1, runtime.NumCPU()} {
		b.Run("GOMAXPROCS="+strconv.Itoa(procs), func(b *testing.B) {
			for range b.N {
				ns := testenv.NewNetns(b)
				ag := startAgentProcess(b, ns.HostIf, streams, "GOMAXPROCS="+strconv.Itoa(procs))
				var out strings.Builder
				fmt.Fprintf(&out, "\nGOMAXPROCS=%d, PCA_STREAMS=%d (a client per stream), UDP flood of 64 flows into the captured veth, 1 s per step; %d CPUs shared with the sender and the clients\n",
					procs, streams, runtime.NumCPU())
				ceiling := floodRamp(b, ag, newFlooder(b, ns), &out)
				fmt.Fprintf(&out, "\nceiling at <0.1%% loss: at least %.0f packets/s\n", ceiling)
				m := ag.scrape(b)
				if m["pano_agent_streams"] != streams || m["pano_agent_pcap_over_tcp_clients_connected"] != streams {
					b.Fatalf("%v streams and %v clients, want %d of each", m["pano_agent_streams"], m["pano_agent_pcap_over_tcp_clients_connected"], streams)
				}
				b.ReportMetric(ceiling, "ceiling-pkt/s")
				b.Log(out.String())
				fmt.Print(out.String())
			}
		})
	}
}
