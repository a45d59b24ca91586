package e2etest

import (
	"context"
	"fmt"
	"maps"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pano-observability/pano/internal/testenv"
)

// BenchmarkHTTPBudget ramps h2load's keep-alive mix (budgetPaths: a
// quarter of the responses 20 KiB) against nginx through the agent and
// Zeek (the image's defaults: only the forwarded logs written), first
// with budgetFilter, then with fullFilter, in one run on one machine.
// It does so twice: with segments of one MSS, as a physical link (or a
// capture NIC with offloads off) carries them, and with the veth's own
// 64 KiB GSO segments, as a pod's veth has them. Per step it reports
// whether Zeek's http.log is exact (every request, status classes as
// h2load's, no agent drop), the bytes sent to Zeek per request and
// Zeek's CPU per request; then the highest exact rate of each.
// PANO_BENCH_HTTP_RATES (requests/s, comma-separated),
// PANO_BENCH_HTTP_STEP (a duration) and PANO_BENCH_HTTP_SEGMENTS (wire,
// gso or both, comma-separated) change the run. make bench-http runs it.
func BenchmarkHTTPBudget(b *testing.B) {
	testenv.RequireRoot(b)
	testenv.RequireProgram(b, "h2load", "nghttp2-client")
	testenv.RequireProgram(b, "nginx", "nginx")
	rates, err := intList(envOr("PANO_BENCH_HTTP_RATES", "1000,2000,3000,4000,6000,8000,10000,12000,16000"), 100)
	if err != nil {
		b.Fatalf("PANO_BENCH_HTTP_RATES: %v", err)
	}
	step, err := time.ParseDuration(envOr("PANO_BENCH_HTTP_STEP", "10s"))
	if err != nil || step < time.Second {
		b.Fatalf("PANO_BENCH_HTTP_STEP=%q: want a duration of at least 1s", os.Getenv("PANO_BENCH_HTTP_STEP"))
	}
	modes := strings.Split(envOr("PANO_BENCH_HTTP_SEGMENTS", "wire,gso"), ",")
	for _, m := range modes {
		if m != "wire" && m != "gso" {
			b.Fatalf("PANO_BENCH_HTTP_SEGMENTS=%q: want wire (one MSS per packet), gso (the veth's 64 KiB segments) or both", os.Getenv("PANO_BENCH_HTTP_SEGMENTS"))
		}
	}
	agentBin, _ := binaries(b)
	img := testenv.CachedZeekImage(b)
	var summary []string
	for _, mode := range modes {
		budget, full := rampHTTP(b, mode, rates, step, agentBin, img)
		summary = append(summary, fmt.Sprintf("%s segments: budget %d req/s, full capture %d req/s (%.1fx)",
			mode, budget, full, float64(budget)/max(float64(full), 1)))
		b.ReportMetric(float64(budget), mode+"-budget-exact-req/s")
		b.ReportMetric(float64(full), mode+"-full-exact-req/s")
	}
	b.Logf("highest exact rate:\n%s", strings.Join(summary, "\n"))
}

// rampHTTP runs the ramp of BenchmarkHTTPBudget in a namespace of its
// own whose veth sends segments as mode says, and returns the highest
// exact rate with the budget and with full capture.
func rampHTTP(b *testing.B, mode string, rates []int, step time.Duration, agentBin string, img *testenv.ZeekImage) (budget, full int) {
	ns := testenv.NewNetns(b)
	if mode == "wire" {
		ns.WireSegments(b)
	}
	web := testenv.StartNginx(b, ns, testenv.NginxOptions{Workers: 2})
	uris := append([]string{"http://" + testenv.NginxName + budgetPaths[0]}, budgetPaths[1:]...)
	const clients = 20
	best := map[string]int{}
	var rows []string
	for _, cfg := range []struct{ name, filter string }{{"budget", budgetFilter}, {"full", fullFilter}} {
		c := startWebCapture(b, cfg.name, agentBin, img, []string{ns.HostIf}, cfg.filter, "ZEEK_ONLY_FORWARDED_LOGS=1")
		for _, rate := range rates {
			m0, logged0, cpu0 := c.metrics(b), len(c.httpLog(b)), treeCPU(c.zeek.Pid())
			ctx, cancel := context.WithTimeout(context.Background(), step+2*time.Minute)
			rep := testenv.RunH2load(ctx, b, testenv.H2loadOptions{URIs: uris, ConnectTo: web.HTTP, Clients: clients,
				Requests: int(float64(rate) * step.Seconds()), RPS: float64(rate) / clients, H1: true})
			cancel()
			want := rep.Status2xx + rep.Status4xx + rep.Status5xx
			settle(b, c, logged0, want)
			m1, cpu1 := c.metrics(b), treeCPU(c.zeek.Pid())
			recs := c.httpLog(b)[logged0:]
			drops := m1["pano_agent_packets_dropped_total"] - m0["pano_agent_packets_dropped_total"]
			exact := len(recs) == want && drops == 0 &&
				maps.Equal(statusClasses(recs), map[string]int{"2": rep.Status2xx, "4": rep.Status4xx, "5": rep.Status5xx})
			perReq := func(name string) float64 { return (m1[name] - m0[name]) / float64(want) }
			bytesPerReq := perReq("pano_agent_pcap_over_tcp_bytes_sent_total")
			cpuPerReq := float64((cpu1 - cpu0).Microseconds()) / float64(want)
			row := fmt.Sprintf("%-4s %-6s %6d req/s asked, %6.0f done: %6d/%6d logged, %7.0f drops, %5.0f B/req and %4.1f packets/req to Zeek, %5.1f µs Zeek CPU/req, exact %v",
				mode, cfg.name, rate, rep.ReqPerSec, len(recs), want, drops,
				bytesPerReq, perReq("pano_agent_packets_captured_total"), cpuPerReq, exact)
			b.Log(row)
			rows = append(rows, row)
			if rate == rates[0] {
				// Per request, at the lowest rate (where both are exact).
				b.ReportMetric(bytesPerReq, mode+"-"+cfg.name+"-B/req")
				b.ReportMetric(cpuPerReq, mode+"-"+cfg.name+"-zeek-cpu-us/req")
			}
			if !exact {
				break // past this capture's ceiling
			}
			best[cfg.name] = rate
		}
		c.stop()
	}
	b.Logf("HTTP mix through agent and Zeek, %s segments, %d connections, %v per step:\n%s\nhighest exact rate: budget %d req/s, full capture %d req/s (%.1fx)",
		mode, clients, step, strings.Join(rows, "\n"), best["budget"], best["full"], float64(best["budget"])/max(float64(best["full"]), 1))
	return best["budget"], best["full"]
}

// settle waits until c's http.log holds want records past from, or stops
// growing for 5 s (a minute at most).
func settle(b *testing.B, c *webCapture, from, want int) {
	b.Helper()
	last, quiet := -1, time.Now()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		n := len(c.httpLog(b)) - from
		if n >= want {
			return
		}
		if n != last {
			last, quiet = n, time.Now()
		} else if time.Since(quiet) > 5*time.Second {
			return
		}
	}
}

// treeCPU is the CPU time of pid and its descendants (Zeek's entrypoint
// and Zeek), 0 when unreadable.
func treeCPU(pid int) time.Duration {
	var sum time.Duration
	for _, p := range processTree(pid) {
		if d, err := testenv.ProcessCPU(p); err == nil {
			sum += d
		}
	}
	return sum
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
