package agent_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/pano-observability/pano/internal/testenv"
)

// TestMetricsEndpoint scrapes the agent's /metrics after a known number
// of frames crossed a captured veth pair and checks the self-metrics.
func TestMetricsEndpoint(t *testing.T) {
	testenv.RequireRoot(t)
	prefix := randomPrefix()
	ra := startAgent(t, map[string]string{"INTERFACES": prefix + "*", "METRICS_ADDR": "127.0.0.1:0", "DEDUP_WINDOW": "0", "ATTACH_MODE": "tcx"})
	a, b := addVeth(t, prefix)
	waitFor(t, "both veth ends attached", func() bool { return attached(ra.Attached(), []string{a, b}) })
	const n = 30
	frames := udpFrames(t, a, b, n)
	(&testenv.Netns{HostIf: a}).InjectFrames(t, frames...)
	waitFor(t, "the frames captured", func() bool { return ra.ReaderStats().Packets >= 2*n })
	waitFor(t, "the frames sent to the client", func() bool { return ra.ServerStats().SentPackets >= 2*n })

	resp, err := http.Get("http://" + ra.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	value := func(name string, labels ...string) float64 {
		t.Helper()
		f, ok := families[name]
		if !ok {
			t.Errorf("metric %s missing", name)
			return -1
		}
	next:
		for _, m := range f.Metric {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.Label {
					if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
		t.Errorf("metric %s%v missing", name, labels)
		return -1
	}
	frameBytes := 0
	for _, f := range frames {
		frameBytes += len(f)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"pano_agent_packets_captured_total", nil, 2 * n},
		{"pano_agent_packets_captured_total", []string{"stream", "0"}, 2 * n},
		{"pano_agent_streams", nil, 1},
		{"pano_agent_pcap_over_tcp_packets_sent_total", []string{"stream", "0"}, 2 * n},
		{"pano_agent_packets_dropped_total", []string{"reason", "ring_buffer_full", "stream", "0"}, 0},
		{"pano_agent_captured_bytes_total", nil, float64(2 * frameBytes)},
		{"pano_agent_packets_matched_total", nil, 2 * n},
		{"pano_agent_packets_dropped_total", []string{"reason", "ring_buffer_full"}, 0},
		{"pano_agent_packets_dropped_total", []string{"reason", "client_queue_full"}, 0},
		{"pano_agent_packets_deduplicated_total", nil, 0},
		{"pano_agent_interfaces_attached", []string{"mode", "tcx"}, 2},
		{"pano_agent_interfaces_attached", []string{"mode", "tc"}, 0},
		{"pano_agent_ring_buffer_size_bytes", nil, 16 << 20},
		{"pano_agent_pcap_over_tcp_packets_sent_total", nil, 2 * n},
		{"pano_agent_pcap_over_tcp_clients_connected", nil, 1},
	} {
		if got := value(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if f := families["pano_agent_pcap_over_tcp_client_packets_sent_total"]; f == nil || len(f.Metric) != 1 || f.Metric[0].Counter.GetValue() != 2*n {
		t.Errorf("per-client sent packets: %v", f)
	}
	if v := value("pano_agent_ring_buffer_used_bytes"); v < 0 || v > 16<<20 {
		t.Errorf("ring buffer fill %v", v)
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("content type %q", resp.Header.Get("Content-Type"))
	}
}
