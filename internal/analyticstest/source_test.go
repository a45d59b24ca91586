package analyticstest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pano-observability/pano/internal/testenv"
	"github.com/twmb/franz-go/pkg/kgo"
)

// recordSource puts dns.log records into Kafka's dns topic.
type recordSource interface {
	Append(t *testing.T, records []Record)
	// MetricsAddr is the host:port Prometheus should scrape, "" if none.
	MetricsAddr() string
}

// startSource runs the real shim on a dns.log it appends to. Until the
// shim's command exists in this tree, records are produced to Kafka
// directly in the shim's message format (key uid, flat JSON value).
func startSource(t *testing.T, k *testenv.Kafka) recordSource {
	t.Helper()
	root := testenv.RepoRoot(t)
	if _, err := os.Stat(filepath.Join(root, "shim", "cmd", "pano-shim", "main.go")); err == nil {
		return startShim(t, root, k)
	}
	t.Log("NOTE: shim/cmd/pano-shim is not in this tree: producing to Kafka directly, in the shim's message format")
	return newDirectSource(t, k)
}

type shimSource struct {
	logPath, metricsAddr string
}

func startShim(t *testing.T, root string, k *testenv.Kafka) *shimSource {
	t.Helper()
	paths, metricsAddr := runShim(t, root, k, "dns.log")
	return &shimSource{logPath: paths[0], metricsAddr: metricsAddr}
}

// runShim builds the shim and runs it on empty logs of the given names (one
// topic each: dns.log to dns), and returns their paths and the shim's
// metrics address. It is stopped by t.Cleanup.
func runShim(t *testing.T, root string, k *testenv.Kafka, logNames ...string) ([]string, string) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "pano-shim")
	build := exec.Command("go", "build", "-o", bin, "./shim/cmd/pano-shim")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the shim: %v\n%s", err, out)
	}
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, name := range logNames {
		p := filepath.Join(dir, "logs", name)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin,
		"-shim-logs", strings.Join(paths, ","),
		"-kafka-brokers", k.Bootstrap,
		"-shim-state-dir", filepath.Join(dir, "state"),
		"-shim-metrics-addr", metricsAddr,
	)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start the shim: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("--- shim output:\n%s", out.String())
		}
	})
	t.Logf("shim running on %s, metrics on %s", strings.Join(paths, ", "), metricsAddr)
	return paths, metricsAddr
}

// appendLines appends lines, each followed by a newline, to the log at path
// in one write.
func appendLines(t *testing.T, path string, lines [][]byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b strings.Builder
	for _, l := range lines {
		b.Write(l)
		b.WriteByte('\n')
	}
	if _, err := f.WriteString(b.String()); err != nil {
		t.Fatal(err)
	}
}

func (s *shimSource) Append(t *testing.T, records []Record) {
	t.Helper()
	lines := make([][]byte, 0, len(records))
	for _, r := range records {
		lines = append(lines, r.ZeekJSON())
	}
	appendLines(t, s.logPath, lines)
}

func (s *shimSource) MetricsAddr() string { return s.metricsAddr }

// directSource produces to Kafka itself, acks=all.
type directSource struct {
	client *kgo.Client
}

func newDirectSource(t *testing.T, k *testenv.Kafka) *directSource {
	t.Helper()
	return &directSource{client: k.Client(t, kgo.DefaultProduceTopic("dns"), kgo.RequiredAcks(kgo.AllISRAcks()))}
}

func (s *directSource) Append(t *testing.T, records []Record) {
	t.Helper()
	recs := make([]*kgo.Record, 0, len(records))
	for _, r := range records {
		recs = append(recs, &kgo.Record{Key: []byte(r.UID), Value: r.KafkaJSON()})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := s.client.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce %d records: %v", len(recs), err)
	}
}

func (s *directSource) MetricsAddr() string { return "" }
