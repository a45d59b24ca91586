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

// The ramp's defaults; PANO_BENCH_RATES, PANO_BENCH_STEP and
// PANO_BENCH_WORKERS override them.
var (
	benchRates   = []int{5000, 10000, 15000, 20000, 25000}
	benchStep    = 10 * time.Second
	benchWorkers = []int{1, 2}
)

// benchShareA is the first dnsperf instance's share of each rate (60/40,
// as TestWholeChain's 3,000 + 2,000).
const benchShareA = 0.6

// benchSettleMax bounds the wait for Prometheus' counts after a step;
// benchSettleQuiet ends it early once the counts stopped moving for that
// long (after Zeek expired the step's connections, 5 s after their last
// packet with zeekTestArgs, and a scrape).
const (
	benchSettleMax   = 2 * time.Minute
	benchSettleQuiet = 20 * time.Second
)

// benchStages are the processes whose CPU a step reports, in the chain's
// order.
var benchStages = []string{"agent", "zeek", "shim", "kafka", "flp", "prometheus"}

// BenchmarkChain measures the whole chain's highest sustained rate with
// real Zeek: for each Zeek worker count in PANO_BENCH_WORKERS (a
// sub-benchmark "workers=W": the agent with PCA_STREAMS=W, Zeek started
// by zeek-package's entrypoint with ZEEK_WORKERS=W) it starts the chain
// as TestWholeChain does (two unbound servers in namespaces, the agent,
// Zeek, the shim, Kafka, flowlogs-pipeline, Prometheus) and runs one
// sub-benchmark "rate=N" per total rate, each one dnsperf step of
// PANO_BENCH_STEP at N queries/s across two instances of streamClients
// sockets each, then waits for Prometheus to settle. It reports
// "queries/s" (completed by dnsperf per second), "lost" (queries whose
// outcome in Prometheus, answered or unanswered, is missing against
// dnsperf's) and each stage's CPU per DNS transaction (STAGE-cpu-us/txn:
// CPU time from the step's start until Prometheus had every query, over
// the queries sent). The ramp stops after the first step that loses
// anything or in which dnsperf itself lost queries (the servers or
// dnsperf saturated, so higher rates measure them, not the chain).
//
//	sudo PANO_BENCH_RATES=2000,5000 PANO_BENCH_STEP=5s PANO_BENCH_WORKERS=1 go test -run '^$' -bench BenchmarkChain -benchtime 1x ./internal/e2etest/
func BenchmarkChain(b *testing.B) {
	testenv.RequireRoot(b)
	for prog, pkg := range map[string]string{"dnsperf": "dnsperf", "unbound": "unbound"} {
		testenv.RequireProgram(b, prog, pkg)
	}
	rates, step, workers, err := benchConfig()
	if err != nil {
		b.Fatal(err)
	}

	// Servers before the agent, as in TestWholeChain: everything captured
	// is dnsperf's. Each worker count gets its own chain on the same
	// servers.
	servers := []*server{
		benchServer(b, 50, testenv.QueryMix{Queries: 5000, NXShare: 0.2, AAAAShare: 0.3, Seed: 1}),
		benchServer(b, 200, testenv.QueryMix{Queries: 5000, NXShare: 0.35, ServfailShare: 0.05, AAAAShare: 0.5, Seed: 2}),
	}
	ifaces := make([]string, len(servers))
	names := make([]string, len(servers))
	for i, s := range servers {
		// Several flows per instance, so that the agent's flow hash
		// splits the load over the streams (see streamClients); the same
		// for every worker count, so that the rows compare.
		s.clients = streamClients
		ifaces[i], names[i] = s.ns.HostIf, s.addr()
	}
	sel := fmt.Sprintf(`server=~"%s"`, strings.ReplaceAll(strings.Join(names, "|"), ".", `\\.`))

	for _, w := range workers {
		b.Run("workers="+strconv.Itoa(w), func(b *testing.B) {
			c := startChain(b, ifaces, w)
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
					var cpu []string
					for i, st := range benchStages {
						us := float64(r.cpu[i].Microseconds()) / float64(max(r.sent, 1))
						b.ReportMetric(us, st+"-cpu-us/txn")
						cpu = append(cpu, fmt.Sprintf("%s %.1f", st, us))
					}
					b.Logf("%d worker(s), rate %d (%d+%d): dnsperf sent %d, completed %d, lost %d; Prometheus answered %d, unanswered %d (settled %v after the load); agent dropped %v packets; CPU-us per query: %s",
						w, rate, servers[0].qps, servers[1].qps, r.sent, int(r.completed), r.dnsperfLost, r.answered, r.unanswered,
						r.settle.Round(time.Millisecond), r.agentDrops, strings.Join(cpu, ", "))
					stop = r.lost > 0 || r.dnsperfLost > 0
				})
				if stop {
					b.Logf("stopping the ramp at %d queries/s: something was lost", rate)
					break
				}
			}
		})
	}
}

// stageCPU is the CPU time each of benchStages has used so far.
func (c *chain) stageCPU(b *testing.B) []time.Duration {
	b.Helper()
	pids := map[string][]int{
		"agent": {c.ag.cmd.Process.Pid}, "zeek": processTree(c.zeek.Pid()), "shim": {c.shim.cmd.Process.Pid},
		"flp": {c.flp.Pid}, "prometheus": {c.prom.Pid},
	}
	out := make([]time.Duration, len(benchStages))
	for i, st := range benchStages {
		if st == "kafka" {
			out[i] = c.kafka.CPU()
			continue
		}
		for _, pid := range pids[st] {
			d, err := testenv.ProcessCPU(pid)
			if err != nil {
				b.Fatalf("%s CPU: %v", st, err)
			}
			out[i] += d
		}
	}
	return out
}

// processTree is pid and its descendants: with more than one worker,
// zeek-package's entrypoint is a shell whose children are the Zeek
// processes.
func processTree(pid int) []int {
	parent := map[int]int{}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		p, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// The parent is the second field after the command's closing ")".
		if i := strings.LastIndexByte(string(b), ')'); i >= 0 {
			if f := strings.Fields(string(b[i+1:])); len(f) > 1 {
				if pp, err := strconv.Atoi(f[1]); err == nil {
					parent[p] = pp
				}
			}
		}
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		for p, pp := range parent {
			if pp == out[i] {
				out = append(out, p)
			}
		}
	}
	return out
}

// benchConfig reads the ramp and the worker counts from the environment.
func benchConfig() ([]int, time.Duration, []int, error) {
	rates, step, workers := benchRates, benchStep, benchWorkers
	var err error
	if v := os.Getenv("PANO_BENCH_RATES"); v != "" {
		if rates, err = intList(v, 2); err != nil {
			return nil, 0, nil, fmt.Errorf("PANO_BENCH_RATES=%q: want comma-separated queries/s of at least 2", v)
		}
	}
	if v := os.Getenv("PANO_BENCH_STEP"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			return nil, 0, nil, fmt.Errorf("PANO_BENCH_STEP=%q: want a duration of at least 1s", v)
		}
		step = d
	}
	if v := os.Getenv("PANO_BENCH_WORKERS"); v != "" {
		if workers, err = intList(v, 1); err != nil {
			return nil, 0, nil, fmt.Errorf("PANO_BENCH_WORKERS=%q: want comma-separated Zeek worker counts of at least 1", v)
		}
	}
	return rates, step, workers, nil
}

// intList parses comma-separated integers of at least lowest.
func intList(v string, lowest int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < lowest {
			return nil, fmt.Errorf("%q", f)
		}
		out = append(out, n)
	}
	return out, nil
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
	cpu                  []time.Duration // each of benchStages' CPU during the step and its settling
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
	cpu0 := c.stageCPU(b)

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
				Clients: s.clients, Outstanding: 1000, ExtraArgs: []string{"-b", "4096"},
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
	c.zeekAlive(b)
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
	r.cpu = c.stageCPU(b)
	for i := range r.cpu {
		r.cpu[i] -= cpu0[i]
	}
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
