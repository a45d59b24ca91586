package stacktest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
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

// The bash health checks of the agent, the shim and flowlogs-pipeline
// really tell a serving /metrics from a failing or absent one.
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
		status := http.StatusOK
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/metrics" {
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
