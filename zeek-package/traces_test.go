package zeekpackage_test

// scripts/http-timing.zeek and scripts/tls-handshake.zeek on every HTTP
// and TLS capture of Zeek's own test suite, checked against stock Zeek
// run on the same capture.

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/pano-observability/pano/internal/testenv"
)

// tracesDir is where the shared fixtures keep Zeek's traces, relative to
// the repository (see its README).
const tracesDir = "../shared/fixtures/zeek-traces"

// Fields the package adds; every other field of every record must be
// stock Zeek's.
var addedFields = map[string][]string{
	"http": {"response_time"},
	"ssl":  {"handshake_time", "server_cert_not_valid_after", "server_cert_subject", "server_cert_san_dns"},
}

// httpFileFields are the http.log fields the file analysis fills, which
// http-files.zeek turns off by default: absent with the package.
var httpFileFields = []string{"orig_fuids", "orig_filenames", "orig_mime_types", "resp_fuids", "resp_filenames", "resp_mime_types"}

// withoutHTTPFiles is what stock Zeek would write with HTTP's file
// analysis off: no file HTTP carried in files.log, nor in the logs of
// the analyses of those files (pe.log, ocsp.log: their "id" is the file's).
func withoutHTTPFiles(run traceRun) traceRun {
	httpFiles := map[string]bool{}
	for _, r := range run["files"] {
		if string(r["source"]) == `"HTTP"` {
			httpFiles[string(r["fuid"])] = true
		}
	}
	out := traceRun{}
	for name, recs := range run {
		recs = slices.DeleteFunc(slices.Clone(recs), func(r map[string]json.RawMessage) bool {
			return httpFiles[string(r["fuid"])] || httpFiles[string(r["id"])]
		})
		if len(recs) > 0 {
			out[name] = recs
		}
	}
	return out
}

// nodeField is the extension field node-name.zeek adds to every log.
const nodeField = "_node"

// Logs about Zeek itself rather than the traffic: they differ from run to
// run (wall-clock times, memory) or by the scripts loaded.
var selfLogs = map[string]bool{
	"loaded_scripts": true, "stats": true, "telemetry": true, "capture_loss": true,
	"packet_filter": true,
}

// zeekTraceFiles lists the captures under http/ and tls/.
func zeekTraceFiles(t *testing.T) []string {
	t.Helper()
	root := filepath.Join(testenv.RepoRoot(t), tracesDir)
	var out []string
	for _, sub := range []string{"http", "tls"} {
		dir := filepath.Join(root, sub)
		if _, err := os.Stat(dir); err != nil {
			testenv.Missing(t, fmt.Sprintf("Zeek's HTTP and TLS traces are not at %s (from the repository root): %v", filepath.Join(tracesDir, sub), err))
		}
		n := len(out)
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if n := d.Name(); !d.IsDir() && (strings.HasSuffix(n, ".pcap") || strings.HasSuffix(n, ".pcapng") || strings.HasSuffix(n, ".pcap.gz")) {
				out = append(out, p)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(out) == n {
			t.Fatalf("no captures in %s", dir)
		}
	}
	return out
}

// zeekLog is one log's records in order, each field's JSON kept as Zeek
// wrote it.
type zeekLog []map[string]json.RawMessage

// traceRun is what one Zeek run wrote: log name -> records.
type traceRun map[string]zeekLog

type traceResult struct {
	name                string
	trace               string // the capture Zeek read (uncompressed)
	stock, pano, image  traceRun
	err                 error
	imageHTTP, imageSSL []byte // the image's http.log and ssl.log as written
	panoHTTP, panoSSL   []byte
}

// runZeek runs Zeek on trace in a folder of its own and reads its logs.
func runZeek(ctx context.Context, img *testenv.ZeekImage, dir, trace string, args ...string) (traceRun, map[string][]byte, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	// -D: the same uids in every run, so that records compare whole.
	// JSON with "_" as the package's json-logs.zeek sets it, for the stock
	// run too. Rotation off: the package rotates hourly, by trace time.
	all := append([]string{"-D", "-C", "-r", trace, "local"}, args...)
	all = append(all, "LogAscii::use_json=T", "Log::default_scope_sep=_", "Log::default_rotation_interval=0secs")
	cmd := img.Zeek(ctx, all...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, nil, fmt.Errorf("zeek %s: %v\n%s", strings.Join(all, " "), err, out)
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	run := traceRun{}
	raw := map[string][]byte{}
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			return nil, nil, err
		}
		name := strings.TrimSuffix(filepath.Base(l), ".log")
		raw[name] = b
		var recs zeekLog
		for i, line := range bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			var r map[string]json.RawMessage
			if err := json.Unmarshal(line, &r); err != nil {
				return nil, nil, fmt.Errorf("%s line %d: %v: %s", l, i+1, err, line)
			}
			recs = append(recs, r)
		}
		run[name] = recs
	}
	return run, raw, nil
}

// runTrace runs Zeek up to three ways on one capture: stock (Zeek's
// local site script alone), with the package as the image loads it
// (local pano), and, for captures with server certificates, as the
// image's entrypoint runs it (only the forwarded logs written).
func runTrace(ctx context.Context, img *testenv.ZeekImage, trace, work string) traceResult {
	res := traceResult{name: traceName(trace), trace: trace}
	if res.err = os.MkdirAll(work, 0o755); res.err != nil {
		return res
	}
	if strings.HasSuffix(trace, ".gz") {
		plain := filepath.Join(work, "trace.pcap")
		if res.err = gunzipTo(trace, plain); res.err != nil {
			return res
		}
		trace = plain
		res.trace = plain
	}
	var raw map[string][]byte
	if res.stock, _, res.err = runZeek(ctx, img, filepath.Join(work, "stock"), trace); res.err != nil {
		return res
	}
	if res.pano, raw, res.err = runZeek(ctx, img, filepath.Join(work, "pano"), trace, "pano"); res.err != nil {
		return res
	}
	res.panoHTTP, res.panoSSL = raw["http"], raw["ssl"]
	// Only the certificate fields could depend on the logs written (the
	// x509 analysis): the third run where the package wrote them.
	if !bytes.Contains(res.panoSSL, []byte(`"server_cert_subject"`)) {
		return res
	}
	if res.image, raw, res.err = runZeek(ctx, img, filepath.Join(work, "image"), trace, "pano", "Pano::only_forwarded_logs=T"); res.err != nil {
		return res
	}
	res.imageHTTP, res.imageSSL = raw["http"], raw["ssl"]
	return res
}

// traceName is a capture's path under zeek-traces/, as failures name it.
func traceName(trace string) string {
	i := strings.Index(trace, "zeek-traces/")
	return trace[i+len("zeek-traces/"):]
}

func gunzipTo(src, dst string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, zr); err != nil {
		out.Close()
		return fmt.Errorf("%s: %w", src, err)
	}
	return out.Close()
}

// Counts for the log and the reply.
type traceCounts struct {
	traces, imageRuns, records                      int
	http, httpStatus, httpNoMethod, httpWithReply   int
	httpRespTime                                    int
	ssl, sslHello, sslHelloLast, sslHandshake       int
	sslEstablished, sslAlert                        int
	sslFPs, sslCertFields, sslChecked, sslNotInX509 int
	sslSAN, sslTLS13, sslTLS13Cert                  int
}

func TestTracesHTTPAndTLS(t *testing.T) {
	traces := zeekTraceFiles(t)
	img := testenv.CachedZeekImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	// A worker per CPU: Zeek reading a capture keeps one core busy.
	results := make([]traceResult, len(traces))
	jobs := make(chan int)
	var wg sync.WaitGroup
	work := t.TempDir()
	start := time.Now()
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				results[i] = runTrace(ctx, img, traces[i], filepath.Join(work, fmt.Sprint(i)))
			}
		}()
	}
	for i := range traces {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	t.Logf("%d traces run in %v", len(traces), time.Since(start).Round(time.Second))

	var n traceCounts
	for _, r := range results {
		if r.err != nil {
			t.Errorf("%s: %v", r.name, r.err)
			continue
		}
		n.traces++
		checkStockFields(t, r, &n)
		checkHTTP(t, r, &n)
		checkSSL(t, r, &n)
		checkImage(t, r, &n)
	}
	t.Logf("%d traces; %d records compared with stock Zeek's; %d traces with server certificates run again with only_forwarded_logs",
		n.traces, n.records, n.imageRuns)
	t.Logf("http.log: %d records; %d with status_code: %d with response_time, %d replies to no request (no method), %d requests Zeek parsed only with their reply",
		n.http, n.httpStatus, n.httpRespTime, n.httpNoMethod, n.httpWithReply)
	t.Logf("ssl.log: %d records; %d with a ClientHello in ssl_history: %d with handshake_time, %d with nothing after the ClientHello; %d established, %d with an alert",
		n.ssl, n.sslHello, n.sslHandshake, n.sslHelloLast, n.sslEstablished, n.sslAlert)
	t.Logf("ssl.log: %d with cert_chain_fps, %d with server_cert_*, %d of them checked against x509.log (%d with SAN DNS names), %d first fingerprints not in x509.log; TLS 1.3: %d records, %d with server_cert_*",
		n.sslFPs, n.sslCertFields, n.sslChecked, n.sslSAN, n.sslNotInX509, n.sslTLS13, n.sslTLS13Cert)
	if n.httpRespTime == 0 || n.sslHandshake == 0 || n.sslChecked == 0 || n.imageRuns == 0 {
		t.Errorf("nothing checked: %+v", n)
	}
}

// checkStockFields: the package changes no stock field but those of
// HTTP's file analysis (http-files.zeek): files.log loses the files HTTP
// carried, http.log the httpFileFields. Otherwise the same logs with the
// same number of records; every field of every stock record is in the
// package's record with the same value; the package's records have no
// other field than those it adds. (dns.log's rtt is dns-rtt.zeek's,
// checked by rtt_test.go: here it may only appear where stock Zeek has
// none.)
func checkStockFields(t *testing.T, r traceResult, n *traceCounts) {
	t.Helper()
	r.stock = withoutHTTPFiles(r.stock)
	names := func(run traceRun) []string {
		var s []string
		for k := range run {
			if !selfLogs[k] {
				s = append(s, k)
			}
		}
		sort.Strings(s)
		return s
	}
	if a, b := names(r.stock), names(r.pano); !slices.Equal(a, b) {
		t.Errorf("%s: stock Zeek wrote logs %v, with the package %v", r.name, a, b)
	}
	for _, name := range names(r.stock) {
		stock, pano := r.stock[name], r.pano[name]
		if len(stock) != len(pano) {
			t.Errorf("%s: %s.log has %d records stock, %d with the package", r.name, name, len(stock), len(pano))
			continue
		}
		for i := range stock {
			n.records++
			for k, v := range stock[i] {
				if name == "http" && slices.Contains(httpFileFields, k) {
					if _, ok := pano[i][k]; ok {
						t.Errorf("%s: http.log record %d: %s=%s with HTTP's file analysis off", r.name, i+1, k, pano[i][k])
					}
					continue
				}
				if !bytes.Equal(pano[i][k], v) {
					t.Errorf("%s: %s.log record %d: %s is %s stock, %s with the package", r.name, name, i+1, k, v, pano[i][k])
				}
			}
			for k := range pano[i] {
				if _, ok := stock[i][k]; ok || slices.Contains(addedFields[name], k) || k == nodeField || (name == "dns" && k == "rtt") {
					continue
				}
				t.Errorf("%s: %s.log record %d: the package adds %s=%s", r.name, name, i+1, k, pano[i][k])
			}
		}
	}
}

// connSpan is a connection's first and last packet times from conn.log.
type connSpan struct{ first, dur float64 }

func connSpans(t *testing.T, run traceRun) map[string]connSpan {
	t.Helper()
	m := map[string]connSpan{}
	for _, c := range run["conn"] {
		var uid string
		var s connSpan
		mustField(t, c, "uid", &uid)
		mustField(t, c, "ts", &s.first)
		mustField(t, c, "duration", &s.dur) // absent: one packet
		m[uid] = s
	}
	return m
}

// mustField decodes rec[k] into v; false when the field is absent.
func mustField(t *testing.T, rec map[string]json.RawMessage, k string, v any) bool {
	t.Helper()
	raw, ok := rec[k]
	if !ok {
		return false
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("field %s=%s: %v", k, raw, err)
	}
	return true
}

// checkHTTP: response_time is on exactly the records with a reply
// (status_code) to a request Zeek saw (method), except where Zeek parsed
// the request only when the reply came; positive, and within the
// connection's duration.
func checkHTTP(t *testing.T, r traceResult, n *traceCounts) {
	t.Helper()
	conns := connSpans(t, r.pano)
	var pkts map[flowDir][]float64
	for i, rec := range r.pano["http"] {
		n.http++
		_, status := rec["status_code"]
		_, method := rec["method"]
		var rt, ts float64
		var uid string
		has := mustField(t, rec, "response_time", &rt)
		mustField(t, rec, "ts", &ts)
		mustField(t, rec, "uid", &uid)
		if status {
			n.httpStatus++
			if !method {
				n.httpNoMethod++
			}
		}
		if has {
			n.httpRespTime++
			if !status || !method {
				t.Errorf("%s: http.log record %d: response_time without a status_code and a method", r.name, i+1)
			}
			if c, ok := conns[uid]; !ok || rt <= 0 || rt > c.dur {
				t.Errorf("%s: http.log record %d: response_time %v, connection %s lasted %v (in conn.log: %v)", r.name, i+1, rt, uid, c.dur, ok)
			}
			continue
		}
		if !status || !method {
			continue
		}
		// A reply to a request Zeek saw, and no time: the request must
		// have been parsed at the time of one of the server's packets,
		// so that request and reply have the same time. Read from the
		// capture, not from Zeek.
		n.httpWithReply++
		if pkts == nil {
			pkts = payloadTimes(t, r.trace)
		}
		d := flowDir{src: endpoint(t, rec, "resp"), dst: endpoint(t, rec, "orig")}
		if !slices.Contains(pkts[d], ts) {
			t.Errorf("%s: http.log record %d: status_code and method but no response_time, and no packet from the server at the request's ts %v (%d server packets)", r.name, i+1, ts, len(pkts[d]))
		}
	}
}

// checkSSL: handshake_time on exactly the records whose ssl_history shows
// a ClientHello, except where nothing of the connection came after it;
// positive, within the connection; the server_cert_* fields equal
// x509.log's certificate for the first of cert_chain_fps.
func checkSSL(t *testing.T, r traceResult, n *traceCounts) {
	t.Helper()
	conns := connSpans(t, r.pano)
	x509 := map[string]map[string]json.RawMessage{}
	for _, x := range r.pano["x509"] {
		var fp string
		mustField(t, x, "fingerprint", &fp)
		if _, dup := x509[fp]; !dup {
			x509[fp] = x
		}
	}
	for i, rec := range r.pano["ssl"] {
		n.ssl++
		var hist, uid, version string
		var established bool
		var ts, ht float64
		mustField(t, rec, "ssl_history", &hist)
		mustField(t, rec, "uid", &uid)
		mustField(t, rec, "ts", &ts)
		mustField(t, rec, "version", &version)
		mustField(t, rec, "established", &established)
		if established {
			n.sslEstablished++
		}
		if _, ok := rec["last_alert"]; ok {
			n.sslAlert++
		}
		// "C" (from the client) or "c" (a ClientHello from the server's
		// side): ssl_handshake_message's letter for a ClientHello.
		hello := strings.ContainsAny(hist, "Cc")
		has := mustField(t, rec, "handshake_time", &ht)
		c, inConn := conns[uid]
		switch {
		case has:
			n.sslHandshake++
			if !hello {
				t.Errorf("%s: ssl.log record %d: handshake_time without a ClientHello in ssl_history %q", r.name, i+1, hist)
			}
			if !inConn || ht <= 0 || ht > c.dur {
				t.Errorf("%s: ssl.log record %d: handshake_time %v, connection %s lasted %v (in conn.log: %v)", r.name, i+1, ht, uid, c.dur, inConn)
			}
		case hello:
			// No time although the ClientHello was seen: only when the
			// connection's last packet came at the record's first
			// event, at or before the ClientHello.
			n.sslHelloLast++
			if !inConn || math.Abs(c.first+c.dur-ts) > 1e-6 {
				t.Errorf("%s: ssl.log record %d: ssl_history %q but no handshake_time; the record starts at %v, its connection ends at %v", r.name, i+1, hist, ts, c.first+c.dur)
			}
		}
		if hello {
			n.sslHello++
		}

		var fps []string
		mustField(t, rec, "cert_chain_fps", &fps)
		_, certFields := rec["server_cert_subject"]
		if certFields {
			n.sslCertFields++
		}
		if version == "TLSv13" {
			n.sslTLS13++
			if certFields {
				n.sslTLS13Cert++
			}
		}
		if len(fps) == 0 {
			for _, f := range addedFields["ssl"][1:] {
				if _, ok := rec[f]; ok {
					t.Errorf("%s: ssl.log record %d: %s without a server certificate in cert_chain_fps", r.name, i+1, f)
				}
			}
			continue
		}
		n.sslFPs++
		x, ok := x509[fps[0]]
		if !ok {
			n.sslNotInX509++
			continue
		}
		n.sslChecked++
		if _, ok := x["san_dns"]; ok {
			n.sslSAN++
		}
		for mine, theirs := range map[string]string{
			"server_cert_not_valid_after": "certificate_not_valid_after",
			"server_cert_subject":         "certificate_subject",
			"server_cert_san_dns":         "san_dns",
		} {
			if !bytes.Equal(rec[mine], x[theirs]) {
				t.Errorf("%s: ssl.log record %d: %s=%s, x509.log's %s for %s is %s", r.name, i+1, mine, rec[mine], theirs, fps[0], x[theirs])
			}
		}
	}
}

// checkImage: as the image runs it (Pano::only_forwarded_logs=T) Zeek
// writes no x509.log, files.log or conn.log, and yet the same http.log and
// ssl.log, certificate fields included: the x509 file analysis runs
// whether or not its logs are written.
func checkImage(t *testing.T, r traceResult, n *traceCounts) {
	t.Helper()
	if r.image == nil {
		return
	}
	n.imageRuns++
	for _, name := range []string{"x509", "files", "conn"} {
		if _, ok := r.image[name]; ok {
			t.Errorf("%s: with only_forwarded_logs, Zeek wrote %s.log", r.name, name)
		}
	}
	if !bytes.Equal(r.imageHTTP, r.panoHTTP) {
		t.Errorf("%s: http.log differs with only_forwarded_logs:\n%s\nwithout:\n%s", r.name, r.imageHTTP, r.panoHTTP)
	}
	if !bytes.Equal(r.imageSSL, r.panoSSL) {
		t.Errorf("%s: ssl.log differs with only_forwarded_logs:\n%s\nwithout:\n%s", r.name, r.imageSSL, r.panoSSL)
	}
}

// flowDir is one direction of a TCP connection.
type flowDir struct{ src, dst netip.AddrPort }

// endpoint reads id_<side>_h and id_<side>_p of a record.
func endpoint(t *testing.T, rec map[string]json.RawMessage, side string) netip.AddrPort {
	t.Helper()
	var h string
	var p uint16
	mustField(t, rec, "id_"+side+"_h", &h)
	mustField(t, rec, "id_"+side+"_p", &p)
	a, err := netip.ParseAddr(h)
	if err != nil {
		t.Fatalf("id_%s_h %q: %v", side, h, err)
	}
	return netip.AddrPortFrom(a, p)
}

// payloadTimes reads a capture (pcap or pcapng, any link type gopacket
// decodes) and returns, per direction, the times of the TCP segments
// carrying data, as Zeek's network_time() has them (zeekTime).
func payloadTimes(t *testing.T, path string) map[flowDir][]float64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type reader interface {
		ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	}
	var rd reader
	var link layers.LinkType
	if strings.HasSuffix(path, ".pcapng") {
		r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		rd, link = r, r.LinkType()
	} else {
		r, err := pcapgo.NewReader(f)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		rd, link = r, r.LinkType()
	}
	out := map[flowDir][]float64{}
	for {
		data, ci, err := rd.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		p := gopacket.NewPacket(data, link, gopacket.NoCopy)
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if tcp == nil || len(tcp.Payload) == 0 || p.NetworkLayer() == nil {
			continue
		}
		src, _ := netip.AddrFromSlice(p.NetworkLayer().NetworkFlow().Src().Raw())
		dst, _ := netip.AddrFromSlice(p.NetworkLayer().NetworkFlow().Dst().Raw())
		d := flowDir{netip.AddrPortFrom(src.Unmap(), uint16(tcp.SrcPort)), netip.AddrPortFrom(dst.Unmap(), uint16(tcp.DstPort))}
		out[d] = append(out[d], zeekTime(ci.Timestamp.Unix(), int64(ci.Timestamp.Nanosecond()/1000)))
	}
	return out
}
