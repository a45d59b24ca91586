package pcapovertcp

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// collector exposes a Server's Stats at scrape time, so the packet path
// touches no Prometheus object.
type collector struct {
	s *Server

	written, writtenBytes, truncated *prometheus.Desc
	sent, sentBytes, dropped, writes *prometheus.Desc
	accepted, rejected, connected    *prometheus.Desc

	clientSent, clientSentBytes, clientDropped *prometheus.Desc
	clientQueued, clientQueueCap               *prometheus.Desc
}

// NewCollector returns a Prometheus collector for s. Metric names are
// namespace_pcap_over_tcp_*; per-client series carry the labels client
// (a connection number) and remote (address:port).
func NewCollector(s *Server, namespace string) prometheus.Collector {
	name := func(n string) string { return prometheus.BuildFQName(namespace, "pcap_over_tcp", n) }
	cl := []string{"client", "remote"}
	return &collector{
		s:            s,
		written:      prometheus.NewDesc(name("packets_written_total"), "Packets handed to the server by the capture.", nil, nil),
		writtenBytes: prometheus.NewDesc(name("captured_bytes_written_total"), "Captured bytes handed to the server, after truncation to the snap length.", nil, nil),
		truncated:    prometheus.NewDesc(name("packets_truncated_total"), "Packets longer than the snap length.", nil, nil),
		sent:         prometheus.NewDesc(name("packets_sent_total"), "Packet records written to client sockets, all clients.", nil, nil),
		sentBytes:    prometheus.NewDesc(name("bytes_sent_total"), "Record bytes written to client sockets, all clients.", nil, nil),
		writes:       prometheus.NewDesc(name("socket_writes_total"), "Write calls on client sockets; packets_sent_total divided by this is the batching achieved.", nil, nil),
		dropped:      prometheus.NewDesc(name("packets_dropped_total"), "Packets not delivered to a client, by reason (queue_full, disconnected).", []string{"reason"}, nil),
		accepted:     prometheus.NewDesc(name("connections_accepted_total"), "Client connections accepted.", nil, nil),
		rejected:     prometheus.NewDesc(name("connections_rejected_total"), "Client connections refused, by reason (not_allowed, max_clients).", []string{"reason"}, nil),
		connected:    prometheus.NewDesc(name("clients_connected"), "Clients connected now.", nil, nil),

		clientSent:      prometheus.NewDesc(name("client_packets_sent_total"), "Packet records written to this client's socket.", cl, nil),
		clientSentBytes: prometheus.NewDesc(name("client_bytes_sent_total"), "Record bytes written to this client's socket.", cl, nil),
		clientDropped:   prometheus.NewDesc(name("client_packets_dropped_total"), "Packets dropped for this client because its queue was full.", cl, nil),
		clientQueued:    prometheus.NewDesc(name("client_queue_bytes"), "Bytes queued for this client.", cl, nil),
		clientQueueCap:  prometheus.NewDesc(name("client_queue_capacity_bytes"), "Bytes allocated for this client's queue.", cl, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.written, c.writtenBytes, c.truncated, c.sent, c.sentBytes, c.writes, c.dropped,
		c.accepted, c.rejected, c.connected, c.clientSent, c.clientSentBytes, c.clientDropped, c.clientQueued, c.clientQueueCap} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter(c.written, st.WrittenPackets)
	counter(c.writtenBytes, st.WrittenBytes)
	counter(c.truncated, st.TruncatedPackets)
	counter(c.sent, st.SentPackets)
	counter(c.sentBytes, st.SentBytes)
	counter(c.writes, st.SocketWrites)
	counter(c.dropped, st.DroppedQueueFull, DropQueueFull)
	counter(c.dropped, st.DroppedDisconnected, DropDisconnected)
	counter(c.accepted, st.Accepted)
	counter(c.rejected, st.RejectedNotAllowed, RejectNotAllowed)
	counter(c.rejected, st.RejectedMaxClients, RejectMaxClients)
	gauge(c.connected, float64(len(st.Clients)))
	for _, cs := range st.Clients {
		id := strconv.FormatUint(cs.ID, 10)
		counter(c.clientSent, cs.SentPackets, id, cs.Remote)
		counter(c.clientSentBytes, cs.SentBytes, id, cs.Remote)
		counter(c.clientDropped, cs.DroppedQueueFull, id, cs.Remote)
		gauge(c.clientQueued, float64(cs.QueuedBytes), id, cs.Remote)
		gauge(c.clientQueueCap, float64(cs.QueueCapacityBytes), id, cs.Remote)
	}
}
