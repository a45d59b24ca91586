package analyticstest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"

	"github.com/pano-observability/pano/internal/testenv"
)

// TestZeekTracesThroughPipeline: Zeek's own HTTP and TLS test traces
// (the shared fixtures, 160 captures) go through real Zeek with PANO's
// package, the shim, Kafka, flowlogs-pipeline and Prometheus; every
// request and handshake series in Prometheus equals what Zeek's http.log
// and ssl.log say, exactly: real protocol variety (methods, odd status
// codes, no replies, IPv6, failed and legacy handshakes) instead of
// generated records.
func TestZeekTracesThroughPipeline(t *testing.T) {
	root := testenv.RepoRoot(t)
	all, _ := filepath.Glob(filepath.Join(root, "..", "shared", "fixtures", "zeek-traces", "*", "*"))
	var traces []string
	for _, p := range all {
		if strings.HasSuffix(p, ".pcap") || strings.HasSuffix(p, ".pcapng") || strings.HasSuffix(p, ".pcap.gz") {
			traces = append(traces, p)
		}
	}
	if len(traces) == 0 {
		testenv.Missing(t, "no Zeek traces in ../shared/fixtures/zeek-traces")
	}
	img := testenv.CachedZeekImage(t)
	var httpLines, sslLines [][]byte
	var https []HTTPRecord
	var ssls []SSLRecord
	for _, trace := range traces {
		h, s := zeekWebLogs(t, img, trace)
		for _, l := range h {
			httpLines = append(httpLines, l)
			https = append(https, decodeHTTP(t, trace, l))
		}
		for _, l := range s {
			sslLines = append(sslLines, l)
			ssls = append(ssls, decodeSSL(t, trace, l))
		}
	}
	t.Logf("%d traces: %d http.log and %d ssl.log records", len(traces), len(https), len(ssls))
	if len(https) < 1000 || len(ssls) < 50 {
		t.Fatalf("too few records from the traces: %d http, %d ssl", len(https), len(ssls))
	}

	k := testenv.StartKafka(t)
	flp := testenv.StartPANOFLP(t, k)
	logs, shimAddr := runShim(t, root, k, "http.log", "ssl.log")
	promYAML, targets := prometheusConfig(t, root, hostPort(t, flp.MetricsURL), shimAddr)
	prom := testenv.StartPrometheus(t, promYAML, ruleFiles(t, root)...)
	prom.WaitTargetsUp(t, targets)
	client, err := api.NewClient(api.Config{Address: prom.URL})
	if err != nil {
		t.Fatal(err)
	}
	q := &querier{api: promv1.NewAPI(client)}
	ht, st := NewHTTPTally(https), NewSSLTally(ssls)
	appendLines(t, logs[0], httpLines)
	appendLines(t, logs[1], sslLines)
	q.waitValues(t, webTotals(ht, st))
	time.Sleep(2 * interval)
	at := time.Now()
	checkHTTPSeries(t, q, at, ht)
	checkTLSSeries(t, q, at, st)
}

// zeekWebLogs runs the package's Zeek on one trace, as the image's
// scripts are loaded, and returns its http.log and ssl.log lines.
func zeekWebLogs(t *testing.T, img *testenv.ZeekImage, trace string) (http, ssl [][]byte) {
	t.Helper()
	dir := t.TempDir()
	in := trace
	if strings.HasSuffix(trace, ".gz") {
		in = filepath.Join(dir, "trace.pcap")
		b, err := exec.Command("gzip", "-dc", trace).Output()
		if err != nil {
			t.Fatalf("gunzip %s: %v", trace, err)
		}
		if err := os.WriteFile(in, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Rotation off: the package rotates hourly, by the trace's time.
	cmd := img.Zeek(ctx, "-C", "-r", in, "local", "pano", "Log::default_rotation_interval=0secs")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("zeek on %s: %v\n%s", trace, err, out)
	}
	return logLines(t, filepath.Join(dir, "http.log")), logLines(t, filepath.Join(dir, "ssl.log"))
}

func logLines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if l := bytes.TrimSpace(sc.Bytes()); len(l) > 0 && l[0] == '{' {
			out = append(out, append([]byte(nil), l...))
		}
	}
	return out
}

// decodeHTTP reads one http.log line into the tally's record.
func decodeHTTP(t *testing.T, trace string, line []byte) HTTPRecord {
	t.Helper()
	var v struct {
		RespH        string   `json:"id_resp_h"`
		Method       string   `json:"method"`
		Host         string   `json:"host"`
		ReqBodyLen   int      `json:"request_body_len"`
		RespBodyLen  int      `json:"response_body_len"`
		StatusCode   *int     `json:"status_code"`
		ResponseTime *float64 `json:"response_time"`
	}
	if err := json.Unmarshal(line, &v); err != nil {
		t.Fatalf("%s: http.log line %s: %v", trace, line, err)
	}
	return HTTPRecord{RespH: v.RespH, Method: v.Method, Host: v.Host, ReqBodyLen: v.ReqBodyLen, RespBodyLen: v.RespBodyLen,
		StatusCode: v.StatusCode, ResponseTime: v.ResponseTime}
}

// decodeSSL reads one ssl.log line into the tally's record.
func decodeSSL(t *testing.T, trace string, line []byte) SSLRecord {
	t.Helper()
	var v struct {
		RespH         string   `json:"id_resp_h"`
		Version       string   `json:"version"`
		Cipher        string   `json:"cipher"`
		ServerName    string   `json:"server_name"`
		Established   bool     `json:"established"`
		HandshakeTime *float64 `json:"handshake_time"`
		CertNotAfter  *float64 `json:"server_cert_not_valid_after"`
	}
	if err := json.Unmarshal(line, &v); err != nil {
		t.Fatalf("%s: ssl.log line %s: %v", trace, line, err)
	}
	return SSLRecord{RespH: v.RespH, Version: v.Version, Cipher: v.Cipher, ServerName: v.ServerName, Established: v.Established,
		HandshakeTime: v.HandshakeTime, CertNotAfter: v.CertNotAfter}
}
