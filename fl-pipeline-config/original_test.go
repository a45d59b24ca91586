package flpconfig

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/netobserv/flowlogs-pipeline/pkg/api"
	"github.com/netobserv/flowlogs-pipeline/pkg/config"
	"github.com/netobserv/flowlogs-pipeline/pkg/operational"
	"github.com/netobserv/flowlogs-pipeline/pkg/pipeline/decode"
	"github.com/netobserv/flowlogs-pipeline/pkg/pipeline/encode"
	"github.com/netobserv/flowlogs-pipeline/pkg/pipeline/extract"
	"github.com/netobserv/flowlogs-pipeline/pkg/pipeline/transform"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The baseline is only worth something if it stays the original demo's
// configuration: these tests pin its shape and the behaviour (defects
// included) that its header describes.

func TestOriginalPortKeepsTheOriginalShape(t *testing.T) {
	root, err := parseFile(originalConfig)
	if err != nil {
		t.Fatal(err)
	}
	if !root.MetricsSettings.SuppressDefaultMetrics {
		t.Errorf("metricsSettings.suppressDefaultMetrics (the original's suppressGoMetrics) is off")
	}
	var graph []string
	for _, s := range root.Pipeline {
		graph = append(graph, s.Name+"<-"+s.Follows)
	}
	wantGraph := []string{
		"ingest<-",
		"prom_query_count<-ingest",
		"aggregate_query_name<-ingest", "filter_query_name<-aggregate_query_name", "prom_query_name<-filter_query_name",
		"aggregate_qtype<-ingest", "filter_qtype<-aggregate_qtype", "prom_qtype<-filter_qtype",
		"aggregate_rcode<-ingest", "filter_rcode<-aggregate_rcode", "prom_rcode<-filter_rcode",
		"aggregate_rtt_avg<-ingest", "prom_rtt_avg<-aggregate_rtt_avg",
		"aggregate_rtt_hist<-ingest", "prom_rtt_hist<-aggregate_rtt_hist",
	}
	if !slices.Equal(graph, wantGraph) {
		t.Errorf("pipeline = %v\nwant the original's %v", graph, wantGraph)
	}

	// name: groupBy / operation / key
	wantAgg := map[string]string{
		"aggregate_query_name": "query_name: [query] count query",
		"aggregate_qtype":      "qtype_count: [qtype_name] count qtype",
		"aggregate_rcode":      "rcode_count: [rcode_name] count rcode",
		"aggregate_rtt_avg":    "aggr_rtt_avg: [id_resp_h] avg rtt",
		"aggregate_rtt_hist":   "aggr_rtt_hist: [] raw_values rtt",
	}
	for name, want := range wantAgg {
		ex := stage(t, root, name).Extract
		if ex == nil || ex.Type != api.AggregateType || ex.Aggregates == nil || len(ex.Aggregates.Rules) != 1 {
			t.Errorf("%s is not a one-rule aggregates stage: %+v", name, ex)
			continue
		}
		r := ex.Aggregates.Rules[0]
		got := r.Name + ": [" + strings.Join(r.GroupByKeys, ",") + "] " + string(r.OperationType) + " " + r.OperationKey
		if got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}

	for name, input := range map[string]string{"filter_query_name": "query", "filter_qtype": "qtype_name", "filter_rcode": "rcode_name"} {
		tr := stage(t, root, name).Transform
		if tr == nil || tr.Filter == nil || len(tr.Filter.Rules) != 1 {
			t.Errorf("%s is not a one-rule filter: %+v", name, tr)
			continue
		}
		r := tr.Filter.Rules[0]
		if r.Type != api.RemoveEntryIfDoesntExist || r.RemoveEntry == nil || r.RemoveEntry.Input != input {
			t.Errorf("%s rule = %+v, want remove_entry_if_doesnt_exist on %s", name, r, input)
		}
	}

	// stage: metric type valueKey [labels] buckets
	wantMetrics := map[string]string{
		"prom_query_count": "query_count counter  [] []",
		"prom_query_name":  "query_name counter recent_op_value [query] []",
		"prom_qtype":       "qtype_total counter recent_op_value [qtype_name] []",
		"prom_rcode":       "rcode_total counter recent_op_value [rcode_name] []",
		"prom_rtt_avg":     "rtt_avg gauge recent_op_value [id_resp_h] []",
		"prom_rtt_hist":    "rtt_histogram agg_histogram recent_raw_values [] [1e-05 0.0001 0.001 0.01 0.1 1 10]",
	}
	for name, want := range wantMetrics {
		enc := stage(t, root, name).Encode
		if enc == nil || enc.Prom == nil || len(enc.Prom.Metrics) != 1 {
			t.Errorf("%s is not a one-metric prom stage: %+v", name, enc)
			continue
		}
		if enc.Prom.PromConnectionInfo != nil {
			t.Errorf("%s opens its own metrics server", name)
		}
		if p := enc.Prom.Prefix; p != root.MetricsSettings.Prefix || strings.HasPrefix(p, "pano_dns_") {
			t.Errorf("%s prefix %q: want the baseline's own prefix (%q), never PANO's pano_dns_", name, p, root.MetricsSettings.Prefix)
		}
		m := enc.Prom.Metrics[0]
		got := fmt.Sprintf("%s %s %s %v %v", m.Name, m.Type, m.ValueKey, m.Labels, m.Buckets)
		if got != want {
			t.Errorf("%s metric = %q, want %q", name, got, want)
		}
	}
}

// originalPipeline runs the ported original's stages, built with
// flowlogs-pipeline's own constructors, on batches of records, following
// the configuration's graph as flowlogs-pipeline does (an aggregates stage
// sees a whole batch; every other stage one entry at a time).
type originalPipeline struct {
	root       config.Root
	decoder    decode.Decoder
	extractors map[string]extract.Extractor
	filters    map[string]transform.Transformer
	encoders   map[string]*encode.Prometheus
	emitted    map[string]int // entries out of each aggregates stage, last batch
	dropped    map[string]int // entries the filter stages removed, all batches
}

func buildOriginal(t *testing.T) *originalPipeline {
	t.Helper()
	root, err := parseFile(originalConfig)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	prometheus.DefaultRegisterer, prometheus.DefaultGatherer = reg, reg
	ops := operational.NewMetrics(&root.MetricsSettings)
	p := &originalPipeline{
		root: root, extractors: map[string]extract.Extractor{}, filters: map[string]transform.Transformer{},
		encoders: map[string]*encode.Prometheus{}, emitted: map[string]int{}, dropped: map[string]int{},
	}
	for _, sp := range root.Parameters {
		switch {
		case sp.Ingest != nil:
			if p.decoder, err = decode.GetDecoder(sp.Ingest.Kafka.Decoder); err != nil {
				t.Fatal(err)
			}
		case sp.Extract != nil:
			if p.extractors[sp.Name], err = extract.NewExtractAggregate(sp); err != nil {
				t.Fatalf("%s: %v", sp.Name, err)
			}
		case sp.Transform != nil:
			if p.filters[sp.Name], err = transform.NewTransformFilter(sp); err != nil {
				t.Fatalf("%s: %v", sp.Name, err)
			}
		case sp.Encode != nil:
			e, err := encode.NewEncodeProm(ops, sp)
			if err != nil {
				t.Fatalf("%s: %v", sp.Name, err)
			}
			p.encoders[sp.Name] = e.(*encode.Prometheus)
		}
	}
	return p
}

// batch decodes lines and runs them through every branch as one batch.
func (p *originalPipeline) batch(t *testing.T, lines ...string) {
	t.Helper()
	var recs []config.GenericMap
	for _, l := range lines {
		r, err := p.decoder.Decode([]byte(l))
		if err != nil {
			t.Fatalf("decode %s: %v", l, err)
		}
		recs = append(recs, r)
	}
	p.run("ingest", recs)
}

func (p *originalPipeline) run(from string, entries []config.GenericMap) {
	for _, s := range p.root.Pipeline {
		if s.Follows != from {
			continue
		}
		out := entries
		switch {
		case p.extractors[s.Name] != nil:
			out = p.extractors[s.Name].Extract(entries)
			p.emitted[s.Name] = len(out)
		case p.filters[s.Name] != nil:
			out = nil
			for _, e := range entries {
				if kept, ok := p.filters[s.Name].Transform(e); ok {
					out = append(out, kept)
				} else {
					p.dropped[s.Name]++
				}
			}
		case p.encoders[s.Name] != nil:
			for _, e := range entries {
				p.encoders[s.Name].Encode(e)
			}
			continue
		}
		p.run(s.Name, out)
	}
}

// families gathers the baseline's metrics. Every encode stage publishes
// on flowlogs-pipeline's shared server (one per process, so it also holds
// the registries of other tests' stages): any encoder's gatherer sees all.
func (p *originalPipeline) families(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := p.encoders["prom_query_count"].Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "pano_orig_dns_") {
			out[mf.GetName()] = mf
		}
	}
	return out
}

func gaugeValues(t *testing.T, fams map[string]*dto.MetricFamily, name string) map[string]float64 {
	t.Helper()
	mf, ok := fams[name]
	if !ok || mf.GetType() != dto.MetricType_GAUGE {
		t.Fatalf("%s missing or not a gauge; have %v", name, keys(fams))
	}
	out := map[string]float64{}
	for _, m := range mf.GetMetric() {
		out[labelsOf(m)] = m.GetGauge().GetValue()
	}
	return out
}

func TestOriginalPortBehaviour(t *testing.T) {
	p := buildOriginal(t)
	// Batch 1: per server, a record without rtt comes first (it counts in
	// the average's divisor), one query is unanswered.
	p.batch(t,
		`{"id_resp_h":"198.18.0.1","query":"b.pano.test","qtype_name":"AAAA","rcode":3,"rcode_name":"NXDOMAIN"}`,
		`{"id_resp_h":"198.18.0.1","query":"a.pano.test","qtype_name":"A","rcode":0,"rcode_name":"NOERROR","rtt":0.002}`,
		`{"id_resp_h":"198.18.0.5","query":"a.pano.test","qtype_name":"A"}`,
		`{"id_resp_h":"198.18.0.5","query":"c.pano.test","qtype_name":"A","rcode":0,"rcode_name":"NOERROR","rtt":0.010}`,
	)
	if n := p.emitted["aggregate_query_name"]; n != 3 {
		t.Errorf("aggregate_query_name emitted %d entries for 3 names", n)
	}
	avg := gaugeValues(t, p.families(t), "pano_orig_dns_rtt_avg")
	assertNear(t, "rtt_avg after batch 1 (true averages 0.002, 0.010)", avg,
		map[string]float64{"id_resp_h=198.18.0.1": 0.001, "id_resp_h=198.18.0.5": 0.005})

	// Batch 2: one record, one new name, one server.
	p.batch(t, `{"id_resp_h":"198.18.0.1","query":"d.pano.test","qtype_name":"A","rcode":0,"rcode_name":"NOERROR","rtt":0.004}`)
	if n := p.emitted["aggregate_query_name"]; n != 4 {
		t.Errorf("aggregate_query_name emitted %d entries for a batch of 1 record; the original re-emits all 4 groups", n)
	}
	for name, n := range p.dropped {
		t.Errorf("%s dropped %d aggregate entries; the original's filters never do", name, n)
	}

	fams := p.families(t)
	assertMap(t, "query_count", counterValues(t, fams, "pano_orig_dns_query_count"), map[string]float64{"": 5})
	assertMap(t, "query_name", counterValues(t, fams, "pano_orig_dns_query_name"), map[string]float64{
		"query=a.pano.test": 2, "query=b.pano.test": 1, "query=c.pano.test": 1, "query=d.pano.test": 1})
	assertMap(t, "qtype_total", counterValues(t, fams, "pano_orig_dns_qtype_total"), map[string]float64{
		"qtype_name=A": 4, "qtype_name=AAAA": 1})
	// The unanswered query is not counted at all.
	assertMap(t, "rcode_total", counterValues(t, fams, "pano_orig_dns_rcode_total"), map[string]float64{
		"rcode_name=NOERROR": 3, "rcode_name=NXDOMAIN": 1})
	// Last batch only: 198.18.0.5 reads 0 (true average 0.010), 198.18.0.1
	// the one value of batch 2 (true average 0.003).
	assertNear(t, "rtt_avg after batch 2", gaugeValues(t, fams, "pano_orig_dns_rtt_avg"),
		map[string]float64{"id_resp_h=198.18.0.1": 0.004, "id_resp_h=198.18.0.5": 0})

	mf := fams["pano_orig_dns_rtt_histogram"]
	if mf == nil || mf.GetType() != dto.MetricType_HISTOGRAM || len(mf.GetMetric()) != 1 {
		t.Fatalf("pano_orig_dns_rtt_histogram missing, not a histogram or not a single series: %v", mf)
	}
	h := mf.GetMetric()[0].GetHistogram()
	if h.GetSampleCount() != 3 || math.Abs(h.GetSampleSum()-0.016) > 1e-12 {
		t.Errorf("rtt_histogram count %d sum %v, want 3, 0.016", h.GetSampleCount(), h.GetSampleSum())
	}
	var les []float64
	for _, b := range h.GetBucket() {
		les = append(les, b.GetUpperBound())
	}
	if !slices.Equal(les, prometheus.DefBuckets) {
		t.Errorf("rtt_histogram buckets = %v; the header says v1.11 ignores the configured ones and uses %v", les, prometheus.DefBuckets)
	}
}

func assertNear(t *testing.T, name string, got, want map[string]float64) {
	t.Helper()
	for k, w := range want {
		if g, ok := got[k]; !ok || math.Abs(g-w) > 1e-12 {
			t.Errorf("%s{%s} = %v, want %v", name, k, got[k], w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s{%s} = %v, not expected", name, k, got[k])
		}
	}
}
