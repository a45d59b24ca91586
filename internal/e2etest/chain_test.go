package e2etest

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pano-observability/pano/internal/testenv"
)

// defaultDuration is each load phase's length unless PANO_E2E_DURATION says
// otherwise. The acceptance criterion is 60 s; 20 s keeps the package
// (four phases) under four minutes in CI and still sends 100,000 queries per phase.
const defaultDuration = 20 * time.Second

// Load: two dnsperf instances at different rates, 5,000 queries/s in all.
const (
	qpsA = 3000
	qpsB = 2000
)

// wireTolerance bounds the difference between the histogram's average
// and the average response time tcpdump's capture of the same interface
// gives (tshark's dns.time): the agent and tcpdump stamp each packet at
// slightly different points of the kernel's path.
const wireTolerance = 0.05

// dnsperfTolerance is the criterion for the histogram's average against
// dnsperf's average latency. dnsperf measures in user space, so its
// latency adds its own send and wake-up time (about 35 us on an idle
// machine, hundreds of us on a busy one) to the wire's response time. For
// unbound answering local data across a veth that response time is itself
// 30-500 us, so there the comparison is only reported and the check
// against tcpdump is the assertion; for servers with a resolver's response
// time (the resolvers phase, milliseconds) it is asserted.
const dnsperfTolerance = 0.2

// firstPointLimit is the functional requirement: a data point queryable
// this soon after the first query.
const firstPointLimit = 10 * time.Second

func loadDuration(t *testing.T) time.Duration {
	t.Helper()
	v := os.Getenv("PANO_E2E_DURATION")
	if v == "" {
		return defaultDuration
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Second {
		t.Fatalf("PANO_E2E_DURATION=%q: want a duration of at least 1s", v)
	}
	return d
}

// server is one DNS server in its own namespace with its dnsperf load.
type server struct {
	ns      *testenv.Netns
	u       *testenv.Unbound
	queries string
	qps     int
	clients int // dnsperf's -c (its sockets, so its flows); 0 = dnsperf's default, 1
}

func (s *server) addr() string { return s.u.Addr.Addr().String() }

// newServer starts unbound in a fresh namespace. Servers differ in their
// zone's size and their query mix, so their return-code mixes differ.
func newServer(t testing.TB, names int, mix testenv.QueryMix, qps int) *server {
	t.Helper()
	ns := testenv.NewNetns(t)
	u := testenv.StartUnbound(t, ns, testenv.UnboundOptions{Names: names})
	return &server{ns: ns, u: u, queries: u.WriteQueryFile(t, mix), qps: qps}
}

func serverPair(t *testing.T) []*server {
	return []*server{
		newServer(t, 50, testenv.QueryMix{Queries: 5000, NXShare: 0.2, AAAAShare: 0.3, Seed: 1}, qpsA),
		newServer(t, 200, testenv.QueryMix{Queries: 5000, NXShare: 0.35, ServfailShare: 0.05, AAAAShare: 0.5, Seed: 2}, qpsB),
	}
}

// TestWholeChain runs DNS load through the whole pipeline and checks that
// Prometheus says what dnsperf says: first with a clean network, then with
// 1% of each server namespace's DNS packets dropped.
//
//	dnsperf x2 -> unbound x2 (namespaces) ; agent (eBPF on the host-side veths)
//	-> PCAP-over-TCP -> Zeek with zeek-package -> dns.log -> pano-shim
//	-> Kafka -> flowlogs-pipeline (fl-pipeline-config) -> Prometheus (prometheus/)
func TestWholeChain(t *testing.T) {
	testenv.RequireRoot(t)
	for prog, pkg := range map[string]string{"tshark": "tshark", "dnsperf": "dnsperf", "unbound": "unbound", "nft": "nftables"} {
		testenv.RequireProgram(t, prog, pkg)
	}
	dur := loadDuration(t)

	// Servers first: unbound's readiness probes go out before the agent
	// captures, so that everything captured is dnsperf's.
	steady, lossy := serverPair(t), serverPair(t)
	resolvers := []*server{newResolver(t, 0.2, qpsA, 3), newResolver(t, 0.4, qpsB, 4)}
	var ifaces []string
	for _, s := range append(append(append([]*server{}, steady...), lossy...), resolvers...) {
		ifaces = append(ifaces, s.ns.HostIf)
	}
	c := startChain(t, ifaces, 1)

	t.Run("steady", func(t *testing.T) {
		runPhase(t, c, steady, dur, false)
	})
	// Servers with a resolver's response time (milliseconds): there the
	// histogram's average must be within 20% of dnsperf's (the issue's
	// criterion), which the fast servers above cannot show (see
	// dnsperfTolerance).
	t.Run("resolvers", func(t *testing.T) {
		runPhase(t, c, resolvers, dur, true)
	})
	t.Run("one-percent-loss", func(t *testing.T) {
		for _, s := range lossy {
			dropOnePercent(t, s.ns)
		}
		rep := runPhase(t, c, lossy, dur, false)
		lost := 0
		for _, r := range rep {
			lost += r.Lost
		}
		if lost == 0 {
			t.Fatalf("dnsperf lost nothing: the packet drop did not work")
		}
	})
}

// dropOnePercent drops 1% of the DNS packets entering and leaving the
// namespace (nftables: this kernel has no netem). A dropped query never
// reaches unbound, a dropped response never leaves: either way dnsperf
// counts the query lost, and the capture on the host side sees a query
// without a response.
func dropOnePercent(t *testing.T, ns *testenv.Netns) {
	t.Helper()
	rules := `table inet pano_e2e_loss {
  chain in { type filter hook input priority 0; policy accept; udp dport 53 numgen random mod 100 < 1 counter drop; }
  chain out { type filter hook output priority 0; policy accept; udp sport 53 numgen random mod 100 < 1 counter drop; }
}
`
	f := filepath.Join(t.TempDir(), "loss.nft")
	if err := os.WriteFile(f, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	ns.Exec(t, "nft", "-f", f)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nftables in %s:\n%s", ns.Name, ns.Exec(t, "nft", "list", "ruleset"))
		}
	})
}

// runPhase runs both dnsperf instances at once and compares their reports
// with Prometheus and with Zeek's dns.log.
func runPhase(t *testing.T, c *chain, servers []*server, dur time.Duration, assertDNSPerfLatency bool) []testenv.DNSPerfReport {
	t.Helper()
	prom, ag := c.prom, c.ag
	names := make([]string, len(servers))
	for i, s := range servers {
		names[i] = s.addr()
	}
	sel := fmt.Sprintf(`server=~"%s"`, strings.ReplaceAll(strings.Join(names, "|"), ".", `\\.`))

	ctx, cancel := context.WithTimeout(context.Background(), dur+2*time.Minute)
	defer cancel()

	// tcpdump on the same interfaces: the wire's own response times, the
	// reference for the histogram (see wireRTT).
	dumps := make([]*testenv.Tcpdump, len(servers))
	for i, s := range servers {
		dumps[i] = testenv.StartTcpdump(t, nil, s.ns.HostIf, "udp port 53")
	}

	// Watch for the first data point while the load runs: the time it
	// became queryable, compared below with the first query on the wire.
	first := make(chan time.Time, 1)
	go func() {
		t0 := time.Now()
		for time.Since(t0) < dur+time.Minute && ctx.Err() == nil {
			if v, err := prom.QueryScalar(ctx, `sum(pano_dns_queries_total{`+sel+`})`); err == nil && v > 0 {
				first <- time.Now()
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		first <- time.Time{}
	}()

	reports := make([]testenv.DNSPerfReport, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reports[i] = testenv.RunDNSPerf(ctx, t, testenv.DNSPerfOptions{
				Server: s.u.Addr, QueryFile: s.queries, Duration: dur, QPS: s.qps, Timeout: 5 * time.Second, Clients: s.clients,
				// Each lost query holds one of these for the timeout: 1,000
				// keeps the rate steady at 1-2% loss (dnsperf's default, 100, does not).
				Outstanding: 1000,
				// 4 MiB socket buffers: on a busy machine dnsperf is
				// descheduled long enough for responses to overflow the
				// default buffer; it then counts as lost queries whose
				// answers were on the wire (and in the capture).
				ExtraArgs: []string{"-b", "4096"},
			})
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	loadDone := time.Now()
	if ag.exited() {
		t.Fatalf("the agent exited during the load: %s", ag.lastLog())
	}
	c.zeekAlive(t)
	wire := make([]wireStats, len(servers))
	for i, d := range dumps {
		p, st := d.Stop(t)
		if st.DroppedByKernel != 0 {
			t.Fatalf("tcpdump on %s dropped %d packets: no reference", servers[i].ns.HostIf, st.DroppedByKernel)
		}
		wire[i] = wireRTT(t, p)
	}

	want := map[string]int{} // expected records per server (every query sent)
	for i, r := range reports {
		if r.Interrupted != 0 {
			t.Fatalf("dnsperf against %s: %d queries interrupted, unknown outcome", names[i], r.Interrupted)
		}
		want[names[i]] = r.Completed + r.Lost
	}

	// Everything sent must arrive: answered records at once, unanswered
	// ones when Zeek expires their connection (5 s after its last packet,
	// see zeekTestArgs); then the shim, Kafka, flowlogs-pipeline and a 5 s
	// scrape.
	var got map[string]float64
	deadline := time.Now().Add(90 * time.Second)
	for {
		got = vectorBy(t, prom, `sum by (server) (pano_dns_queries_total{`+sel+`})`, "server")
		done := true
		for s, n := range want {
			if got[s] != float64(n) {
				done = false
			}
		}
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	settle := time.Since(loadDone)
	// One more scrape: nothing must come after the totals are reached.
	time.Sleep(6 * time.Second)

	firstAt := <-first
	var firstQuery time.Time
	for _, w := range wire {
		if firstQuery.IsZero() || w.first.Before(firstQuery) {
			firstQuery = w.first
		}
	}
	firstAfter := firstAt.Sub(firstQuery)
	check := newChecker(t)
	logs := countDNSLogs(t, c.logs, names)
	totalCompleted, totalLost, latencySum := 0, 0, 0.0
	wantRcodes := map[string]int{}
	for i, r := range reports {
		s := names[i]
		totalCompleted += r.Completed
		totalLost += r.Lost
		latencySum += r.AvgLatency.Seconds() * float64(r.Completed)
		byRcode := vectorBy(t, prom, fmt.Sprintf(`sum by (rcode) (pano_dns_queries_total{server="%s"})`, s), "rcode")
		for rc, n := range r.RCodes {
			wantRcodes[rc] += n
			check.exact(fmt.Sprintf("%s rcode %s", s, rc), byRcode[rc], n)
		}
		for rc := range byRcode {
			if _, ok := r.RCodes[rc]; !ok && rc != "unanswered" {
				t.Errorf("%s: Prometheus has rcode %s (%v), dnsperf saw none", s, rc, byRcode[rc])
			}
		}
		check.exact(s+" answered", sumOf(byRcode)-byRcode["unanswered"], r.Completed)
		check.exact(s+" unanswered (rcode label)", byRcode["unanswered"], r.Lost)
		check.exact(s+" unanswered (unanswered_queries_total)", scalar(t, prom, ctx, fmt.Sprintf(`sum(pano_dns_unanswered_queries_total{server="%s"}) or vector(0)`, s)), r.Lost)
		check.exact(s+" total", got[s], r.Completed+r.Lost)
		// Zeek's own log, before the shim: one record per query, an rcode
		// on each answered one and an rtt on every record with an rcode
		// (NXDOMAIN, NODATA and SERVFAIL included; zeek-package's dns-rtt).
		lc := logs[s]
		check.exact(s+" dns.log records", float64(lc.records), r.Completed+r.Lost)
		check.exact(s+" dns.log records with rcode", float64(lc.answered), r.Completed)
		check.exact(s+" dns.log records without rcode", float64(lc.unanswered), r.Lost)
		check.exact(s+" dns.log records with rcode, without rtt", float64(lc.noRTT), 0)
		if lc.noRTT > 0 {
			t.Logf("%s: dns.log records with an rcode and no rtt:\n%s", s, strings.Join(lc.examples, "\n"))
		}

		n := scalar(t, prom, ctx, fmt.Sprintf(`sum(pano_dns_response_time_seconds_count{server="%s"})`, s))
		sum := scalar(t, prom, ctx, fmt.Sprintf(`sum(pano_dns_response_time_seconds_sum{server="%s"})`, s))
		check.exact(s+" response times observed", n, r.Completed)
		check.exact(s+" queries on the wire (tcpdump)", float64(wire[i].queries), r.Completed+r.Lost)
		check.within(s+" average response time vs tcpdump+tshark (s)", sum/n, wire[i].avg, wireTolerance)
		if assertDNSPerfLatency {
			check.within(s+" average response time vs dnsperf (s)", sum/n, r.AvgLatency.Seconds(), dnsperfTolerance)
		} else {
			check.measure(s+" average response time vs dnsperf (s)", sum/n, r.AvgLatency.Seconds(), dnsperfTolerance)
		}
	}
	byRcode := vectorBy(t, prom, `sum by (rcode) (pano_dns_queries_total{`+sel+`})`, "rcode")
	for rc, n := range wantRcodes {
		check.exact("all servers rcode "+rc, byRcode[rc], n)
	}
	check.exact("all servers answered", sumOf(byRcode)-byRcode["unanswered"], totalCompleted)
	check.exact("all servers unanswered", byRcode["unanswered"], totalLost)
	n := scalar(t, prom, ctx, `sum(pano_dns_response_time_seconds_count{`+sel+`})`)
	sum := scalar(t, prom, ctx, `sum(pano_dns_response_time_seconds_sum{`+sel+`})`)
	if assertDNSPerfLatency {
		check.within("all servers average response time vs dnsperf (s)", sum/n, latencySum/float64(totalCompleted), dnsperfTolerance)
	} else {
		check.measure("all servers average response time vs dnsperf (s)", sum/n, latencySum/float64(totalCompleted), dnsperfTolerance)
	}

	if firstAt.IsZero() || firstQuery.IsZero() {
		t.Errorf("no data point in Prometheus during the run (first query on the wire at %v)", firstQuery)
	} else if firstAfter > firstPointLimit {
		t.Errorf("first data point queryable %v after the first query, want within %v", firstAfter, firstPointLimit)
	}
	agentDrops := scalar(t, prom, ctx, `sum(pano_agent_packets_dropped_total) or vector(0)`)
	t.Logf("load %v at %d+%d queries/s; first data point after %v; totals reached %v after the load; agent drops %v",
		dur, servers[0].qps, servers[1].qps, firstAfter.Round(time.Millisecond), settle.Round(time.Millisecond), agentDrops)
	check.report()
	return reports
}

// wireStats are what tcpdump saw on one server's interface.
type wireStats struct {
	queries int       // DNS queries captured
	avg     float64   // mean response time of the answered ones, seconds
	first   time.Time // the first packet
}

// wireRTT reads a tcpdump capture with tshark: queries, and the mean of
// tshark's own request/response matching (dns.time).
func wireRTT(t *testing.T, pcap string) wireStats {
	t.Helper()
	out := testenv.Tshark(t, "-n", "-r", pcap, "-T", "fields", "-e", "frame.time_epoch", "-e", "dns.flags.response", "-e", "dns.time")
	var w wireStats
	n := 0
	// Trim only newlines: a query as the last line ends in an empty
	// dns.time field, whose tab TrimSpace would eat.
	for _, l := range strings.Split(strings.TrimRight(out, "\r\n"), "\n") {
		f := strings.Split(l, "\t")
		if len(f) != 3 {
			t.Fatalf("tshark line %q", l)
		}
		if w.first.IsZero() {
			sec, err := strconv.ParseFloat(f[0], 64)
			if err != nil {
				t.Fatalf("tshark frame time %q: %v", f[0], err)
			}
			w.first = time.Unix(0, int64(sec*1e9))
		}
		resp, tm := f[1], f[2]
		switch {
		case resp == "0":
			w.queries++
		case tm != "":
			v, err := strconv.ParseFloat(tm, 64)
			if err != nil {
				t.Fatalf("tshark dns.time %q: %v", tm, err)
			}
			w.avg += v
			n++
		}
	}
	if n > 0 {
		w.avg /= float64(n)
	}
	return w
}

// checker collects comparisons so that one run shows every mismatch, and
// prints them as a table.
type checker struct {
	t    *testing.T
	rows []string
}

func newChecker(t *testing.T) *checker { return &checker{t: t} }

func (c *checker) exact(what string, got float64, want int) {
	c.t.Helper()
	ok := got == float64(want)
	c.rows = append(c.rows, fmt.Sprintf("%-5v %-55s prometheus %-14v dnsperf %v", okStr(ok), what, got, want))
	if !ok {
		c.t.Errorf("%s: Prometheus %v, dnsperf %d", what, got, want)
	}
}

// atLeast: nothing lost; more is allowed (a reader that reads again).
func (c *checker) atLeast(what string, got float64, want int) {
	c.t.Helper()
	ok := got >= float64(want)
	c.rows = append(c.rows, fmt.Sprintf("%-5v %-55s prometheus %-14v dnsperf %v (at least)", okStr(ok), what, got, want))
	if !ok {
		c.t.Errorf("%s: Prometheus %v, dnsperf %d: lost", what, got, want)
	}
}

func (c *checker) within(what string, got, want, rel float64) {
	c.t.Helper()
	ok := want > 0 && math.Abs(got-want) <= rel*want
	c.rows = append(c.rows, fmt.Sprintf("%-5v %-55s prometheus %-14.6g dnsperf %.6g (ratio %.3f)", okStr(ok), what, got, want, got/want))
	if !ok {
		c.t.Errorf("%s: Prometheus %.6g, dnsperf %.6g: more than %.0f%% apart", what, got, want, rel*100)
	}
}

// measure records a comparison with dnsperf's latency, which is not an
// assertion: see dnsperfTolerance.
func (c *checker) measure(what string, got, want, rel float64) {
	ok := want > 0 && math.Abs(got-want) <= rel*want
	mark := "ok"
	if !ok {
		mark = "info"
	}
	c.rows = append(c.rows, fmt.Sprintf("%-5v %-55s prometheus %-14.6g dnsperf %.6g (ratio %.3f)", mark, what, got, want, got/want))
}

func (c *checker) report() { c.t.Logf("comparison:\n%s", strings.Join(c.rows, "\n")) }

func okStr(ok bool) string {
	if ok {
		return "ok"
	}
	return "FAIL"
}

func sumOf(m map[string]float64) float64 {
	s := 0.0
	for _, v := range m {
		s += v
	}
	return s
}

func scalar(t *testing.T, prom *testenv.Prometheus, ctx context.Context, expr string) float64 {
	t.Helper()
	v, err := prom.QueryScalar(ctx, expr)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return v
}

// vectorBy runs expr and returns its samples keyed by label.
func vectorBy(t *testing.T, prom *testenv.Prometheus, expr, label string) map[string]float64 {
	t.Helper()
	return vectorByLabels(t, prom, expr, label)
}
