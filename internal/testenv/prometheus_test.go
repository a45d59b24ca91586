package testenv

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// promTestTarget serves a registry on 127.0.0.1 and returns host:port.
func promTestTarget(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// promTestEventually polls QueryScalar until it returns a value; the first
// scrape or rule evaluation may not have happened yet.
func promTestEventually(t *testing.T, p *Prometheus, expr string) float64 {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		v, err := p.QueryScalar(ctx, expr)
		cancel()
		if err == nil {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", expr, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func TestPrometheusScrapesAndQueries(t *testing.T) {
	reg := prometheus.NewRegistry()
	probes := prometheus.NewCounter(prometheus.CounterOpts{Name: "pano_testenv_probes_total", Help: "Probes sent by the test."})
	temp := prometheus.NewGauge(prometheus.GaugeOpts{Name: "pano_testenv_temperature_celsius", Help: "A gauge with a fractional value."})
	reg.MustRegister(probes, temp)
	probes.Add(1234)
	temp.Set(-17.625)
	target := promTestTarget(t, reg)

	rules := filepath.Join(t.TempDir(), "probe.rules.yml")
	err := os.WriteFile(rules, []byte(`groups:
- name: probe
  interval: 1s
  rules:
  - record: pano_testenv:probes:doubled
    expr: pano_testenv_probes_total * 2
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p := StartPrometheus(t, `global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
- job_name: probe
  static_configs:
  - targets: ["`+target+`"]
`, rules)
	p.WaitTargetsUp(t, 1)

	if v := promTestEventually(t, p, `pano_testenv_probes_total{job="probe"}`); v != 1234 {
		t.Errorf("probes: got %v, want 1234", v)
	}
	if v := promTestEventually(t, p, `pano_testenv_temperature_celsius`); v != -17.625 {
		t.Errorf("temperature: got %v, want -17.625", v)
	}
	// The rule file was loaded and evaluated.
	if v := promTestEventually(t, p, `pano_testenv:probes:doubled`); v != 2468 {
		t.Errorf("recording rule: got %v, want 2468", v)
	}
	// A query that matches nothing is an error for QueryScalar, not a zero.
	if v, err := p.QueryScalar(context.Background(), `pano_testenv_absent_total`); err == nil {
		t.Errorf("absent series: got %v and no error", v)
	}
	if v := promTestEventually(t, p, `scalar(vector(2.5))`); v != 2.5 {
		t.Errorf("scalar: got %v, want 2.5", v)
	}
}

func TestPromtoolChecksRules(t *testing.T) {
	promtool := RequireProgram(t, "promtool", "prometheus")
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yml")
	bad := filepath.Join(dir, "bad.yml")
	if err := os.WriteFile(good, []byte("groups:\n- name: g\n  rules:\n  - record: a:b:sum\n    expr: sum(up)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("groups:\n- name: g\n  rules:\n  - record: a:b:sum\n    expr: sum(up\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", good).CombinedOutput(); err != nil {
		t.Errorf("promtool rejects a valid rule file: %v\n%s", err, out)
	}
	out, err := exec.Command(promtool, "check", "rules", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "parse error") {
		t.Errorf("promtool accepted an invalid rule file (%v):\n%s", err, out)
	}
}
