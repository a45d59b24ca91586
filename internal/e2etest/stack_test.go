package e2etest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pano-observability/pano/internal/testenv"
)

// build compiles one of the repository's commands into dir.
func build(t testing.TB, dir, pkg string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command(goBin, "build", "-o", out, "./"+pkg)
	cmd.Dir = testenv.RepoRoot(t)
	cmd.Env = append(os.Environ(), "GONOSUMDB=github.com/netobserv,github.com/vmware", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// proc is a program the test started; it is stopped (SIGTERM, then
// SIGKILL) at cleanup and its output is printed if the test failed.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func start(t testing.TB, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 8<<10 {
				b = b[len(b)-8<<10:]
			}
			t.Logf("--- %s log:\n%s", name, b)
		}
	})
	return p
}

func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// lastLog is the last line the program wrote.
func (p *proc) lastLog() string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// scrape reads one Prometheus text endpoint and sums each metric family
// over its series (enough for readiness checks and diagnostics).
func scrape(ctx context.Context, u string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", u, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		name := l[:i]
		if j := strings.IndexByte(name, '{'); j >= 0 {
			name = name[:j]
		}
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err == nil {
			out[name] += v
		}
	}
	return out, sc.Err()
}

// agent is the capture agent binary, capturing on ifaces.
type agent struct {
	*proc
	pcapAddrs   []string // stream i's PCAP-over-TCP address
	basePort    int      // stream 0's port; stream i's is basePort + i
	metricsAddr string
}

// startAgent runs the agent with streams PCAP-over-TCP streams; stream i
// listens on the base port + i, the scheme Zeek's workers are pointed at.
func startAgent(t testing.TB, bin string, ifaces []string, streams int, filter string) *agent {
	t.Helper()
	base := freePortRun(t, streams)
	a := &agent{basePort: base, metricsAddr: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))}
	for i := range streams {
		a.pcapAddrs = append(a.pcapAddrs, fmt.Sprintf("127.0.0.1:%d", base+i))
	}
	env := []string{
		"ENABLE_PCA=true", "PCA_FILTER=" + filter, "PCA_SERVER_ADDR=127.0.0.1", "PCA_SERVER_PORT=" + strconv.Itoa(base),
		"INTERFACES=" + strings.Join(ifaces, ","), "EXCLUDE_INTERFACES=lo", "METRICS_ADDR=" + a.metricsAddr, "LOG_LEVEL=info",
	}
	if streams > 1 {
		env = append(env, "PCA_STREAMS="+strconv.Itoa(streams))
	}
	a.proc = start(t, "pano-agent", env, bin)
	// Ready once the classifier is attached to every interface.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		m, err := scrape(ctx, "http://"+a.metricsAddr+"/metrics")
		cancel()
		if err == nil && m["pano_agent_interfaces_attached"] == float64(len(ifaces)) {
			return a
		}
		if a.exited() || time.Now().After(deadline) {
			t.Fatalf("agent not attached to %v: %v (metrics %v)", ifaces, err, m["pano_agent_interfaces_attached"])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freePortRun returns the first of n consecutive loopback TCP ports that
// are free now (n = 1 is testenv.FreePort).
func freePortRun(t testing.TB, n int) int {
	t.Helper()
	if n == 1 {
		return testenv.FreePort(t)
	}
	for range 50 {
		first, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		base := first.Addr().(*net.TCPAddr).Port
		held := []net.Listener{first}
		for i := 1; i < n && base+i <= 65535; i++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				break
			}
			held = append(held, l)
		}
		for _, l := range held {
			l.Close()
		}
		if len(held) == n {
			return base
		}
	}
	t.Fatalf("no %d consecutive free ports on 127.0.0.1", n)
	return 0
}

// zeekTestArgs are the redefs the tests give Zeek (ZEEK_ARGS), so that
// every query is logged soon after the load ends. Zeek writes an
// unanswered query to dns.log only when its connection's state is removed:
// for UDP after udp_inactivity_timeout (1 min by default) without a
// packet. A dnsperf socket is busy for the whole load, so 5 s (dnsperf's
// own timeout for an answer in these tests) changes nothing while it runs
// and ends each phase 5 s after its last packet instead of a minute. The
// alternative, stopping Zeek after each phase, would need a fresh Zeek
// (and a fresh PCAP-over-TCP connection) per phase, and would not show
// that a running Zeek flushes by itself.
const zeekTestArgs = "udp_inactivity_timeout=5sec"

// chain is the pipeline after the DNS servers: the agent capturing on
// their interfaces with its streams, Zeek with PANO's package reading
// them (one worker per stream), the shim, Kafka, flowlogs-pipeline and
// Prometheus.
type chain struct {
	ag    *agent
	zeek  *testenv.Zeek
	shim  *proc
	kafka *testenv.Kafka
	flp   *testenv.FLP
	prom  *testenv.Prometheus
	logs  []string // stream i's dns.log
}

// startChain starts the pipeline. Zeek runs as the zeek-package image's
// entrypoint runs it with ZEEK_WORKERS=streams: one worker writes
// dns.log, and the shim follows that path; with more, worker i reads the
// agent's stream i (the base port + i) and writes worker-i/dns.log, and
// one shim follows the glob.
//
// zeekEnv adds to Zeek's environment (the image's variables, e.g.
// ZEEK_ROTATION_INTERVAL).
func startChain(t testing.TB, ifaces []string, streams int, zeekEnv ...string) *chain {
	t.Helper()
	return startChainFor(t, ifaces, streams, "udp,53;tcp,53", []string{"dns"}, zeekEnv...)
}

// startChainFor is startChain with the agent's filter and the logs the
// shim follows (their names: "dns", "http", "ssl"); logs[0]'s paths are
// c.logs.
func startChainFor(t testing.TB, ifaces []string, streams int, filter string, logNames []string, zeekEnv ...string) *chain {
	t.Helper()
	root := testenv.RepoRoot(t)
	agentBin, shimBin := binaries(t)
	img := testenv.CachedZeekImage(t)

	k := testenv.StartKafka(t)
	c := &chain{kafka: k, flp: testenv.StartPANOFLP(t, k)}
	c.ag = startAgent(t, agentBin, ifaces, streams, filter)
	logDir := t.TempDir()
	var patterns []string
	for _, name := range logNames {
		if streams > 1 {
			patterns = append(patterns, filepath.Join(logDir, "worker-*", name+".log"))
		} else {
			patterns = append(patterns, filepath.Join(logDir, name+".log"))
		}
	}
	pattern := strings.Join(patterns, ",")
	for i := range streams {
		p := filepath.Join(logDir, logNames[0]+".log")
		if streams > 1 {
			p = filepath.Join(logDir, fmt.Sprintf("worker-%d", i), logNames[0]+".log")
		}
		c.logs = append(c.logs, p)
	}
	c.zeek = testenv.StartZeek(t, img, testenv.ZeekOptions{
		Port: c.ag.basePort, Workers: streams, LogDir: logDir, Env: append([]string{"ZEEK_ARGS=" + zeekTestArgs}, zeekEnv...),
	})
	c.waitZeekConnected(t, streams)
	shimMetrics := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	// The shim keeps the files Zeek rotates, for the checks on dns.log
	// (readDNSLog).
	c.shim = start(t, "pano-shim", nil, shimBin, "-shim-logs", pattern, "-kafka-brokers", k.Bootstrap,
		"-shim-state-dir", t.TempDir(), "-shim-metrics-addr", shimMetrics, "-shim-delete-rotated=false")

	rules, err := filepath.Glob(filepath.Join(root, "prometheus", "rules", "*.yml"))
	if err != nil || len(rules) == 0 {
		t.Fatalf("rule files: %v %v", rules, err)
	}
	c.prom = testenv.StartPrometheus(t, prometheusConfig(t, root, map[string]string{
		"flowlogs-pipeline": hostPort(t, c.flp.MetricsURL), "pano-agent": c.ag.metricsAddr, "pano-shim": shimMetrics,
	}), rules...)
	c.prom.WaitTargetsUp(t, 3)
	return c
}

// waitZeekConnected waits until each of Zeek's workers is connected to
// its stream, so that nothing the load sends is captured before Zeek
// reads it.
func (c *chain) waitZeekConnected(t testing.TB, streams int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		m, err := scrape(ctx, "http://"+c.ag.metricsAddr+"/metrics")
		cancel()
		if err == nil && m["pano_agent_pcap_over_tcp_clients_connected"] == float64(streams) {
			return
		}
		if exited, zerr := c.zeek.Exited(); exited {
			t.Fatalf("zeek exited before connecting to the agent: %v", zerr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("zeek's %d worker(s) not connected to the agent after a minute: %v (clients %v)",
				streams, err, m["pano_agent_pcap_over_tcp_clients_connected"])
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// zeekAlive fails the test if Zeek has stopped.
func (c *chain) zeekAlive(t testing.TB) {
	t.Helper()
	if exited, err := c.zeek.Exited(); exited {
		t.Fatalf("zeek exited during the load: %v", err)
	}
}

// prometheusConfig is PANO's prometheus.yml with its targets pointed at
// this test's processes, one per job.
func prometheusConfig(t testing.TB, root string, targets map[string]string) string {
	t.Helper()
	jobs := map[string][]clusterTarget{}
	for job, addr := range targets {
		jobs[job] = []clusterTarget{{addr: addr}}
	}
	return clusterPrometheusConfig(t, root, jobs)
}

func hostPort(t testing.TB, metricsURL string) string {
	t.Helper()
	u, err := url.Parse(metricsURL)
	if err != nil || u.Host == "" {
		t.Fatalf("metrics URL %q: %v", metricsURL, err)
	}
	return u.Host
}

// binDir holds the binaries built for this run of the package's tests.
var binDir string

func TestMain(m *testing.M) {
	var err error
	if binDir, err = os.MkdirTemp("", "pano-e2e-bin-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(binDir)
	os.Exit(code)
}

// binaries builds pano-agent and pano-shim.
func binaries(t testing.TB) (agentBin, shimBin string) {
	t.Helper()
	return build(t, binDir, "agent/cmd/pano-agent"), build(t, binDir, "shim/cmd/pano-shim")
}
