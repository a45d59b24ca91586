package stacktest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/pano-observability/pano/internal/testenv"
)

// recorder is a testing.TB that collects failures instead of failing, so
// that a check can be run on a broken copy of the stack and its complaints
// inspected. Fatal ends the check's goroutine, as it would end a test.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, s)
}

func (r *recorder) Helper()                   {}
func (r *recorder) Error(a ...any)            { r.add(fmt.Sprint(a...)) }
func (r *recorder) Errorf(f string, a ...any) { r.add(fmt.Sprintf(f, a...)) }
func (r *recorder) Fatal(a ...any)            { r.add(fmt.Sprint(a...)); runtime.Goexit() }
func (r *recorder) Fatalf(f string, a ...any) { r.add(fmt.Sprintf(f, a...)); runtime.Goexit() }
func (r *recorder) Fail()                     { r.add("Fail") }
func (r *recorder) FailNow()                  { r.add("FailNow"); runtime.Goexit() }
func (r *recorder) Failed() bool              { r.mu.Lock(); defer r.mu.Unlock(); return len(r.errs) > 0 }

func runCheck(t *testing.T, check func(testing.TB, string), root string) []string {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		check(r, root)
	}()
	<-done
	return r.errs
}

// copyStack copies what the wiring checks read into a new directory.
func copyStack(t *testing.T) string {
	t.Helper()
	src := testenv.RepoRoot(t)
	dst := t.TempDir()
	for _, p := range []string{"docker-compose.yml", ".env", "build-me.sh", "go.mod", "tools/kafka/pom.xml",
		"fl-pipeline-config", "prometheus", "grafana", "zeek-package", "demo1", "demo2"} {
		err := filepath.WalkDir(filepath.Join(src, p), func(path string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) && path != filepath.Join(src, p) {
				return nil // a file that vanished while copying (an editor's temporary)
			}
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(src, path)
			if d.IsDir() {
				return os.MkdirAll(filepath.Join(dst, rel), 0o755)
			}
			info, err := d.Info()
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil || info.Size() > 1<<20 {
				return err // big data files: the checks never read them
			}
			b, err := os.ReadFile(path)
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, rel)), 0o755); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
		})
		if err != nil {
			t.Fatalf("copy %s: %v", p, err)
		}
	}
	return dst
}

func mutate(t *testing.T, root, file, old, new string) {
	t.Helper()
	path := filepath.Join(root, file)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s no longer contains %q: update this mutation", file, old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

var wiringChecks = map[string]func(testing.TB, string){
	"CaptureToZeek": checkWiringCaptureToZeek,
	"ZeekToKafka":   checkWiringZeekToKafka,
	"Metrics":       checkWiringMetrics,
	"Grafana":       checkWiringGrafana,
	"PortsDistinct": checkWiringPortsDistinct,
	"OfflineLoad":   checkWiringOfflineLoad,
	"WebLoad":       checkWiringWebLoad,
}

// The wiring checks pass on an unchanged copy of the stack and fail, naming
// the disagreement, when one file changes a port, an address, a topic or a
// datasource uid that another file depends on.
func TestWiringDetectsDisagreements(t *testing.T) {
	base := copyStack(t)
	for name, check := range wiringChecks {
		if errs := runCheck(t, check, base); len(errs) > 0 {
			t.Errorf("%s fails on an unchanged copy:\n%s", name, strings.Join(errs, "\n"))
		}
	}

	for _, m := range []struct {
		name, file, old, new, check, want string
	}{
		{"prometheus scrapes the wrong shim port", "prometheus/prometheus.yml", `"127.0.0.1:9104"`, `"127.0.0.1:9105"`, "Metrics", "does not scrape the shim"},
		{"prometheus rule file missing", "prometheus/prometheus.yml", "rules/pano-dns-alerts.yml", "rules/missing.yml", "Metrics", "matches no file"},
		{"agent metrics moved", "docker-compose.yml", "METRICS_ADDR: 127.0.0.1:9103", "METRICS_ADDR: 127.0.0.1:9113", "Metrics", "does not scrape the agent"},
		{"flowlogs-pipeline metrics moved", "fl-pipeline-config/flowlogs-pipeline.yaml", "port: 9102", "port: 9112", "Metrics", "does not scrape flowlogs-pipeline"},
		{"flowlogs-pipeline reads another topic", "fl-pipeline-config/flowlogs-pipeline.yaml", "topic: dns", "topic: dns-records", "ZeekToKafka", "reads topic"},
		{"shim writes with a prefix", "docker-compose.yml", `SHIM_TOPIC_PREFIX: ""`, `SHIM_TOPIC_PREFIX: "zeek-"`, "ZeekToKafka", "reads topic"},
		{"kafka-init forgets a topic", "docker-compose.yml", "PANO_TOPICS: dns http ssl", "PANO_TOPICS: dns http", "ZeekToKafka", "kafka-init creates topics"},
		{"the shim leaves out ssl.log", "docker-compose.yml", ",/zeek/logs/ssl.log,/zeek/logs/worker-*/ssl.log", "", "ZeekToKafka", "reads topic"},
		{"kafka advertises another port", "docker-compose.yml", "KAFKA_ADVERTISED_LISTENERS: PLAINTEXT://127.0.0.1:9092", "KAFKA_ADVERTISED_LISTENERS: PLAINTEXT://127.0.0.1:9094", "ZeekToKafka", "Kafka advertises"},
		{"zeek dials another port", "docker-compose.yml", "      PCA_SERVER_PORT: \"57012\"\n      ZEEK_LOG_DIR", "      PCA_SERVER_PORT: \"57013\"\n      ZEEK_LOG_DIR", "CaptureToZeek", "zeek dials"},
		{"streams and workers differ", "docker-compose.yml", "PCA_STREAMS: ${ZEEK_WORKERS:-1}", "PCA_STREAMS: 2", "CaptureToZeek", "each worker reads one stream"},
		{"zeek writes elsewhere", "docker-compose.yml", "ZEEK_LOG_DIR: /zeek/logs", "ZEEK_LOG_DIR: /var/log/zeek", "CaptureToZeek", "zeek writes its logs to /var/log/zeek"},
		{"agent serves another port", "docker-compose.yml", "      PCA_SERVER_PORT: \"57012\"\n      # One stream", "      PCA_SERVER_PORT: \"57013\"\n      # One stream", "CaptureToZeek", "health check looks for remote port"},
		{"misspelt shim variable", "docker-compose.yml", "SHIM_METRICS_ADDR: 127.0.0.1:9104", "SHIM_METRIC_ADDR: 127.0.0.1:9104", "Metrics", "does not document"},
		{"datasource uid changed", "grafana/provisioning/datasources/pano.yml", "uid: pano-prometheus", "uid: prometheus-2", "Grafana", "datasource uid"},
		{"datasource at the wrong port", "grafana/provisioning/datasources/pano.yml", "url: http://127.0.0.1:9090", "url: http://127.0.0.1:9091", "Grafana", "Prometheus listens on"},
		{"home dashboard not provisioned", "docker-compose.yml", "/var/lib/grafana/dashboards/pano-dns.json", "/var/lib/grafana/dashboards/other.json", "Grafana", "home dashboard"},
		{"grafana.ini disagrees", "grafana/grafana.ini", "http_port = 3000", "http_port = 3001", "Grafana", "grafana.ini sets server.http_port"},
		{"grafana on prometheus' port", "docker-compose.yml", `GF_SERVER_HTTP_PORT: "3000"`, `GF_SERVER_HTTP_PORT: "9090"`, "PortsDistinct", "port 9090 is used by"},
		{"offline load at the wrong address", "docker-compose.yml", "DNSPERF_SERVER: ${DNS_LOCAL2_ADDR:-198.18.53.54}", "DNSPERF_SERVER: 198.18.53.55", "OfflineLoad", "queries 198.18.53.55"},
		{"offline server outside its subnet", "docker-compose.yml", "ipv4_address: ${DNS_LOCAL1_ADDR:-198.18.53.53}", "ipv4_address: 198.18.54.53", "OfflineLoad", "outside"},
		{"offline bridge not captured", "docker-compose.yml", "com.docker.network.bridge.name: pano-dns0", "com.docker.network.bridge.name: br-pano", "OfflineLoad", "does not capture"},
		{"web load at the wrong address", "docker-compose.yml", "WEBLOAD_TARGET: 198.18.80.80", "WEBLOAD_TARGET: 198.18.80.81", "WebLoad", "webload loads 198.18.80.81"},
		{"web server outside its subnet", "docker-compose.yml", "ipv4_address: 198.18.80.80", "ipv4_address: 198.18.81.80", "WebLoad", "outside the subnet"},
		{"agent filter without https", "docker-compose.yml", `PCA_FILTER: "udp,53;tcp,53;tcp,80,budget=1;tcp,443,handshake=16KiB"`, `PCA_FILTER: "udp,53;tcp,53;tcp,80,budget=1"`, "WebLoad", "does not keep TCP port 443"},
		{"web bridge not captured", "docker-compose.yml", "com.docker.network.bridge.name: pano-web0", "com.docker.network.bridge.name: br-web", "WebLoad", "does not capture"},
		{"nginx on another TLS port", "demo2/nginx.conf", "listen 443 ssl http2 default_server;", "listen 8443 ssl http2 default_server;", "WebLoad", "TLS ports [443 8443]"},
		{"web health check elsewhere", "docker-compose.yml", "GET /nginx_status HTTP", "GET /status HTTP", "WebLoad", "health check asks"},
		{"webload setting nobody reads", "docker-compose.yml", `WEBLOAD_RATE: "100"`, `WEBLOAD_QPS: "100"`, "WebLoad", "never reads"},
	} {
		t.Run(m.name, func(t *testing.T) {
			root := copyStack(t)
			mutate(t, root, m.file, m.old, m.new)
			errs := runCheck(t, wiringChecks[m.check], root)
			if !strings.Contains(strings.Join(errs, "\n"), m.want) {
				t.Errorf("check %s missed it: want an error containing %q, got:\n%s", m.check, m.want, strings.Join(errs, "\n"))
			}
		})
	}
}
