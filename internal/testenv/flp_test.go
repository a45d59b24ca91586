package testenv

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kgo"
	"gopkg.in/yaml.v3"
)

// flpTestConfig reads JSON records from a Kafka topic and counts them by
// rcode_name, and sums their "bytes" field.
const flpTestConfig = `log-level: info
pipeline:
  - name: ingest
  - name: encode
    follows: ingest
parameters:
  - name: ingest
    ingest:
      type: kafka
      kafka:
        brokers: ["kafka.invalid:9092"]
        topic: flp-smoke
        groupid: flp-smoke
        startOffset: FirstOffset
        batchReadTimeout: 200
        decoder:
          type: json
  - name: encode
    encode:
      type: prom
      prom:
        prefix: pano_testenv_
        metrics:
          - name: records_total
            type: counter
            labels: [rcode_name]
          - name: bytes_total
            type: counter
            valueKey: bytes
metricsSettings:
  suppressDefaultMetrics: true
`

// flpTestScrape returns the samples of one metric family, keyed by the
// value of label ("" when the family has no such label).
func flpTestScrape(ctx context.Context, url, family, label string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", url, err)
	}
	out := map[string]float64{}
	mf, ok := mfs[family]
	if !ok {
		return out, nil
	}
	for _, m := range mf.GetMetric() {
		key := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				key = l.GetValue()
			}
		}
		out[key] = flpTestValue(m)
	}
	return out, nil
}

func flpTestValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return -1
}

// TestFLPKafkaToMetrics proves that the flowlogs-pipeline built from go.mod
// consumes from the Kafka 4 broker (consumer group and all) and turns
// records into metric values.
func TestFLPKafkaToMetrics(t *testing.T) {
	k := StartKafka(t)
	k.CreateTopic(t, "flp-smoke", 2)

	// Records produced before flowlogs-pipeline starts, and after: both
	// must count (startOffset FirstOffset).
	produce := func(rcodes map[string]int, bytes int) {
		t.Helper()
		var recs []*kgo.Record
		for rcode, n := range rcodes {
			for i := range n {
				v := fmt.Sprintf(`{"uid":"C%s%d","rcode_name":%q,"bytes":%d}`, rcode, i, rcode, bytes)
				recs = append(recs, kgo.KeyStringRecord(fmt.Sprint(i), v))
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := k.Client(t, kgo.DefaultProduceTopic("flp-smoke")).ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	produce(map[string]int{"NOERROR": 4, "NXDOMAIN": 3}, 100)
	f := StartFLP(t, FLPConfigWithKafka(t, flpTestConfig, k.Bootstrap))
	produce(map[string]int{"NOERROR": 2, "SERVFAIL": 1}, 10)

	want := map[string]float64{"NOERROR": 6, "NXDOMAIN": 3, "SERVFAIL": 1}
	wantBytes := 7*100 + 3*10.0
	start := time.Now()
	deadline := start.Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		got, err := flpTestScrape(ctx, f.MetricsURL, "pano_testenv_records_total", "rcode_name")
		var bytes map[string]float64
		if err == nil {
			bytes, err = flpTestScrape(ctx, f.MetricsURL, "pano_testenv_bytes_total", "")
		}
		cancel()
		if err == nil && fmt.Sprint(got) == fmt.Sprint(want) && bytes[""] == wantBytes {
			t.Logf("all records counted %v after flowlogs-pipeline was ready", time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("flowlogs-pipeline metrics: records %v (err %v), bytes %v; want %v and %v", got, err, bytes, want, wantBytes)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func TestFLPRewrite(t *testing.T) {
	next := 40000
	port := func() int { next++; return next }

	// Global server only: the prom stage publishes there.
	out, f, err := flpRewrite(flpTestConfig, port)
	if err != nil {
		t.Fatal(err)
	}
	if f.MetricsURL != "http://127.0.0.1:40001/metrics" || f.OpsMetricsURL != f.MetricsURL {
		t.Errorf("global server: %+v", f)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	ms := doc["metricsSettings"].(map[string]any)
	if ms["address"] != "127.0.0.1" || ms["port"] != 40001 || ms["suppressDefaultMetrics"] != true {
		t.Errorf("metricsSettings rewritten to %v", ms)
	}

	// A stage with its own server, on a port the deployment fixed.
	own := strings.Replace(flpTestConfig, "        prefix: pano_testenv_\n", "        prefix: pano_testenv_\n        port: 9102\n", 1)
	_, f, err = flpRewrite(own, port)
	if err != nil {
		t.Fatal(err)
	}
	if f.MetricsURL != "http://127.0.0.1:40003/metrics" || f.OpsMetricsURL != "http://127.0.0.1:40002/metrics" {
		t.Errorf("own server: %+v", f)
	}

	// Nothing to scrape is an error, as is a configuration that is not YAML.
	off := strings.Replace(flpTestConfig, "suppressDefaultMetrics: true", "disableGlobalServer: true", 1)
	if _, _, err := flpRewrite(off, port); err == nil {
		t.Errorf("no metrics server: no error")
	}
	if _, _, err := flpRewrite("pipeline: [", port); err == nil {
		t.Errorf("broken YAML: no error")
	}
}
