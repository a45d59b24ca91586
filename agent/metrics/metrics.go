// Package metrics exposes the agent's self-metrics. The collector reads
// the counters the capture path already keeps, at scrape time, so that
// the packet path never touches a Prometheus object.
package metrics

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pano-observability/pano/agent/bpf"
	"github.com/pano-observability/pano/agent/capture"
	"github.com/pano-observability/pano/agent/tracer"
)

// Namespace prefixes every agent metric.
const Namespace = "pano_agent"

// Drop reasons.
const (
	DropRingBufferFull  = "ring_buffer_full"  // the kernel could not queue the packet for the agent
	DropClientQueueFull = "client_queue_full" // a PCAP-over-TCP client fell behind (per client in pcap_over_tcp_client_packets_dropped_total)
)

// Sources are where the collector reads from.
type Sources struct {
	Kernel          func() (bpf.Counters, error)
	Reader          func() capture.Stats
	Fill            func() (used, size int)
	Attached        func() []tracer.Interface
	ClientQueueFull func() uint64
	Logger          *slog.Logger
}

type collector struct {
	src Sources

	seen, matched, captured, capturedBytes, duplicates, dropped *prometheus.Desc
	ringUsed, ringSize, attached                                *prometheus.Desc
}

// NewCollector returns the agent's collector.
func NewCollector(src Sources) prometheus.Collector {
	name := func(n string) string { return prometheus.BuildFQName(Namespace, "", n) }
	if src.Logger == nil {
		src.Logger = slog.New(slog.DiscardHandler)
	}
	return &collector{
		src:           src,
		seen:          prometheus.NewDesc(name("packets_seen_total"), "Packets the in-kernel classifier examined on attached interfaces.", nil, nil),
		matched:       prometheus.NewDesc(name("packets_matched_total"), "Packets that matched the filter in the kernel.", nil, nil),
		captured:      prometheus.NewDesc(name("packets_captured_total"), "Packets delivered to the PCAP-over-TCP server.", nil, nil),
		capturedBytes: prometheus.NewDesc(name("captured_bytes_total"), "Original (untruncated) bytes of the packets delivered to the PCAP-over-TCP server.", nil, nil),
		duplicates:    prometheus.NewDesc(name("packets_deduplicated_total"), "Packets dropped as duplicates of one seen on another interface within the deduplication window.", nil, nil),
		dropped:       prometheus.NewDesc(name("packets_dropped_total"), "Packets lost, by reason: ring_buffer_full (kernel to agent), client_queue_full (agent to a PCAP-over-TCP client, summed over clients).", []string{"reason"}, nil),
		ringUsed:      prometheus.NewDesc(name("ring_buffer_used_bytes"), "Bytes waiting in the kernel-to-agent ring buffer.", nil, nil),
		ringSize:      prometheus.NewDesc(name("ring_buffer_size_bytes"), "Size of the kernel-to-agent ring buffer.", nil, nil),
		attached:      prometheus.NewDesc(name("interfaces_attached"), "Interfaces the classifier is attached to, by attach mode (tcx or tc).", []string{"mode"}, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.seen, c.matched, c.captured, c.capturedBytes, c.duplicates, c.dropped, c.ringUsed, c.ringSize, c.attached} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if k, err := c.src.Kernel(); err != nil {
		c.src.Logger.Warn("read classifier counters", "error", err)
	} else {
		counter(c.seen, k.Seen)
		counter(c.matched, k.Matched)
		counter(c.dropped, k.RingBufferFull, DropRingBufferFull)
	}
	st := c.src.Reader()
	counter(c.captured, st.Packets)
	counter(c.capturedBytes, st.Bytes)
	counter(c.duplicates, st.Duplicates)
	counter(c.dropped, c.src.ClientQueueFull(), DropClientQueueFull)
	used, size := c.src.Fill()
	gauge(c.ringUsed, float64(used))
	gauge(c.ringSize, float64(size))
	modes := map[tracer.Mode]int{tracer.ModeTCX: 0, tracer.ModeTC: 0}
	for _, i := range c.src.Attached() {
		modes[i.Mode]++
	}
	for m, n := range modes {
		gauge(c.attached, float64(n), string(m))
	}
}
