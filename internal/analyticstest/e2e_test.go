package analyticstest

import (
	"context"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pano-observability/pano/internal/testenv"
	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"
)

// window is the rate window of the test: Grafana's $__rate_interval and
// $__range, and the recording rules' 1m windows, all become this. With a
// 1 s scrape it holds 60 samples; B has most of it to arrive.
const (
	window   = time.Minute
	interval = time.Second
)

// TestDNSLogThroughPipelineMatchesDashboard writes a dns.log with known
// content, runs it through the shim (or, until the shim exists, its Kafka
// message format), a real Kafka broker, flowlogs-pipeline with PANO's
// configuration and Prometheus with PANO's scrape configuration and rules,
// then runs every query of every dashboard panel and compares it with what
// the records say.
//
// The records go in two phases. Phase A holds every label combination, so
// that every series exists before phase B; the queries are evaluated over
// a window that starts after A and ends after B, so that rates, shares,
// averages and quantiles are B's alone, and totals are A+B.
func TestDNSLogThroughPipelineMatchesDashboard(t *testing.T) {
	root := testenv.RepoRoot(t)
	k := testenv.StartKafka(t)
	flp := testenv.StartPANOFLP(t, k)
	src := startSource(t, k)

	promYAML, targets := prometheusConfig(t, root, hostPort(t, flp.MetricsURL), src.MetricsAddr())
	prom := testenv.StartPrometheus(t, promYAML, ruleFiles(t, root)...)
	prom.WaitTargetsUp(t, targets)
	client, err := api.NewClient(api.Config{Address: prom.URL})
	if err != nil {
		t.Fatal(err)
	}
	q := &querier{api: promv1.NewAPI(client)}

	gen := NewGenerator(20261126)
	a := append(gen.Grid(), gen.Random(1500)...)
	b := gen.Random(1500)
	ta, tb, all := NewTally(a), NewTally(b), NewTally(append(append([]Record{}, a...), b...))
	shim := src.MetricsAddr() != ""

	src.Append(t, a)
	doneA := q.waitTotals(t, ta, shim)
	q.checkMergedHistogram(t)
	time.Sleep(6 * interval)
	startB := time.Now()
	src.Append(t, b)
	doneB := q.waitTotals(t, all, shim)

	// Evaluate just after a flowlogs-pipeline scrape, once the window (and
	// the recording rules' window, one evaluation older) is clear of A.
	time.Sleep(max(3*interval, time.Until(doneA.Add(window+2*interval))))
	at, dt := q.sampleSpan(t, `pano_dns_queries_total`)
	if at.Add(-window).Add(-interval).Before(doneA) || !at.Add(-window).Before(startB.Add(-interval)) {
		t.Fatalf("window [%v, %v] does not start between A done (%v) and B start (%v): B took %v to arrive",
			at.Add(-window), at, doneA, startB, doneB.Sub(startB))
	}
	shimDT := dt
	if shim {
		_, shimDT = q.sampleSpanAt(t, `pano_shim_records_produced_total`, at)
	}
	t.Logf("A: %d records, B: %d records; evaluating at %v, samples span %v", len(a), len(b), at.Format(time.RFC3339Nano), dt)

	d, err := LoadDashboard(filepath.Join(root, "grafana", "dashboards", "pano-dns.json"))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"__rate_interval": model.Duration(window).String(), "__range": model.Duration(window).String(),
		"__interval": model.Duration(interval).String(), "server": ".*", "node": ".*",
	}
	checkDashboard(t, q, d, at, vars, expectations(ta, tb, all, dt, shimDT, shim), true)

	// The quiet server alone: where the truth is 0, a panel shows 0, not
	// "No data" (a counter it never incremented has no series at all).
	vars["server"] = strings.ReplaceAll(QuietServer, ".", `\\.`)
	checkDashboard(t, q, d, at, vars, map[string]check{
		"Unanswered share/A":                 exact("", one(0)),
		"Unanswered share per server/A":      exact("server", map[string]float64{QuietServer: 0}),
		"Truncated and rejected responses/A": exact("server", map[string]float64{QuietServer: 0}),
		"Truncated and rejected responses/B": exact("server", map[string]float64{QuietServer: 0}),
		"Server error ratio/A":               exact("server", map[string]float64{QuietServer: 0}),
		"Server error ratio/B":               exact("server", map[string]float64{QuietServer: 0}),
	}, false)

	// One node picked: the shim's series, which compose's Prometheus
	// scrapes without a node label (one host), still show.
	if shim {
		vars["server"], vars["node"] = ".*", "node-a"
		checkDashboard(t, q, d, at, vars, map[string]check{
			"Shim lag/A":           allEqual("log", 0),
			"Records per second/A": exact("", one(float64(tb.Total)/shimDT.Seconds())),
		}, false)
	}
}

// checkDashboard runs every query of dashboard d that wants holds a check
// for at the time at, with vars expanded, and checks it. With all, every
// query must have a check and every check a query; otherwise only the
// latter.
func checkDashboard(t *testing.T, q *querier, d *Dashboard, at time.Time, vars map[string]string, wants map[string]check, all bool) {
	t.Helper()
	seen := map[string]bool{}
	for _, p := range d.QueryPanels() {
		for _, tg := range p.Targets {
			where := p.Title + "/" + tg.RefID
			check, ok := wants[where]
			if !ok {
				if all {
					t.Errorf("%s: no expected value for this panel query: add one", where)
				}
				continue
			}
			seen[where] = true
			expr, err := ExpandVariables(tg.Expr, vars)
			if err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			v, err := q.instant(expr, at)
			if err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			check(t, where+": "+expr, v)
		}
	}
	for where := range wants {
		if !seen[where] {
			t.Errorf("expected values for %s, which the dashboard %q does not have", where, d.Title)
		}
	}
}

func one(v float64) map[string]float64 { return map[string]float64{"": v} }

// expectations maps "panel title/refId" to the check of its result, all
// computed from the records: ta and tb are phases A and B, dt the span of
// the samples in the window (rates are B's counts over dt).
func expectations(ta, tb, all *Tally, dt, shimDT time.Duration, shim bool) map[string]check {
	sec := dt.Seconds()
	rate := func(keys map[string]int, counts map[string]int) map[string]float64 {
		out := map[string]float64{}
		for k := range keys {
			out[k] = float64(counts[k]) / sec
		}
		return out
	}
	share := func(keys map[string]int, counts map[string]int, total int) map[string]float64 {
		out := map[string]float64{}
		for k := range keys {
			out[k] = float64(counts[k]) / float64(total)
		}
		return out
	}
	perServer := func(f func(s string) float64) map[string]float64 {
		out := map[string]float64{}
		for s := range ta.ByServer {
			out[s] = f(s)
		}
		return out
	}
	ratio := func(n map[string]int) map[string]float64 {
		return perServer(func(s string) float64 { return float64(n[s]) / float64(tb.ByServer[s]) })
	}
	serverErrors := map[string]int{}
	serverServfail := map[string]int{}
	for s, byRcode := range tb.ByServerRcode {
		for rc, n := range byRcode {
			if rc != "NOERROR" && rc != "NXDOMAIN" && rc != "unanswered" {
				serverErrors[s] += n
			}
		}
		serverServfail[s] = byRcode["SERVFAIL"]
	}
	avg := perServer(func(s string) float64 { return tb.RTT.Sum[s] / float64(len(tb.RTT.ByServer[s])) })
	quantile := func(q float64) map[string]float64 {
		return perServer(func(s string) float64 { return Quantile(tb.RTT.ByServer[s], q) })
	}
	topNames := map[string]float64{}
	for n, c := range tb.ByName {
		topNames[n] = float64(c) * window.Seconds() / sec // increase() over the window
	}

	w := map[string]check{
		// increase() over the range, extrapolated as Top query names.
		"Total queries/A":                    exact("", one(float64(tb.Total)*window.Seconds()/sec)),
		"Query rate/A":                       exact("server", rate(ta.ByServer, tb.ByServer)),
		"Average response time per server/A": exact("server", avg),
		"Return code rate/A":                 exact("rcode", rate(ta.ByRcode, tb.ByRcode)),
		"Return code share/A":                exact("rcode", share(ta.ByRcode, tb.ByRcode, tb.Total)),
		"Query type rate/A":                  exact("qtype", rate(ta.ByQtype, tb.ByQtype)),
		"Query type share/A":                 exact("qtype", share(ta.ByQtype, tb.ByQtype, tb.Total)),
		"Server error ratio/A":               exact("server", ratio(serverErrors)),
		"Server error ratio/B":               exact("server", ratio(serverServfail)),
		"Server latency (p50, p99, mean)/A":  sameBucket("server", quantile(0.5)),
		"Server latency (p50, p99, mean)/B":  sameBucket("server", quantile(0.99)),
		"Server latency (p50, p99, mean)/C":  exact("server", avg),
		"Unanswered share per server/A":      exact("server", ratio(tb.Unanswered)),
		"Unanswered share/A":                 exact("", one(float64(tb.ByRcode["unanswered"])/float64(tb.Total))),
		"Truncated and rejected responses/A": exact("server", rate(ta.ByServer, tb.Truncated)),
		"Truncated and rejected responses/B": exact("server", rate(ta.ByServer, tb.Rejected)),
		"Top query names/A":                  topK("qname", 10, topNames),
		// No agent in this chain: the query must run and find nothing.
		"Agent drops/A":        exact("reason", map[string]float64{}),
		"Agent drops/B":        exact("stream", map[string]float64{}),
		"Agent drops/C":        exact("node", map[string]float64{}),
		"Records per second/B": exact("", one(float64(tb.Total)/sec)),
		"Records per second/C": exact("", one(0)),
		"Scrape targets up/A":  exact("job", map[string]float64{"flowlogs-pipeline": 1}),
		"Shim lag/A":           exact("log", map[string]float64{}),
		"Records per second/A": exact("", map[string]float64{}),
	}
	for i, q := range []float64{0.5, 0.75, 0.9, 0.95, 0.99} {
		w[fmt.Sprintf("Response time quantiles/%c", 'A'+i)] = sameBucket("", one(Quantile(tb.RTT.All, q)))
	}
	if shim {
		w["Scrape targets up/A"] = exact("job", map[string]float64{"flowlogs-pipeline": 1, "pano-shim": 1})
		w["Shim lag/A"] = allEqual("log", 0)
		w["Records per second/A"] = exact("", one(float64(tb.Total)/shimDT.Seconds()))
	}
	return w
}

// check compares a query result with what the records say.
type check func(t *testing.T, where string, v model.Vector)

func byLabel(t *testing.T, where, label string, v model.Vector) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, s := range v {
		k := string(s.Metric[model.LabelName(label)])
		if _, dup := out[k]; dup {
			t.Errorf("%s: two series with %s=%q", where, label, k)
		}
		out[k] = float64(s.Value)
	}
	return out
}

// exact: the same series (by label), values equal to rounding.
func exact(label string, want map[string]float64) check {
	return func(t *testing.T, where string, v model.Vector) {
		t.Helper()
		got := byLabel(t, where, label, v)
		for k, w := range want {
			g, ok := got[k]
			if !ok {
				t.Errorf("%s: no series %s=%q (want %v)", where, label, k, w)
				continue
			}
			if !approxEqual(g, w) {
				t.Errorf("%s{%s=%q} = %v, want %v", where, label, k, g, w)
			}
		}
		for k, g := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("%s: unexpected series %s=%q = %v", where, label, k, g)
			}
		}
	}
}

func approxEqual(a, b float64) bool {
	return a == b || math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b))
}

// sameBucket: quantiles, which Prometheus interpolates inside a histogram
// bucket, must land in the exact quantile's bucket or a neighbour.
func sameBucket(label string, want map[string]float64) check {
	return func(t *testing.T, where string, v model.Vector) {
		t.Helper()
		got := byLabel(t, where, label, v)
		if len(got) != len(want) {
			t.Errorf("%s: %d series, want %d", where, len(got), len(want))
		}
		for k, w := range want {
			g, ok := got[k]
			if !ok {
				t.Errorf("%s: no series %s=%q (want %v)", where, label, k, w)
				continue
			}
			if d := BucketIndex(g) - BucketIndex(w); d < -1 || d > 1 {
				t.Errorf("%s{%s=%q} = %v, want %v: %d buckets apart", where, label, k, g, w, d)
			}
		}
	}
}

// allEqual: at least one series, every one equal to value.
func allEqual(label string, value float64) check {
	return func(t *testing.T, where string, v model.Vector) {
		t.Helper()
		got := byLabel(t, where, label, v)
		if len(got) == 0 {
			t.Errorf("%s: no series, want at least one equal to %v", where, value)
		}
		for k, g := range got {
			if g != value {
				t.Errorf("%s{%s=%q} = %v, want %v", where, label, k, g, value)
			}
		}
	}
}

// topK: k series, each with its expected value, none smaller than any
// left out (ties at the edge may go either way).
func topK(label string, k int, want map[string]float64) check {
	return func(t *testing.T, where string, v model.Vector) {
		t.Helper()
		got := byLabel(t, where, label, v)
		if len(got) != k {
			t.Errorf("%s: %d series, want %d", where, len(got), k)
		}
		vals := make([]float64, 0, len(want))
		for _, w := range want {
			vals = append(vals, w)
		}
		sort.Sort(sort.Reverse(sort.Float64Slice(vals)))
		for name, g := range got {
			w, ok := want[name]
			if !ok || !approxEqual(g, w) {
				t.Errorf("%s{%s=%q} = %v, want %v", where, label, name, g, w)
			}
			if len(vals) > k && w < vals[k-1] {
				t.Errorf("%s: %q (%v) is not among the top %d", where, name, w, k)
			}
		}
	}
}

type querier struct{ api promv1.API }

func (q *querier) instant(expr string, at time.Time) (model.Vector, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, warnings, _, err := q.api.Query(ctx, expr, at)
	if err != nil {
		return nil, err
	}
	if len(warnings) > 0 {
		return nil, fmt.Errorf("warnings: %v", warnings)
	}
	switch v := v.(type) {
	case model.Vector:
		return v, nil
	case *model.Scalar:
		return model.Vector{{Metric: model.Metric{}, Value: v.Value, Timestamp: v.Timestamp}}, nil
	default:
		return nil, fmt.Errorf("result is a %s", v.Type())
	}
}

// waitTotals waits until Prometheus has scraped every record of tally
// from every stage, and returns when it saw that.
func (q *querier) waitTotals(t *testing.T, tally *Tally, shim bool) time.Time {
	t.Helper()
	want := map[string]float64{
		`sum(pano_dns_queries_total)`:                             float64(tally.Total),
		`sum(pano_dns_queries_by_name_total)`:                     float64(tally.Total),
		`sum(pano_dns_response_time_seconds_count)`:               float64(len(tally.RTT.All)),
		`sum(pano_flp_ingest_flows_processed)`:                    float64(tally.Total),
		`sum(pano_dns_response_time_seconds_bucket{le="0.0025"})`: float64(countAtMost(tally.RTT.All, 0.0025)),
	}
	if shim {
		want[`sum(pano_shim_records_produced_total)`] = float64(tally.Total)
	}
	return q.waitValues(t, want)
}

// checkMergedHistogram: prometheus.yml's relabelling leaves one response
// time histogram with 21 buckets (5 us .. 10 s, +Inf) per server and
// nothing of its milliseconds twin.
func (q *querier) checkMergedHistogram(t *testing.T) {
	t.Helper()
	v, err := q.instant(`count by (server) (pano_dns_response_time_seconds_bucket)`, time.Now())
	if err != nil || len(v) != len(servers) {
		t.Fatalf("response time histograms: %v %v", v, err)
	}
	for _, s := range v {
		if int(s.Value) != len(ResponseTimeBuckets) {
			t.Errorf("server %s: %v buckets, want %d", s.Metric["server"], s.Value, len(ResponseTimeBuckets))
		}
	}
	v, err = q.instant(`{__name__=~"pano_dns_response_time_milliseconds.*"}`, time.Now())
	if err != nil || len(v) != 0 {
		t.Errorf("milliseconds histogram left in Prometheus: %v %v", v, err)
	}
}

func countAtMost(sorted []float64, v float64) int {
	return sort.Search(len(sorted), func(i int) bool { return sorted[i] > v })
}

// sampleSpan returns an evaluation time just after the latest scrape of
// metric, and the span between the first and last samples in the window
// ending there: Prometheus extrapolates a rate over that span to the whole
// window, so a counter that grew by n in the window has rate n/span.
func (q *querier) sampleSpan(t *testing.T, metric string) (time.Time, time.Duration) {
	t.Helper()
	v, err := q.instant(metric, time.Now())
	if err != nil || len(v) == 0 {
		t.Fatalf("%s: %v %v", metric, v, err)
	}
	return q.sampleSpanAt(t, metric, v[0].Timestamp.Time().Add(time.Millisecond))
}

func (q *querier) sampleSpanAt(t *testing.T, metric string, at time.Time) (time.Time, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, _, _, err := q.api.Query(ctx, fmt.Sprintf("%s[%s]", metric, model.Duration(window)), at)
	if err != nil {
		t.Fatalf("%s: %v", metric, err)
	}
	m, ok := res.(model.Matrix)
	if !ok || len(m) == 0 {
		t.Fatalf("%s: no samples in the window: %v", metric, res)
	}
	span := time.Duration(-1)
	for _, s := range m {
		first, last := s.Values[0].Timestamp.Time(), s.Values[len(s.Values)-1].Timestamp.Time()
		sp := last.Sub(first)
		if span >= 0 && sp != span {
			t.Fatalf("%s: series sampled over different spans (%v, %v)", metric, span, sp)
		}
		span = sp
		// Full extrapolation to both window edges needs samples within
		// 1.1 average intervals of them.
		avgGap := sp / time.Duration(len(s.Values)-1)
		if first.Sub(at.Add(-window)) >= avgGap*11/10 || at.Sub(last) >= avgGap*11/10 {
			t.Fatalf("%s: samples %v..%v do not reach the window [%v, %v] (missed scrapes?)", metric, first, last, at.Add(-window), at)
		}
	}
	return at, span
}

// prometheusConfig is prometheus/prometheus.yml adapted to the test: 1 s
// scrape and evaluation, flowlogs-pipeline and the shim where the test
// runs them, no agent. The relabelling is kept as is.
func prometheusConfig(t *testing.T, root, flpAddr, shimAddr string) (string, int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "prometheus", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	global := doc["global"].(map[string]any)
	global["scrape_interval"], global["evaluation_interval"] = model.Duration(interval).String(), model.Duration(interval).String()
	var keep []any
	for _, sc := range doc["scrape_configs"].([]any) {
		sc := sc.(map[string]any)
		target := map[string]string{"flowlogs-pipeline": flpAddr, "pano-shim": shimAddr}[sc["job_name"].(string)]
		if target == "" {
			continue
		}
		sc["static_configs"] = []any{map[string]any{"targets": []any{target}}}
		keep = append(keep, sc)
	}
	doc["scrape_configs"] = keep
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return string(out), len(keep)
}

// ruleFiles copies PANO's rule files with their 1m windows set to the
// test's window.
func ruleFiles(t *testing.T, root string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "prometheus", "rules", "*.yml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("rule files: %v %v", files, err)
	}
	dir := t.TempDir()
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), "[1m]", "["+model.Duration(window).String()+"]")
		p := filepath.Join(dir, filepath.Base(f))
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func hostPort(t *testing.T, metricsURL string) string {
	t.Helper()
	u, err := url.Parse(metricsURL)
	if err != nil || u.Host == "" {
		t.Fatalf("metrics URL %q: %v", metricsURL, err)
	}
	return u.Host
}
