// Package flpconfig holds no code: its tests load PANO's flowlogs-pipeline
// configurations with flowlogs-pipeline's own parser and run sample dns.log
// records through flowlogs-pipeline's own decoder, transform and Prometheus
// encoder, at the version go.mod pins, so that a schema or behaviour drift
// fails here first.
package flpconfig

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/netobserv/flowlogs-pipeline/pkg/api"
	"github.com/netobserv/flowlogs-pipeline/pkg/config"
	"github.com/netobserv/flowlogs-pipeline/pkg/operational"
	"github.com/netobserv/flowlogs-pipeline/pkg/pipeline/decode"
	"github.com/netobserv/flowlogs-pipeline/pkg/pipeline/encode"
	"github.com/netobserv/flowlogs-pipeline/pkg/pipeline/transform"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"gopkg.in/yaml.v3"
)

const (
	mainConfig     = "flowlogs-pipeline.yaml"
	originalConfig = "original-ported/flowlogs-pipeline.yaml"
)

// topLevelKeys are the keys flowlogs-pipeline's command reads from its
// configuration file; viper silently ignores anything else, so a stale key
// (such as the old suppressGoMetrics) would otherwise pass unnoticed.
var topLevelKeys = []string{"log-level", "pipeline", "parameters", "metricsSettings", "dynamicParameters", "health", "profile"}

// parseFile reads a configuration the way flowlogs-pipeline's command does:
// YAML into generic values, each section handed as JSON to
// config.ParseConfig, which decodes strictly (unknown fields fail).
func parseFile(path string) (config.Root, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return config.Root{}, err
	}
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return config.Root{}, fmt.Errorf("%s: yaml: %w", path, err)
	}
	for k := range raw {
		if !slices.Contains(topLevelKeys, k) {
			return config.Root{}, fmt.Errorf("%s: unknown top-level key %q", path, k)
		}
	}
	section := func(name string) (string, error) {
		v, ok := raw[name]
		if !ok {
			return "", nil
		}
		b, err := json.Marshal(v)
		if err != nil {
			return "", fmt.Errorf("%s: %s: %w", path, name, err)
		}
		return string(b), nil
	}
	var opts config.Options
	if opts.PipeLine, err = section("pipeline"); err != nil {
		return config.Root{}, err
	}
	if opts.Parameters, err = section("parameters"); err != nil {
		return config.Root{}, err
	}
	if opts.MetricsSettings, err = section("metricsSettings"); err != nil {
		return config.Root{}, err
	}
	root, err := config.ParseConfig(&opts)
	if err != nil {
		return config.Root{}, fmt.Errorf("%s: %w", path, err)
	}
	return root, nil
}

func stage(t *testing.T, root config.Root, name string) config.StageParam {
	t.Helper()
	for _, p := range root.Parameters {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no stage %q", name)
	return config.StageParam{}
}

func TestConfigsParseWithFlowlogsPipelineParser(t *testing.T) {
	for _, c := range []struct {
		path, ingest string
		// The original names no consumer group (flowlogs-pipeline then
		// uses $HOSTNAME); the benchmark sets one per run.
		groupID bool
		// PANO's ingest queues (README.md, Benchmark); the original keeps
		// flowlogs-pipeline's defaults (0).
		queue, batchMaxLen int
	}{
		{mainConfig, "ingest_dns", true, 10000, 5000},
		{originalConfig, "ingest", false, 0, 0},
	} {
		path := c.path
		t.Run(path, func(t *testing.T) {
			root, err := parseFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(root.Pipeline) == 0 || len(root.Parameters) != len(root.Pipeline) {
				t.Fatalf("pipeline has %d stages and %d parameter sets", len(root.Pipeline), len(root.Parameters))
			}
			// Every stage that follows another must name a defined one.
			names := map[string]bool{}
			for _, p := range root.Parameters {
				names[p.Name] = true
			}
			for _, s := range root.Pipeline {
				if !names[s.Name] || (s.Follows != "" && !names[s.Follows]) {
					t.Errorf("stage %+v refers to an undefined stage", s)
				}
			}
			ing := stage(t, root, c.ingest).Ingest
			if ing == nil || ing.Type != "kafka" || ing.Kafka == nil {
				t.Fatalf("%s is not a kafka ingest: %+v", c.ingest, ing)
			}
			k := ing.Kafka
			if !slices.Equal(k.Brokers, []string{"127.0.0.1:9092"}) || k.Topic != "dns" || k.Decoder.Type != api.DecoderJSON {
				t.Errorf("kafka ingest = %+v, want brokers 127.0.0.1:9092, topic dns, json", k)
			}
			if c.groupID && k.GroupID == "" {
				t.Errorf("kafka ingest has no consumer group")
			}
			if k.PullQueueCapacity != c.queue || k.BatchMaxLen != c.batchMaxLen || k.PullMaxBytes != 0 || k.CommitInterval != 0 {
				t.Errorf("kafka ingest queues: pullQueueCapacity %d, batchMaxLen %d, pullMaxBytes %d, commitInterval %d; want %d, %d, 0, 0",
					k.PullQueueCapacity, k.BatchMaxLen, k.PullMaxBytes, k.CommitInterval, c.queue, c.batchMaxLen)
			}
			if root.MetricsSettings.Port != 9102 {
				t.Errorf("metrics port = %d, want 9102", root.MetricsSettings.Port)
			}
		})
	}
}

func TestParserRejectsStaleSchema(t *testing.T) {
	// The two drifts that broke the original configuration: a key that is
	// gone and a filter rule in its old shape. The parser must refuse both,
	// or the tests above prove nothing.
	dir := t.TempDir()
	for name, body := range map[string]string{
		"suppressGoMetrics":  "suppressGoMetrics: true\npipeline: [{name: a}]\nparameters: [{name: a, ingest: {type: stdin}}]\n",
		"old filter rule":    "pipeline: [{name: a}]\nparameters: [{name: a, transform: {type: filter, filter: {rules: [{input: rcode_name, type: remove_entry_if_doesnt_exist}]}}}]\n",
		"unknown metric key": "pipeline: [{name: a}]\nparameters: [{name: a, encode: {type: prom, prom: {metrics: [{name: x, type: counter, bucket: [1]}]}}}]\n",
	} {
		p := dir + "/" + strings.ReplaceAll(name, " ", "_") + ".yaml"
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := parseFile(p); err == nil {
			t.Errorf("%s: parsed without error", name)
		}
	}
}

// pipelineUnderTest is the main configuration's stages, built with
// flowlogs-pipeline's own constructors, minus Kafka.
type pipelineUnderTest struct {
	decoder  decode.Decoder
	filter   transform.Transformer
	encoders map[string]*encode.Prometheus
}

func buildMain(t *testing.T) *pipelineUnderTest {
	t.Helper()
	root, err := parseFile(mainConfig)
	if err != nil {
		t.Fatal(err)
	}
	// The operational metrics register globally; a private registry per
	// test keeps reruns (-count=N) from colliding.
	reg := prometheus.NewRegistry()
	prometheus.DefaultRegisterer, prometheus.DefaultGatherer = reg, reg
	ops := operational.NewMetrics(&root.MetricsSettings)

	p := &pipelineUnderTest{encoders: map[string]*encode.Prometheus{}}
	if p.decoder, err = decode.GetDecoder(stage(t, root, "ingest_dns").Ingest.Kafka.Decoder); err != nil {
		t.Fatal(err)
	}
	if p.filter, err = transform.NewTransformFilter(stage(t, root, "label_unanswered")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"encode_dns", "encode_dns_names"} {
		sp := stage(t, root, name)
		if sp.Encode.Prom.PromConnectionInfo != nil {
			t.Errorf("%s opens its own metrics server; it must share the global one on :9102", name)
		}
		e, err := encode.NewEncodeProm(ops, sp)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		p.encoders[name] = e.(*encode.Prometheus)
	}
	return p
}

func (p *pipelineUnderTest) feed(t *testing.T, lines ...string) {
	t.Helper()
	for _, l := range lines {
		rec, err := p.decoder.Decode([]byte(l))
		if err != nil {
			t.Fatalf("decode %s: %v", l, err)
		}
		rec, keep := p.filter.Transform(rec)
		if !keep {
			t.Fatalf("the filter dropped %s", l)
		}
		for _, e := range p.encoders {
			e.Encode(rec)
		}
	}
}

// families gathers every metric of every encode stage, keyed by name.
func (p *pipelineUnderTest) families(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	out := map[string]*dto.MetricFamily{}
	for _, e := range p.encoders {
		mfs, err := e.Gatherer().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if strings.HasPrefix(mf.GetName(), "pano_dns_") {
				out[mf.GetName()] = mf
			}
		}
	}
	return out
}

func labelsOf(m *dto.Metric) string {
	var kv []string
	for _, l := range m.GetLabel() {
		kv = append(kv, l.GetName()+"="+l.GetValue())
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

func counterValues(t *testing.T, fams map[string]*dto.MetricFamily, name string) map[string]float64 {
	t.Helper()
	mf, ok := fams[name]
	if !ok {
		t.Fatalf("metric %s missing; have %v", name, keys(fams))
	}
	if mf.GetType() != dto.MetricType_COUNTER {
		t.Fatalf("%s is %v, want a counter", name, mf.GetType())
	}
	out := map[string]float64{}
	for _, m := range mf.GetMetric() {
		out[labelsOf(m)] = m.GetCounter().GetValue()
	}
	return out
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func TestMainConfigMetricsFromRecords(t *testing.T) {
	p := buildMain(t)
	p.feed(t,
		// answered, with and without rtt (stock Zeek omits rtt for NXDOMAIN)
		`{"ts":1.5,"uid":"C1","id_orig_h":"198.18.0.2","id_resp_h":"198.18.0.1","proto":"udp","query":"a.pano.test","qtype_name":"A","rcode":0,"rcode_name":"NOERROR","rtt":0.00004,"TC":false,"rejected":false}`,
		`{"ts":1.6,"uid":"C2","id_orig_h":"198.18.0.2","id_resp_h":"198.18.0.1","proto":"udp","query":"a.pano.test","qtype_name":"A","rcode":0,"rcode_name":"NOERROR","rtt":0.003,"TC":false,"rejected":false}`,
		`{"ts":1.7,"uid":"C3","id_orig_h":"198.18.0.2","id_resp_h":"198.18.0.1","proto":"udp","query":"nx.pano.test","qtype_name":"AAAA","rcode":3,"rcode_name":"NXDOMAIN","TC":false,"rejected":false}`,
		`{"ts":1.8,"uid":"C4","id_orig_h":"198.18.0.2","id_resp_h":"198.18.0.5","proto":"udp","query":"big.pano.test","qtype_name":"TXT","rcode":0,"rcode_name":"NOERROR","rtt":0.2,"TC":true,"rejected":false}`,
		`{"ts":1.9,"uid":"C5","id_orig_h":"198.18.0.2","id_resp_h":"198.18.0.5","proto":"udp","query":"x.pano.test","qtype_name":"A","rcode":5,"rcode_name":"REFUSED","rtt":0.0001,"TC":false,"rejected":true}`,
		// no response seen: no rcode, no rtt
		`{"ts":2.0,"uid":"C6","id_orig_h":"198.18.0.2","id_resp_h":"198.18.0.5","proto":"udp","query":"a.pano.test","qtype_name":"A","TC":false,"rejected":false}`,
	)
	fams := p.families(t)

	got := counterValues(t, fams, "pano_dns_queries_total")
	want := map[string]float64{
		"qtype=A,rcode=NOERROR,server=198.18.0.1":     2,
		"qtype=AAAA,rcode=NXDOMAIN,server=198.18.0.1": 1,
		"qtype=TXT,rcode=NOERROR,server=198.18.0.5":   1,
		"qtype=A,rcode=REFUSED,server=198.18.0.5":     1,
		"qtype=A,rcode=unanswered,server=198.18.0.5":  1,
	}
	assertMap(t, "pano_dns_queries_total", got, want)
	assertMap(t, "pano_dns_unanswered_queries_total", counterValues(t, fams, "pano_dns_unanswered_queries_total"),
		map[string]float64{"server=198.18.0.5": 1})
	assertMap(t, "pano_dns_truncated_responses_total", counterValues(t, fams, "pano_dns_truncated_responses_total"),
		map[string]float64{"server=198.18.0.5": 1})
	assertMap(t, "pano_dns_rejected_responses_total", counterValues(t, fams, "pano_dns_rejected_responses_total"),
		map[string]float64{"server=198.18.0.5": 1})
	assertMap(t, "pano_dns_queries_by_name_total", counterValues(t, fams, "pano_dns_queries_by_name_total"),
		map[string]float64{"qname=a.pano.test": 3, "qname=nx.pano.test": 1, "qname=big.pano.test": 1, "qname=x.pano.test": 1})

	// Histograms: only records with rtt are observed, in seconds and in
	// milliseconds; the bucket bounds are the client library's defaults
	// because v1.11 ignores `buckets` (prometheus.yml depends on that).
	defaults := prometheus.DefBuckets
	for name, scale := range map[string]float64{"pano_dns_response_time_seconds": 1, "pano_dns_response_time_milliseconds": 1000} {
		mf, ok := fams[name]
		if !ok || mf.GetType() != dto.MetricType_HISTOGRAM {
			t.Fatalf("%s missing or not a histogram", name)
		}
		byServer := map[string]*dto.Histogram{}
		for _, m := range mf.GetMetric() {
			byServer[labelsOf(m)] = m.GetHistogram()
		}
		h1, h5 := byServer["server=198.18.0.1"], byServer["server=198.18.0.5"]
		if h1 == nil || h5 == nil || len(byServer) != 2 {
			t.Fatalf("%s series = %v", name, keys(byServer))
		}
		if h1.GetSampleCount() != 2 || h5.GetSampleCount() != 2 {
			t.Errorf("%s counts = %d, %d, want 2, 2", name, h1.GetSampleCount(), h5.GetSampleCount())
		}
		if d := math.Abs(h1.GetSampleSum() - 0.00304*scale); d > 1e-9*scale {
			t.Errorf("%s sum(198.18.0.1) = %v, want %v", name, h1.GetSampleSum(), 0.00304*scale)
		}
		var les []float64
		for _, b := range h1.GetBucket() {
			les = append(les, b.GetUpperBound())
		}
		if !slices.Equal(les, defaults) {
			t.Errorf("%s buckets = %v, want the client defaults %v (did flowlogs-pipeline start honouring `buckets`? then drop the milliseconds twin and the relabelling in prometheus.yml)", name, les, defaults)
		}
	}
}

func TestQueryNameCardinalityCap(t *testing.T) {
	root, err := parseFile(mainConfig)
	if err != nil {
		t.Fatal(err)
	}
	limit := stage(t, root, "encode_dns_names").Encode.Prom.MaxMetrics
	if limit <= 0 {
		t.Fatalf("encode_dns_names has no maxMetrics cap")
	}
	if stage(t, root, "encode_dns_names").Encode.Prom.ExpiryTime.Duration <= 0 {
		t.Fatalf("encode_dns_names has no expiryTime")
	}
	p := buildMain(t)
	var lines []string
	for i := 0; i < limit+100; i++ {
		lines = append(lines, fmt.Sprintf(`{"uid":"C%d","id_resp_h":"198.18.0.1","query":"n%d.pano.test","qtype_name":"A","rcode":0,"rcode_name":"NOERROR","rtt":0.001}`, i, i))
	}
	p.feed(t, lines...)
	fams := p.families(t)
	if n := len(fams["pano_dns_queries_by_name_total"].GetMetric()); n != limit {
		t.Errorf("query-name series = %d, want the cap %d", n, limit)
	}
	// The cap is per stage: the main metrics must still see every record.
	if v := counterValues(t, fams, "pano_dns_queries_total")["qtype=A,rcode=NOERROR,server=198.18.0.1"]; v != float64(limit+100) {
		t.Errorf("queries_total = %v, want %d (the name cap must not touch the main metrics)", v, limit+100)
	}
}

func assertMap(t *testing.T, name string, got, want map[string]float64) {
	t.Helper()
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s{%s} = %v, want %v", name, k, got[k], w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s{%s} = %v, not expected", name, k, got[k])
		}
	}
}
