// Package flpconfig holds no code: its tests load PANO's flowlogs-pipeline
// configurations with flowlogs-pipeline's own parser and run sample dns.log,
// http.log and ssl.log records through flowlogs-pipeline's own decoder,
// transforms and Prometheus encoders, wired as the configuration's pipeline
// graph wires them, at the version go.mod pins, so that a schema or
// behaviour drift fails here first.
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
	"time"

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
		path string
		// ingest stage -> the topic it reads.
		ingests map[string]string
		// The original names no consumer group (flowlogs-pipeline then
		// uses $HOSTNAME); the benchmark sets one per run.
		groupID bool
		// PANO's ingest queues (README.md, Benchmark); the original keeps
		// flowlogs-pipeline's defaults (0).
		queue, batchMaxLen int
	}{
		{mainConfig, map[string]string{"ingest_dns": "dns", "ingest_http": "http", "ingest_ssl": "ssl"}, true, 10000, 5000},
		{originalConfig, map[string]string{"ingest": "dns"}, false, 0, 0},
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
			groups := map[string]string{}
			var ingests []string
			for _, p := range root.Parameters {
				if p.Ingest != nil {
					ingests = append(ingests, p.Name)
				}
			}
			if !slices.Equal(sortedCopy(ingests), keys(c.ingests)) {
				t.Errorf("ingest stages %v, want %v", ingests, keys(c.ingests))
			}
			for name, topic := range c.ingests {
				ing := stage(t, root, name).Ingest
				if ing == nil || ing.Type != "kafka" || ing.Kafka == nil {
					t.Fatalf("%s is not a kafka ingest: %+v", name, ing)
				}
				k := ing.Kafka
				if !slices.Equal(k.Brokers, []string{"127.0.0.1:9092"}) || k.Topic != topic || k.Decoder.Type != api.DecoderJSON {
					t.Errorf("%s: kafka ingest = %+v, want brokers 127.0.0.1:9092, topic %s, json", name, k, topic)
				}
				if c.groupID && k.GroupID == "" {
					t.Errorf("%s: kafka ingest has no consumer group", name)
				}
				// One group per topic: a reader joining or leaving one
				// topic's group never makes another topic's readers
				// rebalance.
				if other, dup := groups[k.GroupID]; dup && k.GroupID != "" {
					t.Errorf("%s and %s share consumer group %q", name, other, k.GroupID)
				}
				groups[k.GroupID] = name
				if k.PullQueueCapacity != c.queue || k.BatchMaxLen != c.batchMaxLen || k.PullMaxBytes != 0 || k.CommitInterval != 0 {
					t.Errorf("%s: kafka ingest queues: pullQueueCapacity %d, batchMaxLen %d, pullMaxBytes %d, commitInterval %d; want %d, %d, 0, 0",
						name, k.PullQueueCapacity, k.BatchMaxLen, k.PullMaxBytes, k.CommitInterval, c.queue, c.batchMaxLen)
				}
			}
			if root.MetricsSettings.Port != 9102 {
				t.Errorf("metrics port = %d, want 9102", root.MetricsSettings.Port)
			}
		})
	}
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	sort.Strings(out)
	return out
}

// Each topic has a branch of its own: the stages reachable from each ingest
// stage are exactly that protocol's, no stage is shared or unreachable, and
// each encode stage writes its protocol's prefix only.
func TestMainConfigBranches(t *testing.T) {
	root, err := parseFile(mainConfig)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		stages []string
		prefix string
	}{
		"ingest_dns":  {[]string{"encode_dns", "encode_dns_names", "ingest_dns", "label_unanswered"}, "pano_dns_"},
		"ingest_http": {[]string{"encode_http", "encode_http_hosts", "ingest_http", "label_http_noreply"}, "pano_http_"},
		"ingest_ssl":  {[]string{"encode_tls", "encode_tls_certs", "ingest_ssl", "label_tls_outcome"}, "pano_tls_"},
	}
	children := followers(root)
	seen := map[string]string{}
	for ingest, w := range want {
		var reach []string
		var walk func(string)
		walk = func(n string) {
			if other, ok := seen[n]; ok {
				t.Errorf("stage %s is reached from %s and %s", n, other, ingest)
				return
			}
			seen[n] = ingest
			reach = append(reach, n)
			for _, c := range children[n] {
				walk(c)
			}
		}
		walk(ingest)
		if got := sortedCopy(reach); !slices.Equal(got, w.stages) {
			t.Errorf("%s reaches %v, want %v", ingest, got, w.stages)
		}
		for _, n := range reach {
			if e := stage(t, root, n).Encode; e != nil && (e.Prom == nil || e.Prom.Prefix != w.prefix) {
				t.Errorf("%s (from %s): prefix %+v, want %s", n, ingest, e.Prom, w.prefix)
			}
		}
	}
	for _, p := range root.Parameters {
		if _, ok := seen[p.Name]; !ok {
			t.Errorf("stage %s is reached from no ingest stage", p.Name)
		}
	}
}

// followers maps each stage to the stages that follow it, in the
// configuration's order.
func followers(root config.Root) map[string][]string {
	out := map[string][]string{}
	for _, s := range root.Pipeline {
		if s.Follows != "" {
			out[s.Follows] = append(out[s.Follows], s.Name)
		}
	}
	return out
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
// flowlogs-pipeline's own constructors and connected as its pipeline graph
// says, minus Kafka.
type pipelineUnderTest struct {
	decoders     map[string]decode.Decoder // by ingest stage
	transformers map[string]transform.Transformer
	encoders     map[string]*encode.Prometheus
	children     map[string][]string
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

	p := &pipelineUnderTest{
		decoders:     map[string]decode.Decoder{},
		transformers: map[string]transform.Transformer{},
		encoders:     map[string]*encode.Prometheus{},
		children:     followers(root),
	}
	for _, sp := range root.Parameters {
		switch {
		case sp.Ingest != nil:
			if p.decoders[sp.Name], err = decode.GetDecoder(sp.Ingest.Kafka.Decoder); err != nil {
				t.Fatal(err)
			}
		case sp.Transform != nil:
			if sp.Transform.Type != "filter" {
				t.Fatalf("%s: transform %s; this test builds filters only", sp.Name, sp.Transform.Type)
			}
			if p.transformers[sp.Name], err = transform.NewTransformFilter(sp); err != nil {
				t.Fatal(err)
			}
		case sp.Encode != nil:
			if sp.Encode.Prom.PromConnectionInfo != nil {
				t.Errorf("%s opens its own metrics server; it must share the global one on :9102", sp.Name)
			}
			e, err := encode.NewEncodeProm(ops, sp)
			if err != nil {
				t.Fatalf("%s: %v", sp.Name, err)
			}
			p.encoders[sp.Name] = e.(*encode.Prometheus)
		default:
			t.Fatalf("stage %s: neither ingest, transform nor encode", sp.Name)
		}
	}
	return p
}

// feed runs JSON records into the branch of ingest stage ingest, through
// every stage that follows it, as flowlogs-pipeline would.
func (p *pipelineUnderTest) feed(t *testing.T, ingest string, lines ...string) {
	t.Helper()
	dec, ok := p.decoders[ingest]
	if !ok {
		t.Fatalf("no ingest stage %s", ingest)
	}
	var send func(stage string, rec config.GenericMap)
	send = func(stage string, rec config.GenericMap) {
		for _, next := range p.children[stage] {
			if tr, ok := p.transformers[next]; ok {
				out, keep := tr.Transform(rec)
				if !keep {
					t.Fatalf("%s dropped %v", next, rec)
				}
				send(next, out)
				continue
			}
			p.encoders[next].Encode(rec)
		}
	}
	for _, l := range lines {
		rec, err := dec.Decode([]byte(l))
		if err != nil {
			t.Fatalf("decode %s: %v", l, err)
		}
		send(ingest, rec)
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
			if strings.HasPrefix(mf.GetName(), "pano_") && !strings.HasPrefix(mf.GetName(), "pano_flp_") {
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
	// "_node" is what PANO's Zeek package adds to every line: the node label.
	p.feed(t, "ingest_dns",
		// answered, with and without rtt (stock Zeek omits rtt for NXDOMAIN)
		`{"_node":"n1","ts":1.5,"uid":"C1","id_orig_h":"198.18.0.2","id_resp_h":"198.18.0.1","proto":"udp","query":"a.pano.test","qtype_name":"A","rcode":0,"rcode_name":"NOERROR","rtt":0.00004,"TC":false,"rejected":false}`,
		`{"_node":"n1","ts":1.6,"uid":"C2","id_orig_h":"198.18.0.2","id_resp_h":"198.18.0.1","proto":"udp","query":"a.pano.test","qtype_name":"A","rcode":0,"rcode_name":"NOERROR","rtt":0.003,"TC":false,"rejected":false}`,
		`{"_node":"n1","ts":1.7,"uid":"C3","id_orig_h":"198.18.0.2","id_resp_h":"198.18.0.1","proto":"udp","query":"nx.pano.test","qtype_name":"AAAA","rcode":3,"rcode_name":"NXDOMAIN","TC":false,"rejected":false}`,
		`{"_node":"n1","ts":1.8,"uid":"C4","id_orig_h":"198.18.0.2","id_resp_h":"198.18.0.5","proto":"udp","query":"big.pano.test","qtype_name":"TXT","rcode":0,"rcode_name":"NOERROR","rtt":0.2,"TC":true,"rejected":false}`,
		`{"_node":"n1","ts":1.9,"uid":"C5","id_orig_h":"198.18.0.2","id_resp_h":"198.18.0.5","proto":"udp","query":"x.pano.test","qtype_name":"A","rcode":5,"rcode_name":"REFUSED","rtt":0.0001,"TC":false,"rejected":true}`,
		// no response seen: no rcode, no rtt
		`{"_node":"n1","ts":2.0,"uid":"C6","id_orig_h":"198.18.0.2","id_resp_h":"198.18.0.5","proto":"udp","query":"a.pano.test","qtype_name":"A","TC":false,"rejected":false}`,
	)
	fams := p.families(t)

	got := counterValues(t, fams, "pano_dns_queries_total")
	want := map[string]float64{
		"node=n1,qtype=A,rcode=NOERROR,server=198.18.0.1":     2,
		"node=n1,qtype=AAAA,rcode=NXDOMAIN,server=198.18.0.1": 1,
		"node=n1,qtype=TXT,rcode=NOERROR,server=198.18.0.5":   1,
		"node=n1,qtype=A,rcode=REFUSED,server=198.18.0.5":     1,
		"node=n1,qtype=A,rcode=unanswered,server=198.18.0.5":  1,
	}
	assertMap(t, "pano_dns_queries_total", got, want)
	assertMap(t, "pano_dns_unanswered_queries_total", counterValues(t, fams, "pano_dns_unanswered_queries_total"),
		map[string]float64{"node=n1,server=198.18.0.5": 1})
	assertMap(t, "pano_dns_truncated_responses_total", counterValues(t, fams, "pano_dns_truncated_responses_total"),
		map[string]float64{"node=n1,server=198.18.0.5": 1})
	assertMap(t, "pano_dns_rejected_responses_total", counterValues(t, fams, "pano_dns_rejected_responses_total"),
		map[string]float64{"node=n1,server=198.18.0.5": 1})
	assertMap(t, "pano_dns_queries_by_name_total", counterValues(t, fams, "pano_dns_queries_by_name_total"),
		map[string]float64{"node=n1,qname=a.pano.test": 3, "node=n1,qname=nx.pano.test": 1, "node=n1,qname=big.pano.test": 1, "node=n1,qname=x.pano.test": 1})

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
		h1, h5 := byServer["node=n1,server=198.18.0.1"], byServer["node=n1,server=198.18.0.5"]
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

// The unbounded labels (query names, Host headers, TLS server names) have
// stages of their own with a cap: records beyond it are not counted there,
// while the per-server metrics still see every record.
func TestCardinalityCaps(t *testing.T) {
	root, err := parseFile(mainConfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		stage, ingest string
		expiry        time.Duration
		record        string // with %d for a distinct name
		capped        string // the capped metric
		main          string // a metric of the same branch without a cap
		mainKey       string // its series every record counts in
	}{
		{"encode_dns_names", "ingest_dns", 5 * time.Minute,
			`{"_node":"n1","uid":"C%[1]d","id_resp_h":"198.18.0.1","query":"n%[1]d.pano.test","qtype_name":"A","rcode":0,"rcode_name":"NOERROR","rtt":0.001}`,
			"pano_dns_queries_by_name_total", "pano_dns_queries_total", "node=n1,qtype=A,rcode=NOERROR,server=198.18.0.1"},
		{"encode_http_hosts", "ingest_http", 5 * time.Minute,
			`{"uid":"C%[1]d","id_resp_h":"198.18.1.1","method":"GET","host":"h%[1]d.pano.test","uri":"/","status_code":200,"response_time":0.001,"request_body_len":0,"response_body_len":1}`,
			"pano_http_requests_by_host_total", "pano_http_requests_total", "method=GET,server=198.18.1.1,status_code=200"},
		{"encode_tls_certs", "ingest_ssl", 24 * time.Hour,
			`{"uid":"C%[1]d","id_resp_h":"198.18.2.1","version":"TLSv12","cipher":"TLS_AES","server_name":"s%[1]d.pano.test","established":true,"handshake_time":0.001,"server_cert_not_valid_after":1800000000}`,
			"pano_tls_cert_not_valid_after_timestamp_seconds", "pano_tls_handshakes_total", "cipher=TLS_AES,outcome=established,server=198.18.2.1,version=TLSv12"},
	} {
		t.Run(c.stage, func(t *testing.T) {
			prom := stage(t, root, c.stage).Encode.Prom
			if prom.MaxMetrics != 2000 || prom.ExpiryTime.Duration != c.expiry {
				t.Fatalf("%s: maxMetrics %d, expiryTime %v; want 2000 and %v (README.md)", c.stage, prom.MaxMetrics, prom.ExpiryTime.Duration, c.expiry)
			}
			p := buildMain(t)
			var lines []string
			for i := 0; i < prom.MaxMetrics+100; i++ {
				lines = append(lines, fmt.Sprintf(c.record, i))
			}
			p.feed(t, c.ingest, lines...)
			fams := p.families(t)
			if n := len(fams[c.capped].GetMetric()); n != prom.MaxMetrics {
				t.Errorf("%s series = %d, want the cap %d", c.capped, n, prom.MaxMetrics)
			}
			// The cap is per stage: the branch's other metrics see every record.
			if v := counterValues(t, fams, c.main)[c.mainKey]; v != float64(len(lines)) {
				t.Errorf("%s = %v, want %d (the cap must not touch the other stages)", c.main, v, len(lines))
			}
		})
	}
}

func TestHTTPMetricsFromRecords(t *testing.T) {
	p := buildMain(t)
	p.feed(t, "ingest_http",
		`{"ts":1.5,"uid":"C1","id_orig_h":"198.18.0.2","id_orig_p":40000,"id_resp_h":"198.18.1.1","id_resp_p":80,"trans_depth":1,"method":"GET","host":"www.pano.test","uri":"/","version":"1.1","user_agent":"h2load","request_body_len":0,"response_body_len":612,"status_code":200,"status_msg":"OK","response_time":0.0004}`,
		`{"ts":1.6,"uid":"C1","id_orig_h":"198.18.0.2","id_orig_p":40000,"id_resp_h":"198.18.1.1","id_resp_p":80,"trans_depth":2,"method":"GET","host":"www.pano.test","uri":"/missing","version":"1.1","request_body_len":0,"response_body_len":153,"status_code":404,"status_msg":"Not Found","response_time":0.0006}`,
		`{"ts":1.7,"uid":"C2","id_orig_h":"198.18.0.2","id_orig_p":40001,"id_resp_h":"198.18.1.1","id_resp_p":80,"trans_depth":1,"method":"POST","host":"api.pano.test","uri":"/submit","version":"1.1","request_body_len":1000,"response_body_len":20,"status_code":500,"status_msg":"Internal Server Error","response_time":0.25}`,
		// no Host header (HTTP/1.0): counted everywhere but by host
		`{"ts":1.8,"uid":"C3","id_orig_h":"198.18.0.3","id_orig_p":40002,"id_resp_h":"198.18.1.2","id_resp_p":8080,"trans_depth":1,"method":"GET","uri":"/","version":"1.0","request_body_len":0,"response_body_len":100,"status_code":200,"status_msg":"OK","response_time":0.02}`,
		// no reply seen: no status_code, no response_time
		`{"ts":1.9,"uid":"C4","id_orig_h":"198.18.0.3","id_orig_p":40003,"id_resp_h":"198.18.1.2","id_resp_p":8080,"trans_depth":1,"method":"GET","host":"slow.pano.test","uri":"/hang","version":"1.1","request_body_len":0,"response_body_len":0}`,
	)
	fams := p.families(t)
	assertMap(t, "pano_http_requests_total", counterValues(t, fams, "pano_http_requests_total"), map[string]float64{
		"method=GET,server=198.18.1.1,status_code=200":  1,
		"method=GET,server=198.18.1.1,status_code=404":  1,
		"method=POST,server=198.18.1.1,status_code=500": 1,
		"method=GET,server=198.18.1.2,status_code=200":  1,
		"method=GET,server=198.18.1.2,status_code=none": 1,
	})
	assertMap(t, "pano_http_request_body_bytes_total", counterValues(t, fams, "pano_http_request_body_bytes_total"),
		map[string]float64{"server=198.18.1.1": 1000, "server=198.18.1.2": 0})
	assertMap(t, "pano_http_response_body_bytes_total", counterValues(t, fams, "pano_http_response_body_bytes_total"),
		map[string]float64{"server=198.18.1.1": 785, "server=198.18.1.2": 100})
	assertMap(t, "pano_http_requests_by_host_total", counterValues(t, fams, "pano_http_requests_by_host_total"),
		map[string]float64{"host=www.pano.test": 2, "host=api.pano.test": 1, "host=slow.pano.test": 1})
	checkTwinHistograms(t, fams, "pano_http_response_time", map[string]histWant{
		"server=198.18.1.1": {3, 0.251},
		"server=198.18.1.2": {1, 0.02},
	})
}

func TestTLSMetricsFromRecords(t *testing.T) {
	p := buildMain(t)
	p.feed(t, "ingest_ssl",
		// TLS 1.2 with the certificate in the clear, twice: the gauge keeps the last one's.
		`{"ts":1.1,"uid":"C1","id_orig_h":"198.18.0.2","id_orig_p":40000,"id_resp_h":"198.18.2.1","id_resp_p":443,"version":"TLSv12","cipher":"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256","curve":"x25519","server_name":"www.pano.test","resumed":false,"established":true,"ssl_history":"CsxknGIi","handshake_time":0.002,"server_cert_not_valid_after":1767225600.0,"server_cert_subject":"CN=www.pano.test","server_cert_san_dns":["www.pano.test"]}`,
		`{"ts":1.2,"uid":"C2","id_orig_h":"198.18.0.2","id_orig_p":40001,"id_resp_h":"198.18.2.1","id_resp_p":443,"version":"TLSv12","cipher":"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256","curve":"x25519","server_name":"www.pano.test","resumed":false,"established":true,"ssl_history":"CsxknGIi","handshake_time":0.004,"server_cert_not_valid_after":1798761600.0,"server_cert_subject":"CN=www.pano.test","server_cert_san_dns":["www.pano.test"]}`,
		// TLS 1.3: the certificate is encrypted, no expiry on the record.
		`{"ts":1.3,"uid":"C3","id_orig_h":"198.18.0.2","id_orig_p":40002,"id_resp_h":"198.18.2.1","id_resp_p":443,"version":"TLSv13","cipher":"TLS_AES_256_GCM_SHA384","curve":"x25519","server_name":"api.pano.test","resumed":false,"established":true,"ssl_history":"CsiI","handshake_time":0.001}`,
		// TLS 1.0 on another server, another name.
		`{"ts":1.4,"uid":"C4","id_orig_h":"198.18.0.3","id_orig_p":40003,"id_resp_h":"198.18.2.2","id_resp_p":443,"version":"TLSv10","cipher":"TLS_RSA_WITH_AES_128_CBC_SHA","server_name":"old.pano.test","resumed":false,"established":true,"ssl_history":"CsxknGIi","handshake_time":0.003,"server_cert_not_valid_after":1700000000.0,"server_cert_subject":"CN=old.pano.test","server_cert_san_dns":["old.pano.test"]}`,
		// failed after the ServerHello (client alert), and before it (no version, no cipher).
		`{"ts":1.5,"uid":"C5","id_orig_h":"198.18.0.3","id_orig_p":40004,"id_resp_h":"198.18.2.2","id_resp_p":443,"version":"TLSv12","cipher":"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256","server_name":"old.pano.test","resumed":false,"established":false,"ssl_history":"CsxkA","last_alert":"bad_certificate","handshake_time":0.005}`,
		`{"ts":1.6,"uid":"C6","id_orig_h":"198.18.0.3","id_orig_p":40005,"id_resp_h":"198.18.2.2","id_resp_p":443,"server_name":"old.pano.test","resumed":false,"established":false,"ssl_history":"C"}`,
	)
	fams := p.families(t)
	assertMap(t, "pano_tls_handshakes_total", counterValues(t, fams, "pano_tls_handshakes_total"), map[string]float64{
		"cipher=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,outcome=established,server=198.18.2.1,version=TLSv12": 2,
		"cipher=TLS_AES_256_GCM_SHA384,outcome=established,server=198.18.2.1,version=TLSv13":                1,
		"cipher=TLS_RSA_WITH_AES_128_CBC_SHA,outcome=established,server=198.18.2.2,version=TLSv10":          1,
		"cipher=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,outcome=failed,server=198.18.2.2,version=TLSv12":      1,
		"cipher=none,outcome=failed,server=198.18.2.2,version=none":                                         1,
	})
	mf := fams["pano_tls_cert_not_valid_after_timestamp_seconds"]
	if mf.GetType() != dto.MetricType_GAUGE {
		t.Fatalf("pano_tls_cert_not_valid_after_timestamp_seconds: %v, want a gauge", mf.GetType())
	}
	certs := map[string]float64{}
	for _, m := range mf.GetMetric() {
		certs[labelsOf(m)] = m.GetGauge().GetValue()
	}
	assertMap(t, "pano_tls_cert_not_valid_after_timestamp_seconds", certs, map[string]float64{
		"server=198.18.2.1,server_name=www.pano.test": 1798761600,
		"server=198.18.2.2,server_name=old.pano.test": 1700000000,
	})
	checkTwinHistograms(t, fams, "pano_tls_handshake_time", map[string]histWant{
		"server=198.18.2.1": {3, 0.007},
		"server=198.18.2.2": {2, 0.008},
	})
}

type histWant struct {
	count uint64
	sum   float64 // seconds
}

// checkTwinHistograms checks base_seconds and its milliseconds twin: the
// same observations, the client library's default buckets (prometheus.yml
// depends on that).
func checkTwinHistograms(t *testing.T, fams map[string]*dto.MetricFamily, base string, want map[string]histWant) {
	t.Helper()
	for name, scale := range map[string]float64{base + "_seconds": 1, base + "_milliseconds": 1000} {
		mf, ok := fams[name]
		if !ok || mf.GetType() != dto.MetricType_HISTOGRAM {
			t.Errorf("%s missing or not a histogram", name)
			continue
		}
		got := map[string]*dto.Histogram{}
		for _, m := range mf.GetMetric() {
			got[labelsOf(m)] = m.GetHistogram()
		}
		if !slices.Equal(keys(got), keys(want)) {
			t.Errorf("%s series = %v, want %v", name, keys(got), keys(want))
		}
		for k, w := range want {
			h := got[k]
			if h == nil {
				continue
			}
			if h.GetSampleCount() != w.count || math.Abs(h.GetSampleSum()-w.sum*scale) > 1e-9*scale {
				t.Errorf("%s{%s}: count %d sum %v, want %d and %v", name, k, h.GetSampleCount(), h.GetSampleSum(), w.count, w.sum*scale)
			}
			var les []float64
			for _, b := range h.GetBucket() {
				les = append(les, b.GetUpperBound())
			}
			if !slices.Equal(les, prometheus.DefBuckets) {
				t.Errorf("%s buckets = %v, want the client defaults %v (did flowlogs-pipeline start honouring `buckets`? then drop the milliseconds twin and the relabelling in prometheus.yml)", name, les, prometheus.DefBuckets)
			}
		}
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
