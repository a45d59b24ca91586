package analyticstest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/pano-observability/pano/internal/testenv"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"
)

const (
	benchRecords = 300_000
	// benchNames is how many distinct query names the records carry: the
	// size of a real dnsperf query list, which dnsperf replays in order.
	benchNames = 10_000
	// benchLimit bounds each configuration's run; a slower one is measured
	// over what it processed by then.
	benchLimit = 2 * time.Minute
)

// BenchmarkFlowlogsPipelineConfigs runs the same 300,000 dns.log records
// from one Kafka topic through flowlogs-pipeline, in one run: with PANO's
// configuration, with the original demo's (ported to the current schema)
// and with a bare ingest, and reports the records per second and per
// CPU-second of each, and PANO's ratios to the others. Run it with
// -benchtime=1x; each configuration is measured once (a new consumer group
// reads the whole topic).
//
// The query names cycle through a list of 10,000, as dnsperf replays its
// query list: the original's query-name aggregate holds one group per name
// and re-emits them all on every batch, so a handful of names would hide
// its cost.
//
//	go test ./internal/analyticstest -run '^$' -bench FlowlogsPipelineConfigs -benchtime 1x
func BenchmarkFlowlogsPipelineConfigs(b *testing.B) {
	root := testenv.RepoRoot(b)
	k := testenv.StartKafka(b)
	k.CreateTopic(b, "dns", 1)
	records := benchRecordSet()
	tally := NewTally(records)
	produceBench(b, k, records)
	all, answered, timed := tally.Total, tally.Total-tally.ByRcode["unanswered"], len(tally.AllRTTs)
	// A benchmark with sub-benchmarks does not print its own log: the
	// input and the summary go to stdout.
	fmt.Printf("input: %d records, %d distinct query names, %d answered, %d with rtt\n", all, len(tally.ByName), answered, timed)

	configs := []struct {
		name, file string
		// Every counter below must reach its count before the configuration
		// has processed every record; progress is the least advanced one.
		progress []benchCounter
	}{
		{"pano", "fl-pipeline-config/flowlogs-pipeline.yaml", []benchCounter{
			{family: "pano_dns_queries_total", want: all},
			{family: "pano_dns_response_time_seconds", want: timed},
			// Query names beyond the cap are not counted: follow the stage.
			{family: "pano_flp_stage_duration_ms", stage: "encode_dns_names", want: all},
		}},
		// Five of its six branches end in a count of records; the sixth
		// (rtt_avg, a gauge) shares their batches and their backpressure.
		{"original", "fl-pipeline-config/original-ported/flowlogs-pipeline.yaml", []benchCounter{
			{family: "pano_orig_dns_query_count", want: all},
			{family: "pano_orig_dns_query_name", want: all},
			{family: "pano_orig_dns_qtype_total", want: all},
			{family: "pano_orig_dns_rcode_total", want: answered}, // skips unanswered records
			{family: "pano_orig_dns_rtt_histogram", want: timed},
		}},
		// Kafka ingest, JSON decoding and one unlabelled counter: the most
		// any configuration of this flowlogs-pipeline can do here.
		{"ingest-floor", "", []benchCounter{{family: "pano_dns_queries_total", want: all}}},
	}
	rates, cpuRates := map[string]float64{}, map[string]float64{}
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
			r, rc := measureFLP(b, []string{flp.MetricsURL, flp.OpsMetricsURL}, c.progress)
			rates[c.name], cpuRates[c.name] = r, rc
			b.ReportMetric(r, "records/s")
			b.ReportMetric(rc, "records/CPU-s")
		})
	}
	if rates["original"] > 0 && rates["ingest-floor"] > 0 {
		fmt.Printf("records/s: pano %.0f, original %.0f, ingest floor %.0f; pano/original %.1fx, pano/floor %.2fx\n",
			rates["pano"], rates["original"], rates["ingest-floor"], rates["pano"]/rates["original"], rates["pano"]/rates["ingest-floor"])
	}
	if cpuRates["original"] > 0 && cpuRates["ingest-floor"] > 0 {
		fmt.Printf("records/CPU-s: pano %.0f, original %.0f, ingest floor %.0f; pano/original %.1fx, pano/floor %.2fx\n",
			cpuRates["pano"], cpuRates["original"], cpuRates["ingest-floor"], cpuRates["pano"]/cpuRates["original"], cpuRates["pano"]/cpuRates["ingest-floor"])
	}
}

// benchRecordSet is the benchmark's input: generated records whose query
// names cycle through a dnsperf-sized query list, in order.
func benchRecordSet() []Record {
	records := NewGenerator(7).Random(benchRecords)
	names := benchQueryNames(benchNames)
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
	fmt.Printf("produced %d records in %v\n", len(records), time.Since(start).Round(time.Millisecond))
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

// benchCounter is a metric that counts records a configuration has
// processed: the sum of a counter's series, or of a histogram's counts,
// restricted to one pipeline stage if stage is set, of which want means
// every record done.
type benchCounter struct {
	family, stage string
	want          int
}

// measureFLP polls flowlogs-pipeline's metrics until every counter of
// progress reaches its count or benchLimit passes, and returns the records
// per second between the first poll that saw progress and the last poll,
// and the records per CPU-second flowlogs-pipeline used meanwhile (0 if
// its process cannot be read). Progress is the least advanced counter, as
// a share of benchRecords. On a shared machine the second figure is the
// steadier one: other processes take wall-clock time, not CPU time.
func measureFLP(b *testing.B, urls []string, progress []benchCounter) (perSecond, perCPUSecond float64) {
	b.Helper()
	pid := flpPID(b)
	var t0, tLast time.Time
	var p0, pLast, cpu0, cpuLast float64
	var lag string
	var failed int
	var lastErr error
	deadline := time.Now().Add(benchLimit + 30*time.Second) // + consumer group join
	for {
		fams, err := scrapeAll(urls)
		now := time.Now()
		if err != nil {
			// A busy pipeline may miss a scrape: keep the last good one.
			failed++
			lastErr = err
		} else {
			var p float64
			p, lag = benchProgress(fams, progress)
			if t0.IsZero() && p > 0 {
				t0, p0, cpu0 = now, p, cpuSeconds(pid)
				deadline = now.Add(benchLimit)
			}
			tLast, pLast, cpuLast = now, p, cpuSeconds(pid)
		}
		if pLast >= benchRecords || now.After(deadline) {
			if t0.IsZero() || !tLast.After(t0) {
				b.Fatalf("nothing counted (%s; %d failed scrapes, last: %v)", lag, failed, lastErr)
			}
			perSecond = (pLast - p0) / tLast.Sub(t0).Seconds()
			cpu := cpuLast - cpu0
			if pid > 0 && cpu > 0 {
				perCPUSecond = (pLast - p0) / cpu
			}
			b.Logf("%.0f of %d records processed in %v, %.1f CPU-s (least advanced: %s; %d failed scrapes): %.0f records/s, %.0f records/CPU-s",
				pLast, benchRecords, tLast.Sub(t0).Round(time.Millisecond), cpu, lag, failed, perSecond, perCPUSecond)
			return perSecond, perCPUSecond
		}
		// Every scrape gathers every series (the original's: one per query
		// name) in flowlogs-pipeline's process: poll often at first, then
		// at 2% of the elapsed time, so that neither the scrapes' cost nor
		// the polling granularity weighs more than a few percent.
		wait := 100 * time.Millisecond
		if !t0.IsZero() {
			wait = max(wait, time.Since(t0)/50)
		}
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

// cpuSeconds is the user+system CPU time of pid, in seconds (proc(5)
// reports it in USER_HZ, 100 per second).
func cpuSeconds(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	f := procStat(pid)
	if len(f) < 13 {
		return 0
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return (utime + stime) / 100
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
	names := benchQueryNames(benchNames)
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
	records := benchRecordSet()
	tally := NewTally(records)
	if len(records) != benchRecords || len(tally.ByName) != benchNames {
		t.Fatalf("%d records over %d names, want %d over %d", len(records), len(tally.ByName), benchRecords, benchNames)
	}
	// dnsperf order: every name as often as every other.
	for n, c := range tally.ByName {
		if c != benchRecords/benchNames {
			t.Fatalf("%s queried %d times, want %d", n, c, benchRecords/benchNames)
		}
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
