// Package metrics holds the shim's Prometheus metrics.
package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the shim's counters, histogram and gauges.
type Metrics struct {
	LinesRead       *prometheus.CounterVec // by log
	RecordsProduced *prometheus.CounterVec // by log, topic: acknowledged by Kafka
	Errors          *prometheus.CounterVec // by log, kind
	DuplicatesSkip  *prometheus.CounterVec // by log
	RotatedDeleted  *prometheus.CounterVec // by log
	Refused         *prometheus.CounterVec // by log, topic, reason
	ProduceLatency  prometheus.Histogram
	InFlight        prometheus.GaugeFunc
	LastProgress    prometheus.GaugeFunc
	Behind          *Behind
}

// New registers the metrics on reg. inFlight reports the records waiting
// for Kafka's answer, lastProgress the unix time of the last answer.
func New(reg prometheus.Registerer, inFlight, lastProgress func() float64) *Metrics {
	m := &Metrics{
		LinesRead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pano_shim_lines_read_total", Help: "Lines read from Zeek logs (records, header lines, malformed lines).",
		}, []string{"log"}),
		RecordsProduced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pano_shim_records_produced_total", Help: "Records acknowledged by Kafka.",
		}, []string{"log", "topic"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pano_shim_errors_total", Help: "Malformed lines skipped, and waits for an unreachable Kafka (kafka_unavailable), by kind.",
		}, []string{"log", "kind"}),
		DuplicatesSkip: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pano_shim_duplicates_skipped_total", Help: "Lines not sent again because Kafka already had them (after a crash).",
		}, []string{"log"}),
		RotatedDeleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pano_shim_rotated_files_deleted_total", Help: "Rotated log files deleted once every line was in Kafka and the position saved past them.",
		}, []string{"log"}),
		ProduceLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pano_shim_produce_latency_seconds", Help: "Time from handing a record to the producer to Kafka's acknowledgement (one record in 8 is timed).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pano_shim_records_refused_total", Help: "Records Kafka refused for good (too large, invalid, not authorized), skipped; the log says which setting to fix.",
		}, []string{"log", "topic", "reason"}),
		InFlight: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pano_shim_in_flight_records", Help: "Records handed to the Kafka client and not yet answered.",
		}, inFlight),
		LastProgress: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pano_shim_last_progress_timestamp_seconds", Help: "Unix time of Kafka's last answer (or of the start of a wait for one): /healthz fails when it is older than SHIM_HEALTH_TIMEOUT while records wait.",
		}, lastProgress),
		Behind: &Behind{logs: map[string]func() float64{}},
	}
	reg.MustRegister(m.LinesRead, m.RecordsProduced, m.Errors, m.DuplicatesSkip, m.RotatedDeleted, m.Refused, m.ProduceLatency, m.InFlight, m.LastProgress, m.Behind)
	return m
}

var behindDesc = prometheus.NewDesc("pano_shim_bytes_behind",
	"Bytes of the log file not yet acknowledged by Kafka (file size minus saved-able position).", []string{"log"}, nil)

// Behind reports, per log, how far Kafka is behind the end of the file.
type Behind struct {
	mu   sync.Mutex
	logs map[string]func() float64
}

// Set registers (or replaces) the function that measures log.
func (b *Behind) Set(log string, f func() float64) {
	b.mu.Lock()
	b.logs[log] = f
	b.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (b *Behind) Describe(ch chan<- *prometheus.Desc) { ch <- behindDesc }

// Collect implements prometheus.Collector.
func (b *Behind) Collect(ch chan<- prometheus.Metric) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for log, f := range b.logs {
		ch <- prometheus.MustNewConstMetric(behindDesc, prometheus.GaugeValue, f(), log)
	}
}
