package e2etest

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/pano-observability/pano/internal/testenv"
)

// The ramp's defaults; PANO_BENCH_RATES and PANO_BENCH_STEP override them.
var (
	benchRates = []int{2000, 5000, 10000, 20000}
	benchStep  = 10 * time.Second
)

// benchShareA is the first dnsperf instance's share of each rate (60/40,
// as TestWholeChain's 3,000 + 2,000).
const benchShareA = 0.6

// benchSettleMax bounds the wait for Prometheus' counts after a step;
// benchSettleQuiet ends it early once the counts stopped moving for that
// long (after the stand-in's 5 s timeout for unanswered queries and a
// scrape).
const (
	benchSettleMax   = 2 * time.Minute
	benchSettleQuiet = 20 * time.Second
)

// BenchmarkChain measures the whole chain's highest sustained rate: it
// starts the chain once (as TestWholeChain does: two unbound servers in
// namespaces, the agent, the tshark stand-in for Zeek, the shim, Kafka,
// flowlogs-pipeline, Prometheus) and runs one sub-benchmark "rate=N" per
// total rate, each one dnsperf step of PANO_BENCH_STEP at N queries/s
// across two instances, then waits for Prometheus to settle. It reports
// "queries/s" (completed by dnsperf per second) and "lost" (queries whose
// outcome in Prometheus, answered or unanswered, is missing against
// dnsperf's). The ramp stops after the first step that loses anything or
// in which dnsperf itself lost queries (the servers or dnsperf saturated,
// so higher rates measure them, not the chain).
//
//	sudo PANO_BENCH_RATES=2000,5000 PANO_BENCH_STEP=5s go test -run '^$' -bench BenchmarkChain -benchtime 1x ./internal/e2etest/
func BenchmarkChain(b *testing.B) {
	testenv.RequireRoot(b)
	for prog, pkg := range map[string]string{"tshark": "tshark", "dnsperf": "dnsperf", "unbound": "unbound"} {
		testenv.RequireProgram(b, prog, pkg)
	}
	rates, step, err := benchConfig()
	if err != nil {
		b.Fatal(err)
	}

	// Servers before the agent, as in TestWholeChain: everything captured
	// is dnsperf's.
	servers := []*server{
		benchServer(b, 50, testenv.QueryMix{Queries: 5000, NXShare: 0.2, AAAAShare: 0.3, Seed: 1}),
		benchServer(b, 200, testenv.QueryMix{Queries: 5000, NXShare: 0.35, ServfailShare: 0.05, AAAAShare: 0.5, Seed: 2}),
	}
	ifaces := make([]string, len(servers))
	names := make([]string, len(servers))
	for i, s := range servers {
		ifaces[i], names[i] = s.ns.HostIf, s.addr()
	}
	c := startChain(b, ifaces, 1)
	sel := fmt.Sprintf(`server=~"%s"`, strings.ReplaceAll(strings.Join(names, "|"), ".", `\\.`))

	for _, rate := range rates {
		stop := false
		b.Run("rate="+strconv.Itoa(rate), func(b *testing.B) {
			servers[0].qps = int(float64(rate)*benchShareA + 0.5)
			servers[1].qps = rate - servers[0].qps
			r := benchStepRun(b, c, servers, sel, step)
			b.ReportMetric(0, "ns/op") // one timed step, not an operation
			b.ReportMetric(r.qps, "queries/s")
			b.ReportMetric(float64(r.lost), "lost")
			b.ReportMetric(float64(r.dnsperfLost), "dnsperf-lost")
			b.ReportMetric(r.settle.Seconds(), "settle-s")
			b.ReportMetric(r.agentDrops, "agent-drops")
			b.Logf("rate %d (%d+%d): dnsperf sent %d, completed %d, lost %d; Prometheus answered %d, unanswered %d (settled %v after the load); agent dropped %v packets",
				rate, servers[0].qps, servers[1].qps, r.sent, int(r.completed), r.dnsperfLost, r.answered, r.unanswered, r.settle.Round(time.Millisecond), r.agentDrops)
			stop = r.lost > 0 || r.dnsperfLost > 0
		})
		if stop {
			b.Logf("stopping the ramp at %d queries/s: something was lost", rate)
			break
		}
	}
}

// benchConfig reads the ramp from the environment.
func benchConfig() ([]int, time.Duration, error) {
	rates, step := benchRates, benchStep
	if v := os.Getenv("PANO_BENCH_RATES"); v != "" {
		rates = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 2 {
				return nil, 0, fmt.Errorf("PANO_BENCH_RATES=%q: want comma-separated queries/s of at least 2", v)
			}
			rates = append(rates, n)
		}
	}
	if v := os.Getenv("PANO_BENCH_STEP"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			return nil, 0, fmt.Errorf("PANO_BENCH_STEP=%q: want a duration of at least 1s", v)
		}
		step = d
	}
	return rates, step, nil
}

func benchServer(b *testing.B, names int, mix testenv.QueryMix) *server {
	b.Helper()
	ns := testenv.NewNetns(b)
	u := testenv.StartUnbound(b, ns, testenv.UnboundOptions{Names: names})
	return &server{ns: ns, u: u, queries: u.WriteQueryFile(b, mix)}
}

// stepResult is one step: dnsperf's totals and what Prometheus added.
type stepResult struct {
	sent, dnsperfLost    int
	completed            float64
	qps                  float64 // completed per second, as dnsperf timed its run
	answered, unanswered int
	lost                 int
	agentDrops           float64 // packets the agent dropped (its counter, through Prometheus)
	settle               time.Duration
}

// benchStepRun runs both dnsperf instances for step and compares the
// counts Prometheus added with theirs. Counters accumulate across steps,
// so the step's counts are differences from before it.
func benchStepRun(b *testing.B, c *chain, servers []*server, sel string, step time.Duration) stepResult {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), step+benchSettleMax+time.Minute)
	defer cancel()
	counts := func() (total, unanswered float64) {
		m, err := promVector(ctx, c.prom, `sum by (rcode) (pano_dns_queries_total{`+sel+`})`, "rcode")
		if err != nil {
			b.Fatal(err)
		}
		return sumOf(m), m["unanswered"]
	}
	total0, unanswered0 := counts()
	// The agent's own drops, to tell where a loss happened.
	agentDrops := func() float64 {
		v, err := c.prom.QueryScalar(ctx, `sum(pano_agent_packets_dropped_total) or vector(0)`)
		if err != nil {
			b.Fatal(err)
		}
		return v
	}
	drops0 := agentDrops()

	reports := make([]testenv.DNSPerfReport, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// As runPhase: room for lost queries in flight and 4 MiB
			// socket buffers, so that dnsperf itself loses nothing it was
			// answered.
			reports[i] = testenv.RunDNSPerf(ctx, b, testenv.DNSPerfOptions{
				Server: s.u.Addr, QueryFile: s.queries, Duration: step, QPS: s.qps, Timeout: 5 * time.Second,
				Outstanding: 1000, ExtraArgs: []string{"-b", "4096"},
			})
		}()
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	loadDone := time.Now()
	if c.ag.exited() {
		b.Fatalf("the agent exited during the load: %s", c.ag.lastLog())
	}
	var r stepResult
	for _, rep := range reports {
		if rep.Interrupted != 0 {
			b.Fatalf("dnsperf: %d queries interrupted, unknown outcome", rep.Interrupted)
		}
		r.sent += rep.Completed + rep.Lost
		r.completed += float64(rep.Completed)
		r.dnsperfLost += rep.Lost
		r.qps += rep.QPS
	}
	if r.qps == 0 {
		r.qps = r.completed / step.Seconds()
	}

	// Wait until every query sent is counted, or the counts stop moving.
	var total, unanswered float64
	last, lastChange := -1.0, time.Now()
	for {
		total, unanswered = counts()
		total, unanswered = total-total0, unanswered-unanswered0
		if total != last {
			last, lastChange = total, time.Now()
		}
		if total >= float64(r.sent) || time.Since(loadDone) > benchSettleMax ||
			(time.Since(loadDone) > benchSettleQuiet && time.Since(lastChange) > benchSettleQuiet) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	r.settle = time.Since(loadDone)
	r.agentDrops = agentDrops() - drops0
	r.answered, r.unanswered = int(total-unanswered), int(unanswered)
	// Lost: queries dnsperf saw answered that Prometheus does not count
	// as answered, and queries dnsperf lost that it does not count as
	// unanswered. A record missing altogether is in one of the two; a
	// response the capture missed moves a query from the first to the
	// second.
	r.lost = max(int(r.completed)-r.answered, 0) + max(r.dnsperfLost-r.unanswered, 0)
	return r
}

// promVector is vectorBy without a test: the value of expr by label.
func promVector(ctx context.Context, prom *testenv.Prometheus, expr, label string) (map[string]float64, error) {
	v, err := prom.Query(ctx, expr)
	if err != nil {
		return nil, err
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("%s: %s, want a vector", expr, v.Type())
	}
	out := map[string]float64{}
	for _, s := range vec {
		out[string(s.Metric[model.LabelName(label)])] = float64(s.Value)
	}
	return out, nil
}
