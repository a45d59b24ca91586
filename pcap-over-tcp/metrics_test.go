package pcapovertcp

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pano-observability/pano/internal/testenv"
)

func TestCollector(t *testing.T) {
	promtool := testenv.RequireProgram(t, "promtool", "prometheus")
	s := startServer(t, ServerConfig{MaxClients: 1})
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(s, "pano"))

	_, conn, err := Dial(context.Background(), s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go io.Copy(io.Discard, conn)
	waitClients(t, s, 1)
	expectRejected(t, s.Addr().String())

	pkts := builtPackets(t, 10)
	sent := 0
	for _, p := range pkts {
		s.WritePacket(p.ci, p.data)
		sent += RecordHeaderLen + len(p.data)
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	want := fmt.Sprintf(`
# HELP pano_pcap_over_tcp_packets_written_total Packets handed to the server by the capture.
# TYPE pano_pcap_over_tcp_packets_written_total counter
pano_pcap_over_tcp_packets_written_total 10
# HELP pano_pcap_over_tcp_packets_sent_total Packet records written to client sockets, all clients.
# TYPE pano_pcap_over_tcp_packets_sent_total counter
pano_pcap_over_tcp_packets_sent_total 10
# HELP pano_pcap_over_tcp_bytes_sent_total Record bytes written to client sockets, all clients.
# TYPE pano_pcap_over_tcp_bytes_sent_total counter
pano_pcap_over_tcp_bytes_sent_total %d
# HELP pano_pcap_over_tcp_packets_dropped_total Packets not delivered to a client, by reason (queue_full, disconnected).
# TYPE pano_pcap_over_tcp_packets_dropped_total counter
pano_pcap_over_tcp_packets_dropped_total{reason="disconnected"} 0
pano_pcap_over_tcp_packets_dropped_total{reason="queue_full"} 0
# HELP pano_pcap_over_tcp_connections_accepted_total Client connections accepted.
# TYPE pano_pcap_over_tcp_connections_accepted_total counter
pano_pcap_over_tcp_connections_accepted_total 1
# HELP pano_pcap_over_tcp_connections_rejected_total Client connections refused, by reason (not_allowed, max_clients).
# TYPE pano_pcap_over_tcp_connections_rejected_total counter
pano_pcap_over_tcp_connections_rejected_total{reason="max_clients"} 1
pano_pcap_over_tcp_connections_rejected_total{reason="not_allowed"} 0
# HELP pano_pcap_over_tcp_clients_connected Clients connected now.
# TYPE pano_pcap_over_tcp_clients_connected gauge
pano_pcap_over_tcp_clients_connected 1
`, sent)
	// Scrape over HTTP, as Prometheus does.
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	have := map[string]bool{}
	for _, line := range strings.Split(string(body), "\n") {
		have[line] = true
	}
	for _, line := range strings.Split(strings.TrimSpace(want), "\n") {
		if !have[line] {
			t.Errorf("exposition lacks %q", line)
		}
	}
	local := conn.LocalAddr().String()
	if line := fmt.Sprintf(`pano_pcap_over_tcp_client_packets_sent_total{client="1",remote=%q} 10`, local); !have[line] {
		t.Errorf("exposition lacks %q", line)
	}
	if t.Failed() {
		t.Fatalf("exposition:\n%s", body)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s\n%s", err, out, body)
	}
}
