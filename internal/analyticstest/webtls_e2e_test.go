package analyticstest

import (
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pano-observability/pano/internal/testenv"
	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// TestHTTPAndTLSLogsThroughPipelineMatchDashboards is the DNS test's twin
// for http.log and ssl.log: records with known content go through the
// real shim (one process following both logs), a real Kafka broker,
// flowlogs-pipeline with PANO's configuration (its HTTP and TLS branches)
// and Prometheus with PANO's scrape configuration and rules. Then the
// series must equal the records' counts, sums, histogram buckets and
// certificate expiry times exactly, every query of the HTTP and TLS
// dashboards must return what the records say, and the alerts whose
// condition the records meet must be active in Prometheus.
//
// Phases A and B as in the DNS test: every series exists after A, and the
// queries are evaluated over a window that holds B alone.
func TestHTTPAndTLSLogsThroughPipelineMatchDashboards(t *testing.T) {
	root := testenv.RepoRoot(t)
	k := testenv.StartKafka(t)
	flp := testenv.StartPANOFLP(t, k) // creates the topics first, as compose's kafka-init does
	logs, shimAddr := runShim(t, root, k, "http.log", "ssl.log")

	promYAML, targets := prometheusConfig(t, root, hostPort(t, flp.MetricsURL), shimAddr)
	prom := testenv.StartPrometheus(t, promYAML, ruleFiles(t, root)...)
	prom.WaitTargetsUp(t, targets)
	client, err := api.NewClient(api.Config{Address: prom.URL})
	if err != nil {
		t.Fatal(err)
	}
	q := &querier{api: promv1.NewAPI(client)}

	// Certificates expire relative to now (whole seconds, as X.509's
	// notAfter), so that the expiry alerts see them as Prometheus will.
	hg, sg := NewHTTPGenerator(20261203), NewSSLGenerator(20261203, float64(time.Now().Unix()))
	ha, hb := append(hg.Grid(), hg.Random(1200)...), hg.Random(1200)
	sa, sb := append(sg.Grid(), sg.Random(800)...), sg.Random(800)
	hta, htb, hall := NewHTTPTally(ha), NewHTTPTally(hb), NewHTTPTally(slices.Concat(ha, hb))
	sta, stb, sall := NewSSLTally(sa), NewSSLTally(sb), NewSSLTally(slices.Concat(sa, sb))

	write := func(h []HTTPRecord, s []SSLRecord) {
		hl, sl := make([][]byte, 0, len(h)), make([][]byte, 0, len(s))
		for _, r := range h {
			hl = append(hl, r.ZeekJSON())
		}
		for _, r := range s {
			sl = append(sl, r.ZeekJSON())
		}
		appendLines(t, logs[0], hl)
		appendLines(t, logs[1], sl)
	}
	write(ha, sa)
	doneA := q.waitValues(t, webTotals(hta, sta))
	time.Sleep(6 * interval)
	startB := time.Now()
	write(hb, sb)
	doneB := q.waitValues(t, webTotals(hall, sall))

	// Evaluate just after a flowlogs-pipeline scrape, once the window (and
	// the recording rules' window, one evaluation older) is clear of A.
	// HTTP and TLS metrics come from the same target: one sample span.
	time.Sleep(max(3*interval, time.Until(doneA.Add(window+2*interval))))
	at, dt := q.sampleSpan(t, `pano_http_requests_total`)
	if at.Add(-window).Add(-interval).Before(doneA) || !at.Add(-window).Before(startB.Add(-interval)) {
		t.Fatalf("window [%v, %v] does not start between A done (%v) and B start (%v): B took %v to arrive",
			at.Add(-window), at, doneA, startB, doneB.Sub(startB))
	}
	_, shimDT := q.sampleSpanAt(t, `pano_shim_records_produced_total`, at)
	t.Logf("A: %d http + %d ssl records, B: %d + %d; evaluating at %v, samples span %v",
		len(ha), len(sa), len(hb), len(sb), at.Format(time.RFC3339Nano), dt)

	t.Run("series", func(t *testing.T) {
		checkHTTPSeries(t, q, at, hall)
		checkTLSSeries(t, q, at, sall)
	})

	vars := map[string]string{
		"__rate_interval": model.Duration(window).String(), "__range": model.Duration(window).String(),
		"__interval": model.Duration(interval).String(), "server": ".*",
	}
	// time() at the evaluation: the API sends milliseconds.
	atSec := float64(at.UnixMilli()) / 1000
	httpDash := loadDashboardFile(t, root, "pano-http.json")
	tlsDash := loadDashboardFile(t, root, "pano-tls.json")
	t.Run("pano-http", func(t *testing.T) {
		checkDashboard(t, q, httpDash, at, vars, httpExpectations(hta, htb, hall, dt, shimDT), true)
	})
	t.Run("pano-tls", func(t *testing.T) {
		checkDashboard(t, q, tlsDash, at, vars, tlsExpectations(sta, stb, sall, dt, shimDT, atSec), true)
	})

	// The quiet servers alone: where the truth is 0, a panel shows 0, not
	// "No data"; and the server variable selects one server.
	t.Run("quiet", func(t *testing.T) {
		quiet := maps.Clone(vars)
		quiet["server"] = strings.ReplaceAll(QuietHTTPServer, ".", `\\.`)
		checkDashboard(t, q, httpDash, at, quiet, map[string]check{
			"Server 5xx ratio/A":                 exact("server", map[string]float64{QuietHTTPServer: 0}),
			"No-reply share per server/A":        exact("server", map[string]float64{QuietHTTPServer: 0}),
			"Status class share per server/A":    exactBy(map[string]float64{QuietHTTPServer + " 2xx": 1}, "server", "status_class"),
			"Body bytes per second/B":            exact("server", map[string]float64{QuietHTTPServer: 0}),
			"Average response time per server/A": exact("server", map[string]float64{QuietHTTPServer: htb.RT.Sum[QuietHTTPServer] / float64(len(htb.RT.ByServer[QuietHTTPServer]))}),
		}, false)
		quiet["server"] = strings.ReplaceAll(QuietTLSServer, ".", `\\.`)
		checkDashboard(t, q, tlsDash, at, quiet, map[string]check{
			"Server handshake failure ratio/A":       exact("server", map[string]float64{QuietTLSServer: 0}),
			"Legacy handshakes per server/A":         exact("server", map[string]float64{QuietTLSServer: 0}),
			"Certificates expiring within 14 days/A": exact("", one(0)),
			"Certificate expiry/A":                   exact("server_name", map[string]float64{}),
		}, false)
	})

	t.Run("alerts", func(t *testing.T) {
		checkWebAlerts(t, q, at, htb, stb, sall)
	})
}

// webTotals are the values that say every record of the tallies reached
// Prometheus through every stage.
func webTotals(h *HTTPTally, s *SSLTally) map[string]float64 {
	// Bucket 8 (le 0.0025) is the last from the milliseconds twins: it
	// arrives through prometheus.yml's relabelling.
	hb, sb := MergedBucketCounts(h.RT.All), MergedBucketCounts(s.HT.All)
	return map[string]float64{
		`sum(pano_shim_records_produced_total{topic="http"})`:       float64(h.Total),
		`sum(pano_flp_ingest_flows_processed{stage="ingest_http"})`: float64(h.Total),
		`sum(pano_http_requests_total)`:                             float64(h.Total),
		`sum(pano_http_requests_by_host_total)`:                     float64(h.WithHost),
		`sum(pano_http_response_time_seconds_count)`:                float64(len(h.RT.All)),
		`sum(pano_http_response_time_seconds_bucket{le="0.0025"})`:  float64(hb[8]),
		`sum(pano_shim_records_produced_total{topic="ssl"})`:        float64(s.Total),
		`sum(pano_flp_ingest_flows_processed{stage="ingest_ssl"})`:  float64(s.Total),
		`sum(pano_tls_handshakes_total)`:                            float64(s.Total),
		`sum(pano_tls_handshake_time_seconds_count)`:                float64(len(s.HT.All)),
		`sum(pano_tls_handshake_time_seconds_bucket{le="0.0025"})`:  float64(sb[8]),
		`count(pano_tls_cert_not_valid_after_timestamp_seconds)`:    float64(len(s.Certs)),
	}
}

// waitValues waits until every expression has its value in Prometheus, and
// returns when it saw that.
func (q *querier) waitValues(t *testing.T, want map[string]float64) time.Time {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		now := time.Now()
		var behind []string
		for expr, w := range want {
			v, err := q.instant(expr, now)
			g := math.NaN()
			if err == nil && len(v) == 1 {
				g = float64(v[0].Value)
			}
			if g != w {
				behind = append(behind, fmt.Sprintf("%s = %v (want %v, err %v)", expr, g, w, err))
			}
		}
		if len(behind) == 0 {
			return now
		}
		if now.After(deadline) {
			t.Fatalf("records did not all arrive: %s", strings.Join(behind, "; "))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// byLabels keys a query result by the values of labels, joined by spaces.
func byLabels(t *testing.T, where string, v model.Vector, labels ...string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, s := range v {
		var key []string
		for _, l := range labels {
			key = append(key, string(s.Metric[model.LabelName(l)]))
		}
		k := strings.Join(key, " ")
		if _, dup := out[k]; dup {
			t.Errorf("%s: two series with %v = %q", where, labels, k)
		}
		out[k] = float64(s.Value)
	}
	return out
}

// exactBy: the same series (keyed by labels), values equal to rounding.
func exactBy(want map[string]float64, labels ...string) check {
	return func(t *testing.T, where string, v model.Vector) {
		t.Helper()
		got := byLabels(t, where, v, labels...)
		for k, w := range want {
			g, ok := got[k]
			if !ok {
				t.Errorf("%s: no series %v = %q (want %v)", where, labels, k, w)
			} else if !approxEqual(g, w) {
				t.Errorf("%s{%s} = %v, want %v", where, k, g, w)
			}
		}
		for k, g := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("%s: unexpected series %v = %q = %v", where, labels, k, g)
			}
		}
	}
}

func ints(m map[string]int) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		out[k] = float64(v)
	}
	return out
}

func (q *querier) mustQuery(t *testing.T, expr string, at time.Time) model.Vector {
	t.Helper()
	v, err := q.instant(expr, at)
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// checkHistogram compares a merged latency histogram in Prometheus with
// the observations: per server, its count, its sum and every one of its 21
// buckets.
func checkHistogram(t *testing.T, q *querier, at time.Time, base string, obs map[string][]float64, sums map[string]float64) {
	t.Helper()
	counts, buckets := map[string]float64{}, map[string]float64{}
	for s, vs := range obs {
		counts[s] = float64(len(vs))
		for i, n := range MergedBucketCounts(vs) {
			buckets[s+" "+fmt.Sprint(model.SampleValue(ResponseTimeBuckets[i]))] = float64(n)
		}
	}
	exactBy(counts, "server")(t, base+"_count", q.mustQuery(t, base+"_count", at))
	exactBy(sums, "server")(t, base+"_sum", q.mustQuery(t, base+"_sum", at))
	// le as Prometheus stores it: the relabelled strings of prometheus.yml,
	// flowlogs-pipeline's own above 5 ms; parse them to compare.
	got := map[string]float64{}
	for _, s := range q.mustQuery(t, base+"_bucket", at) {
		le, err := strconv.ParseFloat(string(s.Metric["le"]), 64)
		if err != nil {
			t.Errorf("%s_bucket: le %q", base, s.Metric["le"])
		}
		got[string(s.Metric["server"])+" "+fmt.Sprint(model.SampleValue(le))] = float64(s.Value)
	}
	for k, w := range buckets {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("%s_bucket{server le = %s} = %v (present %v), want %v", base, k, g, ok, w)
		}
	}
	if len(got) != len(buckets) {
		t.Errorf("%s_bucket: %d series, want %d (21 per server)", base, len(got), len(buckets))
	}
}

func checkHTTPSeries(t *testing.T, q *querier, at time.Time, all *HTTPTally) {
	t.Helper()
	exactBy(ints(all.BySeries), "server", "method", "status_code")(t, "pano_http_requests_total", q.mustQuery(t, "pano_http_requests_total", at))
	exactBy(ints(all.ByHost), "host")(t, "pano_http_requests_by_host_total", q.mustQuery(t, "pano_http_requests_by_host_total", at))
	exactBy(all.ReqBytes, "server")(t, "pano_http_request_body_bytes_total", q.mustQuery(t, "pano_http_request_body_bytes_total", at))
	exactBy(all.RespBytes, "server")(t, "pano_http_response_body_bytes_total", q.mustQuery(t, "pano_http_response_body_bytes_total", at))
	checkHistogram(t, q, at, "pano_http_response_time_seconds", all.RT.ByServer, all.RT.Sum)
	if v := q.mustQuery(t, `{__name__=~"pano_http_response_time_milliseconds.*"}`, at); len(v) != 0 {
		t.Errorf("milliseconds histogram left in Prometheus: %v", v)
	}
}

func checkTLSSeries(t *testing.T, q *querier, at time.Time, all *SSLTally) {
	t.Helper()
	exactBy(ints(all.BySeries), "server", "version", "cipher", "outcome")(t, "pano_tls_handshakes_total", q.mustQuery(t, "pano_tls_handshakes_total", at))
	checkHistogram(t, q, at, "pano_tls_handshake_time_seconds", all.HT.ByServer, all.HT.Sum)
	if v := q.mustQuery(t, `{__name__=~"pano_tls_handshake_time_milliseconds.*"}`, at); len(v) != 0 {
		t.Errorf("milliseconds histogram left in Prometheus: %v", v)
	}
	// The gauge holds each certificate's notAfter as the records gave it.
	got := byLabels(t, "pano_tls_cert_not_valid_after_timestamp_seconds", q.mustQuery(t, "pano_tls_cert_not_valid_after_timestamp_seconds", at), "server", "server_name")
	if !maps.Equal(got, all.Certs) {
		t.Errorf("pano_tls_cert_not_valid_after_timestamp_seconds = %v, want %v", got, all.Certs)
	}
}

// rates, shares and the like, as the DNS expectations compute them.
func perSecond(keys map[string]int, counts map[string]int, dt time.Duration) map[string]float64 {
	out := map[string]float64{}
	for k := range keys {
		out[k] = float64(counts[k]) / dt.Seconds()
	}
	return out
}

func sharesOf(keys map[string]int, counts map[string]int, total int) map[string]float64 {
	out := map[string]float64{}
	for k := range keys {
		out[k] = float64(counts[k]) / float64(total)
	}
	return out
}

func quantiles(prefix string, sorted []float64) map[string]check {
	out := map[string]check{}
	for i, q := range []float64{0.5, 0.75, 0.9, 0.95, 0.99} {
		out[fmt.Sprintf("%s/%c", prefix, 'A'+i)] = sameBucket("", one(Quantile(sorted, q)))
	}
	return out
}

// httpExpectations maps "panel title/refId" of the HTTP dashboard to the
// check of its result, from the records: ta and tb are phases A and B, dt
// the span of the samples in the window.
func httpExpectations(ta, tb, all *HTTPTally, dt, shimDT time.Duration) map[string]check {
	servers := ta.ByServer
	perServer := func(f func(s string) float64) map[string]float64 {
		out := map[string]float64{}
		for s := range servers {
			out[s] = f(s)
		}
		return out
	}
	ratio := func(n map[string]int) map[string]float64 {
		return perServer(func(s string) float64 { return float64(n[s]) / float64(tb.ByServer[s]) })
	}
	avg := perServer(func(s string) float64 { return tb.RT.Sum[s] / float64(len(tb.RT.ByServer[s])) })
	quantile := func(q float64) map[string]float64 {
		return perServer(func(s string) float64 { return Quantile(tb.RT.ByServer[s], q) })
	}
	bytesPerSecond := func(b map[string]float64) map[string]float64 {
		return perServer(func(s string) float64 { return b[s] / dt.Seconds() })
	}
	classShare := map[string]float64{}
	for k := range ta.ServerClass {
		s := strings.Fields(k)[0]
		classShare[k] = float64(tb.ServerClass[k]) / float64(tb.ByServer[s])
	}
	topHosts := map[string]float64{}
	for h, c := range tb.ByHost {
		topHosts[h] = float64(c) * window.Seconds() / dt.Seconds() // increase() over the window
	}
	w := map[string]check{
		"Total requests/A":                   exact("", one(float64(all.Total))),
		"Request rate/A":                     exact("server", perSecond(servers, tb.ByServer, dt)),
		"Average response time per server/A": exact("server", avg),
		"Status code rate/A":                 exact("status_code", perSecond(ta.ByStatus, tb.ByStatus, dt)),
		"Status class share/A":               exact("status_class", sharesOf(ta.ByClass, tb.ByClass, tb.Total)),
		"Method rate/A":                      exact("method", perSecond(ta.ByMethod, tb.ByMethod, dt)),
		"Top hosts/A":                        topK("host", 10, topHosts),
		"Server 5xx ratio/A":                 exact("server", ratio(tb.FiveXX)),
		"Server latency (p50, p99, mean)/A":  sameBucket("server", quantile(0.5)),
		"Server latency (p50, p99, mean)/B":  sameBucket("server", quantile(0.99)),
		"Server latency (p50, p99, mean)/C":  exact("server", avg),
		"No-reply share per server/A":        exact("server", ratio(tb.NoReply)),
		"Body bytes per second/A":            exact("server", bytesPerSecond(tb.RespBytes)),
		"Body bytes per second/B":            exact("server", bytesPerSecond(tb.ReqBytes)),
		"Status class share per server/A":    exactBy(classShare, "server", "status_class"),
		"Records per second/A":               exact("", one(float64(tb.Total)/shimDT.Seconds())),
		"Records per second/B":               exact("", one(float64(tb.Total)/dt.Seconds())),
		"Records per second/C":               exact("", one(0)),
	}
	maps.Copy(w, quantiles("Response time quantiles", tb.RT.All))
	return w
}

// tlsExpectations is httpExpectations for the TLS dashboard; atSec is
// time() at the evaluation.
func tlsExpectations(ta, tb, all *SSLTally, dt, shimDT time.Duration, atSec float64) map[string]check {
	servers := ta.ByServer
	perServer := func(f func(s string) float64) map[string]float64 {
		out := map[string]float64{}
		for s := range servers {
			out[s] = f(s)
		}
		return out
	}
	avg := perServer(func(s string) float64 { return tb.HT.Sum[s] / float64(len(tb.HT.ByServer[s])) })
	quantile := func(q float64) map[string]float64 {
		return perServer(func(s string) float64 { return Quantile(tb.HT.ByServer[s], q) })
	}
	ciphers := map[string]float64{}
	for c, n := range tb.ByCipher {
		ciphers[c] = float64(n) * window.Seconds() / dt.Seconds() // increase() over the window
	}
	left, soon := map[string]float64{}, 0
	for k, na := range all.Certs {
		left[strings.Fields(k)[1]] = na - atSec
		if na-atSec < 14*86400 {
			soon++
		}
	}
	w := map[string]check{
		"Total handshakes/A":                  exact("", one(float64(all.Total))),
		"Handshake rate/A":                    exact("server", perSecond(servers, tb.ByServer, dt)),
		"Average handshake time per server/A": exact("server", avg),
		"Version rate/A":                      exact("version", perSecond(ta.ByVersion, tb.ByVersion, dt)),
		"Version share/A":                     exact("version", sharesOf(ta.ByVersion, tb.ByVersion, tb.Total)),
		"Outcome rate/A":                      exact("outcome", perSecond(ta.ByOutcome, tb.ByOutcome, dt)),
		// Fewer than 10 ciphers: topk returns them all.
		"Top ciphers/A":                            exact("cipher", ciphers),
		"Certificate expiry/A":                     exact("server_name", left),
		"Certificates expiring within 14 days/A":   exact("", one(float64(soon))),
		"Server handshake failure ratio/A":         exact("server", perServer(func(s string) float64 { return float64(tb.Failed[s]) / float64(tb.ByServer[s]) })),
		"Server handshake time (p50, p99, mean)/A": sameBucket("server", quantile(0.5)),
		"Server handshake time (p50, p99, mean)/B": sameBucket("server", quantile(0.99)),
		"Server handshake time (p50, p99, mean)/C": exact("server", avg),
		"Legacy handshakes per server/A":           exact("server", perSecond(servers, tb.Legacy, dt)),
		"Records per second/A":                     exact("", one(float64(tb.Total)/shimDT.Seconds())),
		"Records per second/B":                     exact("", one(float64(tb.Total)/dt.Seconds())),
		"Records per second/C":                     exact("", one(0)),
	}
	maps.Copy(w, quantiles("Handshake time quantiles", tb.HT.All))
	return w
}

// checkWebAlerts: the HTTP and TLS alerts active in Prometheus at the
// evaluation are exactly those the records call for. The ratio alerts
// wait 5 minutes before firing, longer than the test: pending counts.
func checkWebAlerts(t *testing.T, q *querier, at time.Time, htb *HTTPTally, stb *SSLTally, sall *SSLTally) {
	t.Helper()
	got := map[string]bool{}
	for _, s := range q.mustQuery(t, `ALERTS{alertname=~"PanoHTTP.*|PanoTLS.*"}`, at) {
		m := s.Metric
		key := fmt.Sprintf("%s %s %s%s", m["alertname"], m["server"], m["server_name"], m["version"])
		if m["alertstate"] == "firing" {
			key += " firing"
		}
		got[key] = true
	}
	want := map[string]bool{}
	for s, n := range htb.FiveXX {
		if float64(n)/float64(htb.ByServer[s]) > 0.05 {
			want["PanoHTTP5xxRatioHigh "+s+" "] = true
		}
	}
	for s, n := range stb.Failed {
		if float64(n)/float64(stb.ByServer[s]) > 0.1 {
			want["PanoTLSHandshakeFailureRatioHigh "+s+" "] = true
		}
	}
	for k := range sall.BySeries {
		f := strings.Fields(k) // server version cipher outcome
		if legacyVersions[f[1]] {
			want["PanoTLSLegacyVersionSeen "+f[0]+" "+f[1]+" firing"] = true
		}
	}
	now := float64(at.Unix())
	for k, na := range sall.Certs {
		switch left := na - now; {
		case left <= 0:
			want["PanoTLSCertificateExpired "+k+" firing"] = true
		case left < 14*86400:
			want["PanoTLSCertificateExpiresSoon "+k+" firing"] = true
		}
	}
	// A ratio alert may have waited its 5 minutes already on a slow run.
	for k := range got {
		if strings.HasSuffix(k, " firing") && (strings.HasPrefix(k, "PanoHTTP5xxRatioHigh") || strings.HasPrefix(k, "PanoTLSHandshakeFailureRatioHigh")) {
			delete(got, k)
			got[strings.TrimSuffix(k, " firing")] = true
		}
	}
	if len(want) < 6 {
		t.Fatalf("the records call for %d alerts, want at least 6: %v", len(want), want)
	}
	if !maps.Equal(got, want) {
		t.Errorf("active alerts = %v, want %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
}

func loadDashboardFile(t *testing.T, root, name string) *Dashboard {
	t.Helper()
	d, err := LoadDashboard(filepath.Join(root, "grafana", "dashboards", name))
	if err != nil {
		t.Fatal(err)
	}
	return d
}
