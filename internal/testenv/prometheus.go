package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"
)

// Prometheus is a running Prometheus server (the Debian package's binary)
// on loopback, with its database in the test's temporary directory.
type Prometheus struct {
	URL string // "http://127.0.0.1:port"
	Pid int    // the process's, for benchmarks' CPU accounting (ProcessCPU)

	api promv1.API
}

const promReadyTimeout = time.Minute

// StartPrometheus runs prometheus on configYAML and returns when it is
// ready. Each of ruleFiles is copied next to the configuration and the
// configuration's rule_files is replaced by the copies (when ruleFiles is
// empty, rule_files is left as given: use absolute paths there). The
// scrape targets are used as given. It is stopped by t.Cleanup and its log
// is printed if the test fails.
func StartPrometheus(t testing.TB, configYAML string, ruleFiles ...string) *Prometheus {
	t.Helper()
	bin := RequireProgram(t, "prometheus", "prometheus")
	dir := t.TempDir()
	cfg, err := promRewrite(configYAML, dir, ruleFiles)
	if err != nil {
		t.Fatalf("prometheus config: %v", err)
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "prometheus.log")
	var lastErr error
	for attempt := 0; attempt < svcStartAttempts; attempt++ {
		addr := net4(FreePort(t))
		start := time.Now()
		p, err := svcStart("prometheus", logPath, exec.Command(bin,
			"--config.file="+cfgPath,
			"--storage.tsdb.path="+filepath.Join(dir, "data"),
			"--web.listen-address="+addr,
			"--log.level=info",
		))
		if err != nil {
			t.Fatal(err)
		}
		url := "http://" + addr
		err = svcWait(p, promReadyTimeout, func(ctx context.Context) error {
			return svcHTTPOK(ctx, url+"/-/ready")
		})
		if err == nil {
			t.Logf("prometheus ready on %s in %v", url, time.Since(start).Round(time.Millisecond))
			svcLogOnFailure(t, "prometheus", logPath, 200)
			t.Cleanup(func() { p.stop(10 * time.Second) })
			c, err := api.NewClient(api.Config{Address: url})
			if err != nil {
				t.Fatal(err)
			}
			return &Prometheus{URL: url, Pid: p.cmd.Process.Pid, api: promv1.NewAPI(c)}
		}
		p.stop(10 * time.Second)
		lastErr = err
		if !svcPortInUse(logPath) {
			break
		}
	}
	t.Logf("--- prometheus log (%s):\n%s", logPath, svcLogTail(logPath, 200))
	t.Fatalf("prometheus: %v", lastErr)
	return nil
}

// promRewrite copies ruleFiles into dir and points rule_files at them.
func promRewrite(configYAML, dir string, ruleFiles []string) ([]byte, error) {
	if len(ruleFiles) == 0 {
		return []byte(configYAML), nil
	}
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(configYAML), &doc); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if doc == nil {
		doc = map[string]any{}
	}
	var names []any
	for i, src := range ruleFiles {
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("rule file: %w", err)
		}
		// Numbered, so that two rule files with one base name both stay.
		name := fmt.Sprintf("rules-%d-%s", i, filepath.Base(src))
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return nil, err
		}
		names = append(names, name) // relative to the configuration file
	}
	doc["rule_files"] = names
	return yaml.Marshal(doc)
}

// Query runs an instant query at the current time.
func (p *Prometheus) Query(ctx context.Context, expr string) (model.Value, error) {
	v, warnings, _, err := p.api.Query(ctx, expr, time.Now())
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", expr, err)
	}
	if len(warnings) > 0 {
		return v, fmt.Errorf("query %q: warnings: %s", expr, strings.Join(warnings, "; "))
	}
	return v, nil
}

// QueryScalar runs an instant query whose result must be one number: a
// scalar, or a vector with exactly one sample.
func (p *Prometheus) QueryScalar(ctx context.Context, expr string) (float64, error) {
	v, err := p.Query(ctx, expr)
	if err != nil {
		return 0, err
	}
	switch v := v.(type) {
	case *model.Scalar:
		return float64(v.Value), nil
	case model.Vector:
		if len(v) != 1 {
			return 0, fmt.Errorf("query %q: %d samples, want 1: %v", expr, len(v), v)
		}
		return float64(v[0].Value), nil
	default:
		return 0, fmt.Errorf("query %q: a %s, want a scalar or a one-sample vector", expr, v.Type())
	}
}

// WaitTargetsUp waits until at least n scrape targets are up (scraped
// successfully), and fails the test after a minute.
func (p *Prometheus) WaitTargetsUp(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, err := p.api.Targets(ctx)
		cancel()
		up := 0
		var states []string
		if err == nil {
			for _, tg := range res.Active {
				if tg.Health == promv1.HealthGood {
					up++
				}
				states = append(states, fmt.Sprintf("%s %s %s", tg.ScrapeURL, tg.Health, tg.LastError))
			}
			if up >= n {
				return
			}
			err = errors.New(strconv.Itoa(up) + " up: " + strings.Join(states, "; "))
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus targets: want %d up: %v", n, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
