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

	"gopkg.in/yaml.v3"

	"github.com/pano-observability/pano/internal/testenv"
	"github.com/pano-observability/pano/internal/zeekstandin"
)

// build compiles one of the repository's commands into dir.
func build(t *testing.T, dir, pkg string) string {
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

func start(t *testing.T, name string, env []string, bin string, args ...string) *proc {
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
	pcapAddr, metricsAddr string
}

func startAgent(t *testing.T, bin string, ifaces []string) *agent {
	t.Helper()
	a := &agent{
		pcapAddr:    fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		metricsAddr: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
	}
	_, port, _ := net.SplitHostPort(a.pcapAddr)
	a.proc = start(t, "pano-agent", []string{
		"ENABLE_PCA=true", "PCA_FILTER=udp,53;tcp,53", "PCA_SERVER_ADDR=127.0.0.1", "PCA_SERVER_PORT=" + port,
		"INTERFACES=" + strings.Join(ifaces, ","), "EXCLUDE_INTERFACES=lo", "METRICS_ADDR=" + a.metricsAddr, "LOG_LEVEL=info",
	}, bin)
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

// standIn runs the Zeek stand-in on the agent's PCAP-over-TCP stream,
// appending to logPath, until the test ends.
type standIn struct {
	conn  net.Conn
	done  chan struct{}
	stats zeekstandin.Stats
	err   error
}

func startStandIn(t *testing.T, addr, logPath string) *standIn {
	t.Helper()
	testenv.RequireProgram(t, "tshark", "tshark")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("connect to the agent's stream: %v", err)
	}
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	s := &standIn{conn: conn, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(s.done)
		defer f.Close()
		// As the zeek-package runs Zeek: an rtt for every response; -C,
		// since locally sent packets are captured before their checksum
		// is filled in.
		s.stats, s.err = zeekstandin.Convert(ctx, conn, f, zeekstandin.Options{
			RTT: zeekstandin.RTTEveryResponse, IgnoreChecksums: true, Live: true, Timeout: 5 * time.Second,
		})
	}()
	t.Cleanup(func() {
		conn.Close()
		select {
		case <-s.done:
		case <-time.After(20 * time.Second):
			cancel()
			<-s.done
		}
		cancel()
		t.Logf("stand-in: %+v, err %v", s.stats, s.err)
	})
	return s
}

// prometheusConfig is PANO's prometheus.yml with its targets pointed at
// this test's processes.
func prometheusConfig(t *testing.T, root string, targets map[string]string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "prometheus", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var keep []any
	for _, sc := range doc["scrape_configs"].([]any) {
		sc := sc.(map[string]any)
		target, ok := targets[sc["job_name"].(string)]
		if !ok {
			t.Fatalf("prometheus.yml job %v: no target in this test", sc["job_name"])
		}
		sc["static_configs"] = []any{map[string]any{"targets": []any{target}}}
		keep = append(keep, sc)
	}
	doc["scrape_configs"] = keep
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func hostPort(t *testing.T, metricsURL string) string {
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
func binaries(t *testing.T) (agentBin, shimBin string) {
	t.Helper()
	return build(t, binDir, "agent/cmd/pano-agent"), build(t, binDir, "shim/cmd/pano-shim")
}
