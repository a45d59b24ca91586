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

	"gopkg.in/yaml.v3"
)

// FLP is a running flowlogs-pipeline.
type FLP struct {
	// MetricsURL is the /metrics URL where the configuration's prom encode
	// stage publishes: the stage's own server if it names one, otherwise
	// flowlogs-pipeline's global metrics server.
	MetricsURL string
	// OpsMetricsURL is the global metrics server's /metrics (operational
	// metrics), "" if the configuration disables it.
	OpsMetricsURL string
	// Pid is the process's, for benchmarks' CPU accounting (ProcessCPU).
	Pid  int
	proc *svcProc
}

// Kill kills the pipeline with SIGKILL, as a crashed replica or a lost
// node ends: it neither commits its Kafka offsets nor leaves its consumer
// group, so the group waits for its session to time out before handing
// its partitions to the others.
func (f *FLP) Kill() {
	f.proc.kill()
}

const flpReadyTimeout = time.Minute

// StartFLP writes configYAML to a file and runs the flowlogs-pipeline that
// make tools built (CacheDir/bin/flowlogs-pipeline) on it. It returns when
// the pipeline reports ready and its metrics endpoint answers; it is
// stopped by t.Cleanup and its log is printed if the test fails.
//
// So that tests can run in parallel, StartFLP rewrites every metrics
// server in the configuration (metricsSettings, and each prom encode
// stage that names an address or port) to listen on 127.0.0.1 on a free
// port; read the result in MetricsURL. Everything else is used as given:
// point the Kafka ingest at the test broker with FLPConfigWithKafka.
func StartFLP(t testing.TB, configYAML string) *FLP {
	t.Helper()
	bin := filepath.Join(CacheDir(t), "bin", "flowlogs-pipeline")
	if _, err := os.Stat(bin); err != nil {
		Missing(t, "flowlogs-pipeline not built ("+bin+"): run make tools")
	}
	dir := t.TempDir()
	logPath := filepath.Join(dir, "flowlogs-pipeline.log")
	var lastErr error
	for attempt := 0; attempt < svcStartAttempts; attempt++ {
		cfg, f, err := flpRewrite(configYAML, func() int { return FreePort(t) })
		if err != nil {
			t.Fatalf("flowlogs-pipeline config: %v", err)
		}
		cfgPath := filepath.Join(dir, fmt.Sprintf("config-%d.yaml", attempt))
		if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
			t.Fatal(err)
		}
		healthPort := FreePort(t)
		start := time.Now()
		p, err := svcStart("flowlogs-pipeline", logPath, flpCommand(bin, cfgPath, healthPort))
		if err != nil {
			t.Fatal(err)
		}
		readyURL := "http://" + net4(healthPort) + "/ready"
		err = svcWait(p, flpReadyTimeout, func(ctx context.Context) error {
			if err := svcHTTPOK(ctx, readyURL); err != nil {
				return err
			}
			if f.OpsMetricsURL != "" {
				if err := svcHTTPOK(ctx, f.OpsMetricsURL); err != nil {
					return err
				}
			}
			return svcHTTPOK(ctx, f.MetricsURL)
		})
		if err == nil {
			t.Logf("flowlogs-pipeline ready in %v, metrics on %s", time.Since(start).Round(time.Millisecond), f.MetricsURL)
			svcLogOnFailure(t, "flowlogs-pipeline", logPath, 200)
			t.Cleanup(func() { p.stop(10 * time.Second) })
			f.Pid, f.proc = p.cmd.Process.Pid, p
			return f
		}
		p.stop(10 * time.Second)
		lastErr = err
		if !svcPortInUse(logPath) {
			break
		}
	}
	t.Logf("--- flowlogs-pipeline log (%s):\n%s", logPath, svcLogTail(logPath, 200))
	t.Fatalf("flowlogs-pipeline: %v", lastErr)
	return nil
}

func flpCommand(bin, cfgPath string, healthPort int) *exec.Cmd {
	return exec.Command(bin, "--config", cfgPath,
		"--health.address", "127.0.0.1", "--health.port", strconv.Itoa(healthPort))
}

// flpRewrite moves every metrics server of a flowlogs-pipeline
// configuration to 127.0.0.1 on ports from freePort.
func flpRewrite(configYAML string, freePort func() int) ([]byte, *FLP, error) {
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(configYAML), &doc); err != nil {
		return nil, nil, fmt.Errorf("parse: %w", err)
	}
	if doc == nil {
		return nil, nil, errors.New("empty configuration")
	}
	f := &FLP{}
	ms, err := flpMap(doc, "metricsSettings")
	if err != nil {
		return nil, nil, err
	}
	if off, _ := ms["disableGlobalServer"].(bool); !off {
		if _, tls := ms["tls"]; tls {
			return nil, nil, errors.New("metricsSettings: TLS is not supported by the test helper")
		}
		port := freePort()
		ms["address"], ms["port"] = "127.0.0.1", port
		f.OpsMetricsURL = "http://" + net4(port) + "/metrics"
	}
	params, _ := doc["parameters"].([]any)
	for i, p := range params {
		stage, _ := p.(map[string]any)
		enc, _ := stage["encode"].(map[string]any)
		prom, _ := enc["prom"].(map[string]any)
		if prom == nil {
			continue
		}
		_, hasAddr := prom["address"]
		_, hasPort := prom["port"]
		if _, tls := prom["tls"]; tls {
			return nil, nil, fmt.Errorf("parameters[%d].encode.prom: TLS is not supported by the test helper", i)
		}
		if !hasAddr && !hasPort {
			if f.MetricsURL == "" {
				f.MetricsURL = f.OpsMetricsURL
			}
			continue
		}
		port := freePort()
		prom["address"], prom["port"] = "127.0.0.1", port
		if f.MetricsURL == "" {
			f.MetricsURL = "http://" + net4(port) + "/metrics"
		}
	}
	if f.MetricsURL == "" {
		f.MetricsURL = f.OpsMetricsURL
	}
	if f.MetricsURL == "" {
		return nil, nil, errors.New("no metrics endpoint: the global server is disabled and no prom encode stage has its own")
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return nil, nil, err
	}
	return out, f, nil
}

// flpMap returns doc[key] as a map, creating it if absent.
func flpMap(doc map[string]any, key string) (map[string]any, error) {
	v, ok := doc[key]
	if !ok || v == nil {
		m := map[string]any{}
		doc[key] = m
		return m, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: not a mapping", key)
	}
	return m, nil
}

// FLPConfigWithKafka returns configYAML with the brokers of every Kafka
// ingest stage replaced by bootstrap (e.g. Kafka.Bootstrap, or
// KafkaCluster.Bootstrap, comma-separated), so that a deployment's
// configuration can run against the test broker or cluster.
func FLPConfigWithKafka(t testing.TB, configYAML, bootstrap string) string {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(configYAML), &doc); err != nil {
		t.Fatalf("flowlogs-pipeline config: %v", err)
	}
	params, _ := doc["parameters"].([]any)
	n := 0
	for _, p := range params {
		stage, _ := p.(map[string]any)
		ingest, _ := stage["ingest"].(map[string]any)
		kafka, _ := ingest["kafka"].(map[string]any)
		if kafka != nil {
			var brokers []any
			for _, b := range strings.Split(bootstrap, ",") {
				brokers = append(brokers, b)
			}
			kafka["brokers"] = brokers
			n++
		}
	}
	if n == 0 {
		t.Fatalf("flowlogs-pipeline config has no Kafka ingest stage")
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// StartPANOFLP starts flowlogs-pipeline with the repository's own
// configuration (fl-pipeline-config/flowlogs-pipeline.yaml), reading the
// dns, http and ssl topics of k, which it creates first with one
// partition each, as the demo's kafka-init does (flowlogs-pipeline's
// reader does not see a topic created after it started).
func StartPANOFLP(t testing.TB, k *Kafka) *FLP {
	t.Helper()
	for _, topic := range []string{"dns", "http", "ssl"} {
		k.CreateTopic(t, topic, 1)
	}
	cfg, err := os.ReadFile(filepath.Join(RepoRoot(t), "fl-pipeline-config", "flowlogs-pipeline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return StartFLP(t, FLPConfigWithKafka(t, string(cfg), k.Bootstrap))
}
