// Package metrics exposes the agent's self-metrics. The collector reads
// the counters the capture path already keeps, at scrape time, so that
// the packet path never touches a Prometheus object.
package metrics

import (
	"log/slog"
	"strconv"

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
	// A later fragment of a captured datagram that arrived before the
	// datagram's first fragment (counted when the first one arrives).
	DropFragmentBeforeFirst = "fragment_before_first"
	// An IPv6 packet with more extension headers than the classifier
	// follows: protocol and ports unknown, no rule could match it in
	// full, one would have on direction and addresses. No stream.
	DropIPv6TooManyExtHeaders = "ipv6_too_many_ext_headers"
	// The CPU's copy buffer was held by a run of the classifier that this
	// one preempted (PREEMPT_RT kernels only).
	DropCPUBufferBusy = "cpu_buffer_busy"
)

// StreamLabel names the PCAP-over-TCP stream ("0".."N-1") on per-stream
// series, the agent's and the pcap_over_tcp_* ones alike.
const StreamLabel = "stream"

// Sources are where the collector reads from.
type Sources struct {
	Kernel   func() (bpf.Counters, error)
	Reader   func() capture.Stats
	Fill     func() (used, size int)
	Attached func() []tracer.Interface
	// ClientQueueFull is, per stream, the packets lost because a client
	// of that stream fell behind (summed over its clients).
	ClientQueueFull func() []uint64
	Logger          *slog.Logger
}

type collector struct {
	src Sources

	seen, matched, captured, capturedBytes, duplicates, dropped        *prometheus.Desc
	budgetSkipped, budgetSkippedBytes, budgetTruncated, budgetCutBytes *prometheus.Desc
	ringUsed, ringSize, attached, streams                              *prometheus.Desc
}

// NewCollector returns the agent's collector.
func NewCollector(src Sources) prometheus.Collector {
	name := func(n string) string { return prometheus.BuildFQName(Namespace, "", n) }
	if src.Logger == nil {
		src.Logger = slog.New(slog.DiscardHandler)
	}
	return &collector{
		src:                src,
		seen:               prometheus.NewDesc(name("packets_seen_total"), "Packets the in-kernel classifier examined on attached interfaces.", nil, nil),
		matched:            prometheus.NewDesc(name("packets_matched_total"), "Packets that matched the filter in the kernel and were to be copied (those a payload budget skips are counted apart).", nil, nil),
		budgetSkipped:      prometheus.NewDesc(name("budget_packets_skipped_total"), "Packets a rule matched that its payload budget left out: payload past the budget, and pure ACKs Zeek does not need.", nil, nil),
		budgetSkippedBytes: prometheus.NewDesc(name("budget_skipped_bytes_total"), "Original bytes of the packets a payload budget left out.", nil, nil),
		budgetTruncated:    prometheus.NewDesc(name("budget_packets_truncated_total"), "Packets copied with their payload cut where the budget ran out.", nil, nil),
		budgetCutBytes:     prometheus.NewDesc(name("budget_truncated_bytes_total"), "Payload bytes cut from the packets copied at the end of a budget.", nil, nil),
		captured:           prometheus.NewDesc(name("packets_captured_total"), "Packets delivered to the PCAP-over-TCP server, by stream.", []string{StreamLabel}, nil),
		capturedBytes:      prometheus.NewDesc(name("captured_bytes_total"), "Original (untruncated) bytes of the packets delivered to the PCAP-over-TCP server, by stream.", []string{StreamLabel}, nil),
		duplicates:         prometheus.NewDesc(name("packets_deduplicated_total"), "Packets dropped as duplicates of one seen on another interface within the deduplication window.", nil, nil),
		dropped: prometheus.NewDesc(name("packets_dropped_total"), "Packets lost, by reason: ring_buffer_full (kernel to agent), client_queue_full (agent to a PCAP-over-TCP client, summed over the stream's clients), "+
			"fragment_before_first (a later fragment of a captured datagram came before its first), cpu_buffer_busy (the CPU's copy buffer was in use, PREEMPT_RT only), "+
			"ipv6_too_many_ext_headers (more IPv6 extension headers than the classifier follows, so protocol and ports unknown; stream empty); "+
			"by the stream they were meant for.", []string{"reason", StreamLabel}, nil),
		ringUsed: prometheus.NewDesc(name("ring_buffer_used_bytes"), "Bytes waiting in the kernel-to-agent ring buffer.", nil, nil),
		ringSize: prometheus.NewDesc(name("ring_buffer_size_bytes"), "Size of the kernel-to-agent ring buffer.", nil, nil),
		attached: prometheus.NewDesc(name("interfaces_attached"), "Interfaces the classifier is attached to, by attach mode (tcx or tc).", []string{"mode"}, nil),
		streams:  prometheus.NewDesc(name("streams"), "PCAP-over-TCP streams the capture is split into by flow hash.", nil, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.seen, c.matched, c.captured, c.capturedBytes, c.duplicates, c.dropped, c.ringUsed, c.ringSize, c.attached, c.streams,
		c.budgetSkipped, c.budgetSkippedBytes, c.budgetTruncated, c.budgetCutBytes} {
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
		counter(c.budgetSkipped, k.BudgetSkipped)
		counter(c.budgetSkippedBytes, k.BudgetSkippedBytes)
		counter(c.budgetTruncated, k.BudgetTruncated)
		counter(c.budgetCutBytes, k.BudgetTruncatedBytes)
		for reason, byStream := range map[string][]uint64{
			DropRingBufferFull:      k.StreamRingBufferFull,
			DropFragmentBeforeFirst: k.StreamFragmentBeforeFirst,
			DropCPUBufferBusy:       k.StreamScratchBusy,
		} {
			for i, v := range byStream {
				counter(c.dropped, v, reason, strconv.Itoa(i))
			}
		}
		// The stream hash needs the ports these packets hide.
		counter(c.dropped, k.IPv6TooManyExtHeaders, DropIPv6TooManyExtHeaders, "")
	}
	st := c.src.Reader()
	for i, s := range st.Streams {
		counter(c.captured, s.Packets, strconv.Itoa(i))
		counter(c.capturedBytes, s.Bytes, strconv.Itoa(i))
	}
	gauge(c.streams, float64(len(st.Streams)))
	counter(c.duplicates, st.Duplicates)
	for i, v := range c.src.ClientQueueFull() {
		counter(c.dropped, v, DropClientQueueFull, strconv.Itoa(i))
	}
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
