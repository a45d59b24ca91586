package analyticstest

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pano-observability/pano/internal/testenv"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kgo"
	"gopkg.in/yaml.v3"
)

const (
	benchRecords = 300_000
	// benchLimit bounds each configuration's run (env PANO_BENCH_LIMIT); a
	// slower one is measured over what it processed by then, and the
	// output says so.
	benchLimit = 75 * time.Second
)

// benchNames is the default sweep of distinct query names (env
// PANO_BENCH_NAMES, a comma-separated list). 10,000: a dnsperf query list
// of that size replayed in order. 60,000: where the original runs at
// about 3,000 records/s on two cores, the rate first measured (DESIGN.md).
// 300,000: every query a different name, as when 300,000 queries are
// taken from a real query list (dnsperf's sample list has millions of
// lines).
var benchNames = []int{10_000, 60_000, 300_000}

// BenchmarkFlowlogsPipelineConfigs runs the same 300,000 dns.log records
// from one Kafka topic through flowlogs-pipeline, in one run: with PANO's
// configuration, with the original demo's (ported to the current schema)
// and with a bare ingest, and reports the records per second and per
// CPU-second of each, and PANO's ratios to the others. It does so for
// each count of distinct query names in the sweep, each on a topic of its
// own: sub-benchmarks names=N/{pano,original,ingest-floor}, then
// names=N/ratios. Run it with -benchtime=1x; each configuration is
// measured once (a new consumer group reads the whole topic).
//
// The query names cycle through a list of N, as dnsperf replays its
// query list. The original's query-name aggregate holds one group per
// name and re-emits them all on every batch of 1,000 records, so its cost
// per record grows with N; PANO's does not.
//
//	go test ./internal/analyticstest -run '^$' -bench FlowlogsPipelineConfigs -benchtime 1x
//	PANO_BENCH_NAMES=10000 PANO_BENCH_LIMIT=30s go test ... (a quicker look)
func BenchmarkFlowlogsPipelineConfigs(b *testing.B) {
	sweep, limit := benchSweep(b)
	root := testenv.RepoRoot(b)
	ours, err := os.ReadFile(filepath.Join(root, "fl-pipeline-config", "flowlogs-pipeline.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	original, err := os.ReadFile(filepath.Join(root, "fl-pipeline-config", "original-ported", "flowlogs-pipeline.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	// The benchmark measures the DNS branch: the HTTP and TLS branches
	// would read the benchmark's topic too once pointed at it.
	ours = dnsBranch(b, ours)
	floor := ingestFloorConfig(b, ours)
	k := testenv.StartKafka(b)
	// A benchmark with sub-benchmarks does not print its own log: the
	// input and the summaries go to stdout.
	fmt.Printf("%d records per configuration; distinct query names: %s; limit per configuration %v\n", benchRecords, joinInts(sweep), limit)
	var summary []string
	for _, n := range sweep {
		b.Run(fmt.Sprintf("names=%d", n), func(b *testing.B) {
			topic := fmt.Sprintf("dns-names-%d", n)
			k.CreateTopic(b, topic, 1)
			records := benchRecordSet(n)
			tally := NewTally(records)
			produceBench(b, k, topic, records)
			all, answered, timed := tally.Total, tally.Total-tally.ByRcode["unanswered"], len(tally.RTT.All)
			fmt.Printf("names=%d: input %d records, %d distinct query names, %d answered, %d with rtt, topic %s\n", n, all, len(tally.ByName), answered, timed, topic)

			configs := []struct {
				name string
				yaml []byte
				// Every counter below must reach its count before the
				// configuration has processed every record; progress is
				// the least advanced one.
				progress []benchCounter
			}{
				{"pano", ours, []benchCounter{
					{family: "pano_dns_queries_total", want: all},
					{family: "pano_dns_response_time_seconds", want: timed},
					// Query names beyond the cap are not counted: follow the stage.
					{family: "pano_flp_stage_duration_ms", stage: "encode_dns_names", want: all},
				}},
				// Five of its six branches end in a count of records; the
				// sixth (rtt_avg, a gauge) shares their batches and their
				// backpressure.
				{"original", original, []benchCounter{
					{family: "pano_orig_dns_query_count", want: all},
					{family: "pano_orig_dns_query_name", want: all},
					{family: "pano_orig_dns_qtype_total", want: all},
					{family: "pano_orig_dns_rcode_total", want: answered}, // skips unanswered records
					{family: "pano_orig_dns_rtt_histogram", want: timed},
				}},
				// PANO's Kafka ingest (same settings), JSON decoding and one
				// unlabelled counter: the most any configuration of this
				// flowlogs-pipeline can do here.
				{"ingest-floor", floor, []benchCounter{{family: "pano_dns_queries_total", want: all}}},
			}
			res := map[string]flpResult{}
			var partial []string
			for _, c := range configs {
				b.Run(c.name, func(b *testing.B) {
					cfg := withIngest(b, testenv.FLPConfigWithKafka(b, string(c.yaml), k.Bootstrap), topic, fmt.Sprintf("bench-%s-%d", c.name, n))
					flp := testenv.StartFLP(b, cfg)
					r := measureFLP(b, []string{flp.MetricsURL, flp.OpsMetricsURL}, c.progress, limit)
					res[c.name] = r
					b.ReportMetric(r.PerSecond, "records/s")
					b.ReportMetric(r.PerCPUSecond, "records/CPU-s")
					b.ReportMetric(r.Processed, "records")
					if !r.Complete {
						l := fmt.Sprintf("names=%d: %s processed %.0f of %d records within the %v limit: its rates are over those %.0f s, not the whole input",
							n, c.name, r.Processed, benchRecords, limit, r.Elapsed.Seconds())
						fmt.Println(l)
						partial = append(partial, l)
					}
				})
			}
			p, o, f := res["pano"], res["original"], res["ingest-floor"]
			b.Run("ratios", func(b *testing.B) {
				if p.PerSecond == 0 || o.PerSecond == 0 || f.PerSecond == 0 {
					b.Skip("needs pano, original and ingest-floor in the same run")
				}
				b.ReportMetric(p.PerSecond/o.PerSecond, "pano/original")
				b.ReportMetric(p.PerSecond/f.PerSecond, "pano/floor")
				if p.PerCPUSecond > 0 && o.PerCPUSecond > 0 && f.PerCPUSecond > 0 {
					b.ReportMetric(p.PerCPUSecond/o.PerCPUSecond, "pano/original-CPU")
					b.ReportMetric(p.PerCPUSecond/f.PerCPUSecond, "pano/floor-CPU")
				}
			})
			if p.PerSecond == 0 || o.PerSecond == 0 || f.PerSecond == 0 {
				return
			}
			lines := []string{
				fmt.Sprintf("names=%d: records/s: pano %.0f, original %.0f, ingest floor %.0f; pano/original %.1fx, pano/floor %.2fx",
					n, p.PerSecond, o.PerSecond, f.PerSecond, p.PerSecond/o.PerSecond, p.PerSecond/f.PerSecond),
			}
			if p.PerCPUSecond > 0 && o.PerCPUSecond > 0 && f.PerCPUSecond > 0 {
				lines = append(lines, fmt.Sprintf("names=%d: records/CPU-s: pano %.0f, original %.0f, ingest floor %.0f; pano/original %.1fx, pano/floor %.2fx",
					n, p.PerCPUSecond, o.PerCPUSecond, f.PerCPUSecond, p.PerCPUSecond/o.PerCPUSecond, p.PerCPUSecond/f.PerCPUSecond))
			}
			for _, l := range lines {
				fmt.Println(l)
			}
			summary = append(append(summary, lines...), partial...)
		})
	}
	if len(summary) > 0 {
		fmt.Println("summary:")
		for _, l := range summary {
			fmt.Println("  " + l)
		}
	}
}

// benchSweep reads PANO_BENCH_NAMES (distinct query names, a comma-
// separated list, each from 1 to benchRecords) and PANO_BENCH_LIMIT (a
// duration).
func benchSweep(b *testing.B) ([]int, time.Duration) {
	b.Helper()
	sweep, limit := benchNames, benchLimit
	if v := os.Getenv("PANO_BENCH_NAMES"); v != "" {
		var err error
		if sweep, err = parseNames(v); err != nil {
			b.Fatalf("PANO_BENCH_NAMES: %v", err)
		}
	}
	if v := os.Getenv("PANO_BENCH_LIMIT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			b.Fatalf("PANO_BENCH_LIMIT=%q: want a positive duration such as 90s", v)
		}
		limit = d
	}
	return sweep, limit
}

func parseNames(v string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > benchRecords {
			return nil, fmt.Errorf("%q: want a count of names from 1 to %d", f, benchRecords)
		}
		if slices.Contains(out, n) {
			return nil, fmt.Errorf("%d twice", n)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%q: no count", v)
	}
	return out, nil
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// benchRecordSet is the benchmark's input: generated records (the same
// for every count but their query names) whose query names cycle through
// a query list of n names, in order.
func benchRecordSet(n int) []Record {
	records := NewGenerator(7).Random(benchRecords)
	names := benchQueryNames(n)
	for i := range records {
		records[i].Query = names[i%len(names)]
	}
	return records
}

// benchQueryNames returns n distinct names shaped like a query list's:
// common host labels under many registered names, some one level deeper.
func benchQueryNames(n int) []string {
	hosts := []string{"www", "mail", "api", "cdn", "static", "img", "login", "m", "shop", "news", "ns1", "smtp", "app", "video", "assets", "auth"}
	names := make([]string, n)
	for i := range names {
		site := fmt.Sprintf("site%05d", i/len(hosts))
		switch h := hosts[i%len(hosts)]; {
		case i%7 == 3:
			names[i] = fmt.Sprintf("%s.eu-%d.%s.pano.test", h, i%5, site)
		default:
			names[i] = h + "." + site + ".pano.test"
		}
	}
	return names
}

// ingestFloorConfig is the bare-ingest configuration: PANO's
// configuration's Kafka ingest stage as it is (so that its settings stay
// the same), followed by one unlabelled counter.
func ingestFloorConfig(b testing.TB, ours []byte) []byte {
	b.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(ours, &doc); err != nil {
		b.Fatal(err)
	}
	var ingest any
	for _, p := range doc["parameters"].([]any) {
		if stage, _ := p.(map[string]any); stage["name"] == "ingest_dns" {
			ingest = stage["ingest"]
		}
	}
	if ingest == nil {
		b.Fatal("PANO's configuration has no ingest stage")
	}
	floor := map[string]any{
		"log-level":       doc["log-level"],
		"metricsSettings": doc["metricsSettings"],
		"pipeline": []any{
			map[string]any{"name": "ingest_dns"},
			map[string]any{"name": "encode_dns", "follows": "ingest_dns"},
		},
		"parameters": []any{
			map[string]any{"name": "ingest_dns", "ingest": ingest},
			map[string]any{"name": "encode_dns", "encode": map[string]any{"type": "prom", "prom": map[string]any{
				"prefix": "pano_dns_",
				"metrics": []any{map[string]any{
					"name": "queries_total", "type": "counter", "filters": []any{}, "valueKey": "", "labels": []any{},
				}},
			}}},
		},
	}
	out, err := yaml.Marshal(floor)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// dnsBranch is PANO's configuration reduced to ingest_dns and the stages
// that follow it, as the benchmark ran before the configuration gained its
// HTTP and TLS branches.
func dnsBranch(b testing.TB, ours []byte) []byte {
	b.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(ours, &doc); err != nil {
		b.Fatal(err)
	}
	keep := map[string]bool{"ingest_dns": true}
	var pipeline []any
	for _, p := range doc["pipeline"].([]any) {
		s := p.(map[string]any)
		if follows, _ := s["follows"].(string); keep[s["name"].(string)] || keep[follows] {
			keep[s["name"].(string)] = true
			pipeline = append(pipeline, s)
		}
	}
	var params []any
	for _, p := range doc["parameters"].([]any) {
		if keep[p.(map[string]any)["name"].(string)] {
			params = append(params, p)
		}
	}
	doc["pipeline"], doc["parameters"] = pipeline, params
	out, err := yaml.Marshal(doc)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

func produceBench(b *testing.B, k *testenv.Kafka, topic string, records []Record) {
	b.Helper()
	// Records wait up to 10 ms to be sent in batches.
	cl := k.Client(b, kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(10*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	var (
		mu       sync.Mutex
		firstErr error
	)
	for _, r := range records {
		cl.Produce(ctx, &kgo.Record{Key: []byte(r.UID), Value: r.KafkaJSON()}, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				firstErr = cmp.Or(firstErr, err)
				mu.Unlock()
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		b.Fatalf("produce: %d records not acknowledged within 3 minutes: %v", len(records), err)
	}
	mu.Lock()
	defer mu.Unlock()
	if firstErr != nil {
		b.Fatalf("produce: %v", firstErr)
	}
	fmt.Printf("produced %d records to %s in %v\n", len(records), topic, time.Since(start).Round(time.Millisecond))
}

// withIngest points every Kafka ingest stage of a configuration at topic,
// in consumer group group.
func withIngest(b testing.TB, configYAML, topic, group string) string {
	b.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(configYAML), &doc); err != nil {
		b.Fatal(err)
	}
	for _, p := range doc["parameters"].([]any) {
		stage, _ := p.(map[string]any)
		ingest, _ := stage["ingest"].(map[string]any)
		if kafka, ok := ingest["kafka"].(map[string]any); ok {
			kafka["topic"], kafka["groupid"] = topic, group
		}
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		b.Fatal(err)
	}
	return string(out)
}

// benchCounter is a metric that counts records a configuration has
// processed: the sum of a counter's series, or of a histogram's counts,
// restricted to one pipeline stage if stage is set, of which want means
// every record done.
type benchCounter struct {
	family, stage string
	want          int
}

// flpResult is one configuration's measurement.
type flpResult struct {
	PerSecond    float64       // records per second over the measured span
	PerCPUSecond float64       // records per CPU-second of flowlogs-pipeline (0: not measured)
	Processed    float64       // records processed when the measurement ended
	Elapsed      time.Duration // the measured span
	Complete     bool          // every record was processed within the limit
}

// measureFLP polls flowlogs-pipeline's metrics until every counter of
// progress reaches its count or limit passes, and returns the records per
// second between the first poll that saw progress and the last poll, and
// the records per CPU-second flowlogs-pipeline used meanwhile (0 if its
// process cannot be read). Progress is the least advanced counter, as a
// share of benchRecords. On a shared machine the second figure is the
// steadier one: other processes take wall-clock time, not CPU time.
//
// A configuration still running at the limit is measured over what it
// processed by then (Complete false).
func measureFLP(b *testing.B, urls []string, progress []benchCounter, limit time.Duration) flpResult {
	b.Helper()
	pid := flpPID(b)
	var t0, tPrev, tLast time.Time
	var p0, pPrev, pLast, cpu0, cpuLast float64
	var lag string
	var failed int
	var lastErr error
	var cost, scraping time.Duration // the last scrape's, all of them
	var scrapes int
	deadline := time.Now().Add(limit + 30*time.Second) // + consumer group join
	for {
		// The counts are those of the moment the scrape starts: a large
		// exposition (the original's: one series per query name) takes a
		// while to arrive and parse.
		now := time.Now()
		cpu := cpuSeconds(pid)
		fams, err := scrapeAll(urls)
		cost = time.Since(now)
		scrapes++
		scraping += cost
		if err != nil {
			// A busy pipeline may miss a scrape: keep the last good one.
			failed++
			lastErr = err
		} else {
			var p float64
			p, lag = benchProgress(fams, progress)
			if t0.IsZero() && p > 0 {
				t0, p0, cpu0 = now, p, cpu
				deadline = now.Add(limit)
			}
			if !t0.IsZero() {
				tPrev, pPrev = tLast, pLast
			}
			tLast, pLast, cpuLast = now, p, cpu
		}
		if pLast >= benchRecords || time.Now().After(deadline) {
			if t0.IsZero() || !tLast.After(t0) {
				b.Fatalf("nothing counted (%s; %d failed scrapes, last: %v)", lag, failed, lastErr)
			}
			r := flpResult{Processed: pLast, Elapsed: tLast.Sub(t0), Complete: pLast >= benchRecords}
			r.PerSecond = (pLast - p0) / r.Elapsed.Seconds()
			if used := cpuLast - cpu0; pid > 0 && used > 0 {
				r.PerCPUSecond = (pLast - p0) / used
			}
			b.Logf("%.0f of %d records processed in %v, %.1f CPU-s (least advanced: %s; %d scrapes, %v in all, %d failed): %.0f records/s, %.0f records/CPU-s",
				pLast, benchRecords, r.Elapsed.Round(time.Millisecond), cpuLast-cpu0, lag, scrapes, scraping.Round(time.Millisecond), failed, r.PerSecond, r.PerCPUSecond)
			return r
		}
		// Every scrape gathers every series in flowlogs-pipeline's process
		// (the original's: one per query name, a few seconds' work at
		// 100,000 names) and parses them in this one, on the same cores:
		// poll often at first, then at 2% of the elapsed time but never
		// more than 2% of the time in scrapes; once the end is near, poll
		// when it is due.
		wait := max(100*time.Millisecond, 50*cost)
		if !t0.IsZero() {
			wait = max(wait, time.Since(t0)/50)
			// The recent rate: the original's falls as its groups grow.
			if pLast > pPrev && tLast.After(tPrev) {
				rate := (pLast - pPrev) / tLast.Sub(tPrev).Seconds()
				due := time.Until(tLast.Add(time.Duration((benchRecords - pLast) / rate * float64(time.Second))))
				wait = min(wait, max(due, 100*time.Millisecond, 2*cost))
			}
		}
		wait = min(wait, max(time.Until(deadline), 0))
		time.Sleep(wait)
	}
}

// flpPID finds the flowlogs-pipeline that testenv started for this
// benchmark: the test binary's one child running that program. 0 if there
// is not exactly one.
func flpPID(b *testing.B) int {
	b.Helper()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var found []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join(d, "exe"))
		if err != nil || filepath.Base(exe) != "flowlogs-pipeline" {
			continue
		}
		if f := procStat(pid); len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) {
			found = append(found, pid)
		}
	}
	if len(found) != 1 {
		b.Logf("CPU time not measured: %d flowlogs-pipeline children", len(found))
		return 0
	}
	return found[0]
}

// procStat returns the fields of /proc/PID/stat after the command name:
// state, ppid, ... (field 3 onwards of proc(5)).
func procStat(pid int) []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(data[i+1:]))
}

// cpuSeconds is the user+system CPU time of pid in seconds; 0 when it
// cannot be read.
func cpuSeconds(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	d, err := testenv.ProcessCPU(pid)
	if err != nil {
		return 0
	}
	return d.Seconds()
}

// benchProgress returns how many of benchRecords the least advanced
// counter stands for, and that counter.
func benchProgress(fams map[string]*dto.MetricFamily, progress []benchCounter) (float64, string) {
	least, which := math.Inf(1), ""
	for _, c := range progress {
		v := 0.0
		if mf, ok := fams[c.family]; ok {
			for _, m := range mf.GetMetric() {
				if c.stage != "" && !hasLabel(m, "stage", c.stage) {
					continue
				}
				switch mf.GetType() {
				case dto.MetricType_COUNTER:
					v += m.GetCounter().GetValue()
				case dto.MetricType_HISTOGRAM:
					v += float64(m.GetHistogram().GetSampleCount())
				}
			}
		}
		share := math.Min(v/float64(c.want), 1) * benchRecords
		if share < least {
			least, which = share, fmt.Sprintf("%s %.0f of %d", c.name(), v, c.want)
		}
	}
	return least, which
}

func (c benchCounter) name() string {
	if c.stage == "" {
		return c.family
	}
	return c.family + `{stage="` + c.stage + `"}`
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// scrapeAll reads every family from each distinct, non-empty URL.
func scrapeAll(urls []string) (map[string]*dto.MetricFamily, error) {
	out := map[string]*dto.MetricFamily{}
	seen := map[string]bool{}
	for _, u := range urls {
		if u == "" || seen[u] {
			continue
		}
		seen[u] = true
		fams, err := scrape(u)
		if err != nil {
			return nil, err
		}
		maps.Copy(out, fams)
	}
	return out, nil
}

func scrape(metricsURL string) (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", metricsURL, err)
	}
	defer resp.Body.Close()
	return parseExposition(resp.Body, metricsURL)
}

func parseExposition(r io.Reader, source string) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", source, err)
	}
	return fams, nil
}

func TestBenchQueryNames(t *testing.T) {
	names := benchQueryNames(benchRecords)
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			t.Fatalf("%s twice", n)
		}
		seen[n] = true
		if len(n) > 253 || !strings.HasSuffix(n, ".pano.test") {
			t.Fatalf("%q is not a name under pano.test", n)
		}
	}
	for _, n := range []int{10_000, 70_000, benchRecords} {
		records := benchRecordSet(n)
		tally := NewTally(records)
		if len(records) != benchRecords || len(tally.ByName) != n {
			t.Fatalf("%d records over %d names, want %d over %d", len(records), len(tally.ByName), benchRecords, n)
		}
		// dnsperf order: every name as often as every other, give or take
		// the last pass through the list.
		for name, c := range tally.ByName {
			if c != benchRecords/n && c != benchRecords/n+1 {
				t.Fatalf("%d names: %s queried %d times, want %d or %d", n, name, c, benchRecords/n, benchRecords/n+1)
			}
		}
	}
}

func TestParseNames(t *testing.T) {
	got, err := parseNames(" 10000, 300000,,50")
	if err != nil || !slices.Equal(got, []int{10000, 300000, 50}) {
		t.Errorf("parseNames = %v, %v", got, err)
	}
	for _, bad := range []string{"", ",", "0", "300001", "10k", "5,5"} {
		if _, err := parseNames(bad); err == nil {
			t.Errorf("parseNames(%q) accepted", bad)
		}
	}
}

func TestIngestFloorConfigKeepsIngest(t *testing.T) {
	root := testenv.RepoRoot(t)
	ours, err := os.ReadFile(filepath.Join(root, "fl-pipeline-config", "flowlogs-pipeline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ingestOf := func(doc []byte) any {
		var d map[string]any
		if err := yaml.Unmarshal(doc, &d); err != nil {
			t.Fatal(err)
		}
		for _, p := range d["parameters"].([]any) {
			if stage := p.(map[string]any); stage["ingest"] != nil {
				return stage["ingest"]
			}
		}
		return nil
	}
	floor := ingestFloorConfig(t, ours)
	want, got := ingestOf(ours), ingestOf(floor)
	// The DNS branch alone: its four stages, one ingest.
	var branch map[string]any
	if err := yaml.Unmarshal(dnsBranch(t, ours), &branch); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range branch["parameters"].([]any) {
		names = append(names, p.(map[string]any)["name"].(string))
	}
	if !slices.Equal(names, []string{"ingest_dns", "label_unanswered", "encode_dns", "encode_dns_names"}) || len(branch["pipeline"].([]any)) != 4 {
		t.Errorf("dnsBranch kept %v and %d pipeline entries", names, len(branch["pipeline"].([]any)))
	}
	if want == nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("floor ingest = %v, want PANO's %v", got, want)
	}
	cfg := withIngest(t, string(floor), "dns-names-5", "g")
	if in := ingestOf([]byte(cfg)).(map[string]any)["kafka"].(map[string]any); in["topic"] != "dns-names-5" || in["groupid"] != "g" {
		t.Errorf("withIngest: %v", in)
	}
}

func TestBenchProgress(t *testing.T) {
	fams, err := parseExposition(strings.NewReader(`# TYPE q counter
q{a="x"} 60
q{a="y"} 40
# TYPE h histogram
h_bucket{le="+Inf"} 30
h_sum 1
h_count 30
# TYPE d histogram
d_bucket{stage="one",le="+Inf"} 200
d_sum{stage="one"} 0
d_count{stage="one"} 200
d_bucket{stage="two",le="+Inf"} 5
d_sum{stage="two"} 0
d_count{stage="two"} 5
`), "fixture")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		progress []benchCounter
		want     float64
		lag      string
	}{
		{[]benchCounter{{family: "q", want: 100}}, benchRecords, "q 100 of 100"},
		{[]benchCounter{{family: "q", want: 200}, {family: "h", want: 60}}, benchRecords / 2, "q 100 of 200"},
		{[]benchCounter{{family: "q", want: 100}, {family: "h", want: 120}}, benchRecords / 4, "h 30 of 120"},
		{[]benchCounter{{family: "d", stage: "two", want: 10}, {family: "d", stage: "one", want: 200}}, benchRecords / 2, `d{stage="two"} 5 of 10`},
		{[]benchCounter{{family: "q", want: 100}, {family: "absent", want: 1}}, 0, "absent 0 of 1"},
	} {
		got, lag := benchProgress(fams, c.progress)
		if got != c.want || lag != c.lag {
			t.Errorf("benchProgress(%v) = %v (%s), want %v (%s)", c.progress, got, lag, c.want, c.lag)
		}
	}
}
