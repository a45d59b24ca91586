package stacktest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/pano-observability/pano/internal/testenv"
)

// runHealthCheck runs a service's health check command (as compose hands
// it to the container, variables interpolated) with its port replaced by
// port, and reports whether it passed.
func runHealthCheck(t *testing.T, s types.ServiceConfig, from, to string) bool {
	t.Helper()
	test := s.HealthCheck.Test
	if len(test) < 2 || test[0] != "CMD" || test[1] != "bash" {
		t.Fatalf("%s: health check %q is not a bash command", s.Name, test)
	}
	args := make([]string, len(test)-2)
	for i, a := range test[2:] {
		args[i] = strings.ReplaceAll(a, from, to)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "bash", args...).CombinedOutput()
	t.Logf("%s health check on %s: err=%v %s", s.Name, to, err, out)
	return err == nil
}

var hcPathRE = regexp.MustCompile(`GET (/\S*) HTTP`)

// The bash health checks of the agent, the shim and flowlogs-pipeline
// really tell a serving endpoint (/metrics, the shim's /healthz) from a
// failing or absent one.
func TestHealthChecksHTTP(t *testing.T) {
	testenv.RequireProgram(t, "bash", "bash")
	p := mustLoad(t, testenv.RepoRoot(t))
	for _, name := range []string{"agent", "shim", "flowlogs-pipeline"} {
		s := p.Services[name]
		ports, _ := hcPorts(s)
		if len(ports) != 1 {
			t.Fatalf("%s: health check ports %v", name, ports)
		}
		from := "127.0.0.1/" + strconv.Itoa(ports[0])
		m := hcPathRE.FindStringSubmatch(strings.Join(s.HealthCheck.Test, " "))
		if m == nil {
			t.Fatalf("%s: health check asks for no path: %q", name, s.HealthCheck.Test)
		}
		status := http.StatusOK
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != m[1] {
				http.NotFound(w, r)
				return
			}
			w.WriteHeader(status)
			fmt.Fprintln(w, "up 1")
		}))
		to := strings.TrimPrefix(srv.URL, "http://")
		to = strings.Replace(to, ":", "/", 1)
		if !runHealthCheck(t, s, from, to) {
			t.Errorf("%s: health check fails against a serving /metrics", name)
		}
		status = http.StatusInternalServerError
		if runHealthCheck(t, s, from, to) {
			t.Errorf("%s: health check passes against a /metrics answering 500", name)
		}
		srv.Close()
		if runHealthCheck(t, s, from, to) {
			t.Errorf("%s: health check passes with nothing listening", name)
		}
	}
}

// TestShimHealthCheckMeansProgress runs the shim's compose health check
// against the real shim: healthy at start, unhealthy once it has waited
// for an unreachable Kafka longer than SHIM_HEALTH_TIMEOUT.
func TestShimHealthCheckMeansProgress(t *testing.T) {
	testenv.RequireProgram(t, "bash", "bash")
	s := mustLoad(t, testenv.RepoRoot(t)).Services["shim"]
	ports, _ := hcPorts(s)
	if len(ports) != 1 {
		t.Fatalf("shim: health check ports %v", ports)
	}
	// A loopback port nothing listens on stands for a Kafka that is down.
	down := testenv.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	dir := t.TempDir()
	cmd := exec.Command(buildCmd(t, "shim/cmd/pano-shim"))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "SHIM_LOGS=" + filepath.Join(dir, "dns.log"), "SHIM_STATE_DIR=" + filepath.Join(dir, "state"),
		"KAFKA_BROKERS=127.0.0.1:" + strconv.Itoa(down), "SHIM_METRICS_ADDR=" + addr, "SHIM_HEALTH_TIMEOUT=2s"}
	var out testenv.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("shim output:\n%s", out.String())
		}
	}()
	from, to := "127.0.0.1/"+strconv.Itoa(ports[0]), strings.Replace(addr, ":", "/", 1)
	deadline := time.Now().Add(time.Minute)
	for !runHealthCheck(t, s, from, to) {
		if time.Now().After(deadline) {
			t.Fatal("the shim's health check never passed after its start")
		}
		time.Sleep(100 * time.Millisecond)
	}
	started := time.Now()
	for runHealthCheck(t, s, from, to) {
		if time.Since(started) > time.Minute {
			t.Fatal("the shim's health check still passes a minute after Kafka was found down (timeout 2s)")
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// Kafka's check passes when the port listens, fails when nothing does.
func TestHealthCheckKafka(t *testing.T) {
	testenv.RequireProgram(t, "bash", "bash")
	s := mustLoad(t, testenv.RepoRoot(t)).Services["kafka"]
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	to := "127.0.0.1/" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	if !runHealthCheck(t, s, "127.0.0.1/9092", to) {
		t.Error("kafka: health check fails on a listening port")
	}
	l.Close()
	if runHealthCheck(t, s, "127.0.0.1/9092", to) {
		t.Error("kafka: health check passes with nothing listening")
	}
}

// Zeek's check passes while a connection to the agent's port is
// established, and fails before and after.
func TestHealthCheckZeek(t *testing.T) {
	testenv.RequireProgram(t, "bash", "bash")
	s := mustLoad(t, testenv.RepoRoot(t)).Services["zeek"]
	_, hex := hcPorts(s)
	if len(hex) != 1 {
		t.Fatalf("zeek: health check hex ports %v", hex)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	to := fmt.Sprintf("%04X", port)
	if runHealthCheck(t, s, hex[0], to) {
		t.Error("zeek: health check passes with no connection")
	}
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if !runHealthCheck(t, s, hex[0], to) {
		t.Error("zeek: health check fails while connected to the agent's port")
	}
	c.Close()
	srv.Close()
}
