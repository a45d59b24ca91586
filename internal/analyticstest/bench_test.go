package analyticstest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/pano-observability/pano/internal/testenv"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"
)

const (
	benchRecords = 300_000
	// benchLimit bounds each configuration's run; a slower one is measured
	// over what it processed by then.
	benchLimit = 2 * time.Minute
)

// BenchmarkFlowlogsPipelineConfigs runs the same 300,000 dns.log records
// from one Kafka topic through flowlogs-pipeline twice, in one run: with
// PANO's configuration and with the original demo's (ported to the
// current schema), and reports the records per second of each and their
// ratio. Run it with -benchtime=1x; each configuration is measured once
// (a new consumer group reads the whole topic).
//
//	go test ./internal/analyticstest -run '^$' -bench FlowlogsPipelineConfigs -benchtime 1x
func BenchmarkFlowlogsPipelineConfigs(b *testing.B) {
	root := testenv.RepoRoot(b)
	k := testenv.StartKafka(b)
	k.CreateTopic(b, "dns", 1)
	produceBench(b, k, NewGenerator(7).Random(benchRecords))

	configs := []struct {
		name, file, counter string
	}{
		{"pano", "fl-pipeline-config/flowlogs-pipeline.yaml", "pano_dns_queries_total"},
		{"original", "fl-pipeline-config/original-ported/flowlogs-pipeline.yaml", "pano_dns_orig_queries_by_server_total"},
		// Kafka ingest, JSON decoding and one unlabelled counter: the most
		// any configuration of this flowlogs-pipeline can do here.
		{"ingest-floor", "", "pano_dns_queries_total"},
	}
	rates := map[string]float64{}
	for _, c := range configs {
		b.Run(c.name, func(b *testing.B) {
			cfg := []byte(ingestFloorConfig)
			if c.file != "" {
				var err error
				if cfg, err = os.ReadFile(filepath.Join(root, c.file)); err != nil {
					b.Fatal(err)
				}
			}
			flp := testenv.StartFLP(b, withGroupID(b, testenv.FLPConfigWithKafka(b, string(cfg), k.Bootstrap), "bench-"+c.name))
			r := measureFLP(b, flp.MetricsURL, c.counter)
			rates[c.name] = r
			b.ReportMetric(r, "records/s")
		})
	}
	if rates["original"] > 0 {
		b.Logf("records/s: pano %.0f, original %.0f (pano/original %.2fx), ingest floor %.0f (pano/floor %.2fx)",
			rates["pano"], rates["original"], rates["pano"]/rates["original"], rates["ingest-floor"], rates["pano"]/rates["ingest-floor"])
	}
}

const ingestFloorConfig = `
metricsSettings: {port: 9102, prefix: pano_flp_}
pipeline:
  - name: ingest_dns
  - name: encode_dns
    follows: ingest_dns
parameters:
  - name: ingest_dns
    ingest:
      type: kafka
      kafka: {brokers: ["127.0.0.1:9092"], topic: dns, groupid: floor, decoder: {type: json}}
  - name: encode_dns
    encode:
      type: prom
      prom:
        prefix: pano_dns_
        metrics:
          - {name: queries_total, type: counter, filters: [], valueKey: "", labels: []}
`

func produceBench(b *testing.B, k *testenv.Kafka, records []Record) {
	b.Helper()
	cfg := testenv.KafkaSaramaConfig()
	cfg.Producer.Return.Successes = true
	cfg.Producer.Return.Errors = true
	cfg.Producer.Flush.Messages = 1000
	cfg.Producer.Flush.Frequency = 10 * time.Millisecond
	p, err := sarama.NewAsyncProducer([]string{k.Bootstrap}, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	start := time.Now()
	acked := make(chan error, 1)
	go func() {
		n := 0
		for {
			select {
			case <-p.Successes():
				if n++; n == len(records) {
					acked <- nil
					return
				}
			case err := <-p.Errors():
				acked <- err
				return
			}
		}
	}()
	for _, r := range records {
		p.Input() <- &sarama.ProducerMessage{Topic: "dns", Key: sarama.StringEncoder(r.UID), Value: sarama.ByteEncoder(r.KafkaJSON())}
	}
	select {
	case err := <-acked:
		if err != nil {
			b.Fatalf("produce: %v", err)
		}
	case <-time.After(3 * time.Minute):
		b.Fatalf("produce: %d records not acknowledged within 3 minutes", len(records))
	}
	b.Logf("produced %d records in %v", len(records), time.Since(start).Round(time.Millisecond))
}

func withGroupID(b *testing.B, configYAML, group string) string {
	b.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(configYAML), &doc); err != nil {
		b.Fatal(err)
	}
	for _, p := range doc["parameters"].([]any) {
		stage, _ := p.(map[string]any)
		ingest, _ := stage["ingest"].(map[string]any)
		if kafka, ok := ingest["kafka"].(map[string]any); ok {
			kafka["groupid"] = group
		}
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		b.Fatal(err)
	}
	return string(out)
}

// measureFLP polls flowlogs-pipeline's metrics until counter (summed over
// its series) counts every record or benchLimit passes, and returns the
// records per second between the first counted record and the last poll.
func measureFLP(b *testing.B, metricsURL, counter string) float64 {
	b.Helper()
	var t0 time.Time
	var c0, last float64
	deadline := time.Now().Add(benchLimit + 30*time.Second) // + consumer group join
	for {
		v, err := scrapeSum(metricsURL, counter)
		now := time.Now()
		if err != nil {
			b.Fatal(err)
		}
		if t0.IsZero() && v > 0 {
			t0, c0 = now, v
			deadline = now.Add(benchLimit)
		}
		last = v
		if v >= benchRecords || now.After(deadline) {
			if t0.IsZero() || now.Equal(t0) {
				b.Fatalf("%s: nothing counted", counter)
			}
			r := (v - c0) / now.Sub(t0).Seconds()
			b.Logf("%s: %.0f of %d records counted, %.0f records/s", counter, last, benchRecords, r)
			return r
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func scrapeSum(metricsURL, name string) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("scrape %s: %w", metricsURL, err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("scrape %s: %w", metricsURL, err)
	}
	mf, ok := fams[name]
	if !ok {
		return 0, nil // no record counted yet: the series appear with the first one
	}
	sum := 0.0
	for _, m := range mf.GetMetric() {
		sum += m.GetCounter().GetValue()
	}
	if strings.HasSuffix(name, "_total") && mf.GetType().String() != "COUNTER" {
		return 0, fmt.Errorf("%s is a %s", name, mf.GetType())
	}
	return sum, nil
}
