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
// quarter of the responses 20 KiB) against nginx while two agents capture
// the same interface, one with budgetFilter and one with fullFilter, each
// feeding its own Zeek. Per step it reports, for each capture, whether
// Zeek's http.log is exact (every request, status classes as h2load's,
// no agent drop), the bytes sent to Zeek per request and Zeek's CPU per
// request; then the highest exact rate of each. PANO_BENCH_HTTP_RATES
// (requests/s, comma-separated) and PANO_BENCH_HTTP_STEP (a duration)
// change the ramp. make bench-http runs it.
func BenchmarkHTTPBudget(b *testing.B) {
	testenv.RequireRoot(b)
	testenv.RequireProgram(b, "h2load", "nghttp2-client")
	testenv.RequireProgram(b, "nginx", "nginx")
	rates, err := intList(envOr("PANO_BENCH_HTTP_RATES", "2000,4000,8000,16000,32000"), 100)
	if err != nil {
		b.Fatalf("PANO_BENCH_HTTP_RATES: %v", err)
	}
	step, err := time.ParseDuration(envOr("PANO_BENCH_HTTP_STEP", "10s"))
	if err != nil || step < time.Second {
		b.Fatalf("PANO_BENCH_HTTP_STEP=%q: want a duration of at least 1s", os.Getenv("PANO_BENCH_HTTP_STEP"))
	}
	ns := testenv.NewNetns(b)
	web := testenv.StartNginx(b, ns, testenv.NginxOptions{Workers: 2})
	agentBin, _ := binaries(b)
	img := testenv.CachedZeekImage(b)
	caps := []*webCapture{
		startWebCapture(b, "budget", agentBin, img, []string{ns.HostIf}, budgetFilter),
		startWebCapture(b, "full", agentBin, img, []string{ns.HostIf}, fullFilter),
	}
	uris := append([]string{"http://" + testenv.NginxName + budgetPaths[0]}, budgetPaths[1:]...)
	const clients = 20
	best := map[string]int{}
	var rows []string
	for _, rate := range rates {
		type mark struct {
			logged       int
			drops, bytes float64
			cpu          time.Duration
		}
		marks := func() []mark {
			out := make([]mark, len(caps))
			for i, c := range caps {
				m := c.metrics(b)
				out[i] = mark{len(c.httpLog(b)), m["pano_agent_packets_dropped_total"], m["pano_agent_pcap_over_tcp_bytes_sent_total"], treeCPU(c.zeek.Pid())}
			}
			return out
		}
		before := marks()
		ctx, cancel := context.WithTimeout(context.Background(), step+2*time.Minute)
		rep := testenv.RunH2load(ctx, b, testenv.H2loadOptions{URIs: uris, ConnectTo: web.HTTP, Clients: clients,
			Requests: int(float64(rate) * step.Seconds()), RPS: float64(rate) / clients, H1: true})
		cancel()
		want := rep.Status2xx + rep.Status4xx + rep.Status5xx
		for i, c := range caps {
			settle(b, c, before[i].logged, want)
		}
		after := marks()
		row := fmt.Sprintf("%6d req/s asked, %6.0f done", rate, rep.ReqPerSec)
		for i, c := range caps {
			recs := c.httpLog(b)[before[i].logged:]
			classes := statusClasses(recs)
			wantClasses := map[string]int{"2": rep.Status2xx, "4": rep.Status4xx, "5": rep.Status5xx}
			drops := after[i].drops - before[i].drops
			exact := len(recs) == want && maps.Equal(classes, wantClasses) && drops == 0
			if exact {
				best[c.name] = rate
			}
			row += fmt.Sprintf(" | %s: %d/%d logged, %v drops, %4.0f B/req to Zeek, %5.1f µs Zeek CPU/req, exact %v",
				c.name, len(recs), want, drops, (after[i].bytes-before[i].bytes)/float64(want),
				float64((after[i].cpu-before[i].cpu).Microseconds())/float64(want), exact)
		}
		b.Log(row)
		rows = append(rows, row)
	}
	b.Logf("HTTP mix through agent and Zeek, %d connections, %v per step:\n%s\nhighest exact rate: budget %d req/s, full capture %d req/s (%.1fx)",
		clients, step, strings.Join(rows, "\n"), best["budget"], best["full"], float64(best["budget"])/max(float64(best["full"]), 1))
	b.ReportMetric(float64(best["budget"]), "budget-exact-req/s")
	b.ReportMetric(float64(best["full"]), "full-exact-req/s")
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
