package e2etest

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pano-observability/pano/internal/testenv"
)

// budgetFilter is the capture filter with the payload budgets the README
// recommends for the web: on port 80 each HTTP header and its body's
// first byte, on 443 each side's first 16 KiB of a TLS connection.
const budgetFilter = "tcp,80,budget=1;tcp,443,handshake=16KiB"

// budgetPaths is the mix: a quarter of the responses carry 20 KiB
// (/big), one in eight is a 404 and one a 500.
var budgetPaths = []string{"/", "/big", "/", "/missing", "/", "/big", "/error", "/"}

// fullFilter captures the same traffic whole.
const fullFilter = "tcp,80;tcp,443"

// webCapture is the agent and one Zeek reading it, with Zeek's logs read
// straight from disk: what a payload budget changes is what Zeek sees.
type webCapture struct {
	name string
	ag   *agent
	zeek *testenv.Zeek
}

// startWebCapture starts the agent with filter on ifaces and a Zeek
// reading it; zeekEnv adds to (and overrides) Zeek's environment.
func startWebCapture(t testing.TB, name, agentBin string, img *testenv.ZeekImage, ifaces []string, filter string, zeekEnv ...string) *webCapture {
	t.Helper()
	ag := startAgent(t, agentBin, ifaces, 1, filter)
	z := testenv.StartZeek(t, img, testenv.ZeekOptions{Port: ag.basePort, LogDir: t.TempDir(),
		// Every log, weird.log included, so that the test sees what a
		// budget costs Zeek; no rotation (Zeek rotates on the clock's
		// hour), so that each log is one file.
		Env: append([]string{"ZEEK_ONLY_FORWARDED_LOGS=0", "ZEEK_ROTATION_INTERVAL=0secs"}, zeekEnv...)})
	(&chain{ag: ag, zeek: z}).waitZeekConnected(t, 1)
	return &webCapture{name: name, ag: ag, zeek: z}
}

// stop ends Zeek and the agent.
func (w *webCapture) stop() {
	w.zeek.Stop(10 * time.Second) //nolint:errcheck // the logs are read already
	w.ag.stop()
}

// metrics scrapes the agent.
func (w *webCapture) metrics(t testing.TB) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := scrape(ctx, "http://"+w.ag.metricsAddr+"/metrics")
	if err != nil {
		t.Fatalf("%s agent metrics: %v", w.name, err)
	}
	return m
}

// bytesToZeek is what the agent has written to Zeek's socket so far.
func (w *webCapture) bytesToZeek(t testing.TB) float64 {
	return w.metrics(t)["pano_agent_pcap_over_tcp_bytes_sent_total"]
}

// drops are the packets the agent lost on the way to Zeek, all reasons.
func (w *webCapture) drops(t testing.TB) float64 {
	return w.metrics(t)["pano_agent_packets_dropped_total"]
}

type httpLogRecord struct {
	OrigP        int      `json:"id_orig_p"`
	TransDepth   int      `json:"trans_depth"`
	Method       string   `json:"method"`
	URI          string   `json:"uri"`
	StatusCode   int      `json:"status_code"`
	RespBodyLen  int64    `json:"response_body_len"`
	ResponseTime *float64 `json:"response_time"`
	MIMETypes    []string `json:"resp_mime_types"`
}

type sslLogRecord struct {
	Version     string   `json:"version"`
	Cipher      string   `json:"cipher"`
	ServerName  string   `json:"server_name"`
	Established bool     `json:"established"`
	NotAfter    *float64 `json:"server_cert_not_valid_after"`
	Handshake   *float64 `json:"handshake_time"`
}

type weirdLogRecord struct {
	Name string `json:"name"`
}

func (w *webCapture) httpLog(t testing.TB) []httpLogRecord {
	return readZeekLog[httpLogRecord](t, filepath.Join(w.zeek.LogDir, "http.log"))
}

func (w *webCapture) sslLog(t testing.TB) []sslLogRecord {
	return readZeekLog[sslLogRecord](t, filepath.Join(w.zeek.LogDir, "ssl.log"))
}

// weirds counts weird.log's entries by name.
func (w *webCapture) weirds(t testing.TB) map[string]int {
	out := map[string]int{}
	for _, r := range readZeekLog[weirdLogRecord](t, filepath.Join(w.zeek.LogDir, "weird.log")) {
		out[r.Name]++
	}
	return out
}

// waitLogs waits until Zeek has logged at least the given numbers of
// HTTP and TLS records, or patience has passed.
func (w *webCapture) waitLogs(t *testing.T, requests, handshakes int, patience time.Duration) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for {
		h, s := len(w.httpLog(t)), len(w.sslLog(t))
		if h >= requests && s >= handshakes {
			return
		}
		if exited, err := w.zeek.Exited(); exited {
			t.Fatalf("%s: zeek exited: %v", w.name, err)
		}
		if time.Now().After(deadline) {
			t.Logf("%s: after %v Zeek logged %d of %d requests and %d of %d handshakes", w.name, patience, h, requests, s, handshakes)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// statusClasses counts records by the first digit of their status.
func statusClasses(recs []httpLogRecord) map[string]int {
	out := map[string]int{}
	for _, r := range recs {
		out[fmt.Sprint(r.StatusCode/100)]++
	}
	return out
}

// TestPayloadBudget: the same web traffic captured twice on one
// interface, by an agent with the payload budget (budgetFilter) and one
// without (fullFilter), each feeding its own Zeek. With the budget,
// Zeek's http.log holds every request of h2load's keep-alive and
// pipelined runs with exact status classes and a response time, and
// ssl.log every TLS handshake with its version, cipher, server name and
// certificate, also while a 100 MB download runs over HTTPS and over
// HTTP; the agent loses nothing; the bytes sent to Zeek per request are
// reported against the full capture's.
func TestPayloadBudget(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireProgram(t, "h2load", "nghttp2-client")
	testenv.RequireProgram(t, "nginx", "nginx")
	testenv.RequireProgram(t, "openssl", "openssl")
	ns := testenv.NewNetns(t)
	web := testenv.StartNginx(t, ns, testenv.NginxOptions{})
	const bulkSize = 100 << 20
	bulk, err := os.Create(filepath.Join(web.Dir, "html", "bulk.bin"))
	if err == nil {
		err = bulk.Truncate(bulkSize) // zeros, as far as HTTP and TLS care
	}
	if err == nil {
		err = bulk.Close()
	}
	if err != nil {
		t.Fatalf("bulk file: %v", err)
	}
	agentBin, _ := binaries(t)
	img := testenv.CachedZeekImage(t)
	budget := startWebCapture(t, "budget", agentBin, img, []string{ns.HostIf}, budgetFilter)
	full := startWebCapture(t, "full", agentBin, img, []string{ns.HostIf}, fullFilter)
	captures := []*webCapture{budget, full}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	uris := func(scheme string) []string {
		return append([]string{scheme + "://" + testenv.NginxName + budgetPaths[0]}, budgetPaths[1:]...)
	}
	// The mix, keep-alive: 10 connections, 2,000 requests at 1,000/s.
	before := []float64{budget.bytesToZeek(t), full.bytesToZeek(t)}
	const mixRequests = 2000
	mix := testenv.RunH2load(ctx, t, testenv.H2loadOptions{URIs: uris("http"), ConnectTo: web.HTTP, Requests: mixRequests, Clients: 10, RPS: 100, H1: true})
	for _, c := range captures {
		c.waitLogs(t, mixRequests, 0, time.Minute)
	}
	mixBytes := []float64{budget.bytesToZeek(t) - before[0], full.bytesToZeek(t) - before[1]}
	ratio := mixBytes[1] / mixBytes[0]
	t.Logf("the mix, %d requests: bytes to Zeek per request %.0f with the budget, %.0f without: %.1fx fewer",
		mixRequests, mixBytes[0]/mixRequests, mixBytes[1]/mixRequests, ratio)

	// Pipelined: 4 requests in flight on each of 5 connections.
	const pipeRequests = 1000
	pipe := testenv.RunH2load(ctx, t, testenv.H2loadOptions{URIs: uris("http"), ConnectTo: web.HTTP, Requests: pipeRequests, Clients: 5, H1: true,
		ExtraArgs: []string{"-m", "4"}})

	// TLS handshakes while 100 MB go over HTTPS and over HTTP.
	var wg sync.WaitGroup
	downloads := map[string]int64{}
	var mu sync.Mutex
	client := web.Client(t)
	for _, scheme := range []string{"https", "http"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+testenv.NginxName+"/bulk.bin", nil)
			if err != nil {
				t.Error(err)
				return
			}
			req.Close = true // a FIN at the end: Zeek logs the request then
			resp, err := client.Do(req)
			if err != nil {
				t.Errorf("%s download: %v", scheme, err)
				return
			}
			defer resp.Body.Close()
			n, err := io.Copy(io.Discard, resp.Body)
			if err != nil || n != bulkSize {
				t.Errorf("%s download: %d bytes, %v", scheme, n, err)
			}
			mu.Lock()
			downloads[scheme] = n
			mu.Unlock()
		}()
	}
	handshakes := opensslHandshakes(ctx, t, web)
	testenv.RunH2load(ctx, t, testenv.H2loadOptions{URIs: uris("https"), ConnectTo: web.HTTPS, Requests: 200, Clients: 10, H1: true})
	handshakes["TLSv13"] += 10 + 1 // h2load's connections and the HTTPS download's (Go's client prefers 1.3)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	requests := mixRequests + pipeRequests + 1 // and the HTTP download
	wantHandshakes := handshakes["TLSv12"] + handshakes["TLSv13"]
	// The full capture may have lost packets (it is only reported): it
	// gets less time.
	budget.waitLogs(t, requests, wantHandshakes, time.Minute)
	full.waitLogs(t, requests, wantHandshakes, 10*time.Second)
	time.Sleep(2 * time.Second) // nothing more arrives

	// With the budget: every request and handshake, exactly.
	httpRecs := budget.httpLog(t)
	if len(httpRecs) != requests {
		t.Errorf("budget: http.log holds %d records, want %d", len(httpRecs), requests)
	}
	want := map[string]int{"2": mix.Status2xx + pipe.Status2xx + 1, "4": mix.Status4xx + pipe.Status4xx, "5": mix.Status5xx + pipe.Status5xx}
	if got := statusClasses(httpRecs); !maps.Equal(got, want) {
		t.Errorf("budget: status classes %v, h2load %v", got, want)
	}
	paths := append(slices.Clone(budgetPaths), "/bulk.bin")
	bad := 0
	for _, r := range httpRecs {
		if r.Method != "GET" || !slices.Contains(paths, r.URI) || r.ResponseTime == nil || *r.ResponseTime <= 0 {
			if bad++; bad <= 5 {
				t.Errorf("budget: incomplete record %+v", r)
			}
		}
	}
	sslRecs := budget.sslLog(t)
	versions := map[string]int{}
	for _, r := range sslRecs {
		if !r.Established || r.Cipher == "" || r.ServerName == "" || r.Handshake == nil {
			t.Errorf("budget: incomplete ssl.log record %+v", r)
			continue
		}
		versions[r.Version]++
		if r.Version == "TLSv12" {
			notAfter := web.NotAfter
			if r.ServerName == testenv.NginxExpiringName {
				notAfter = web.ExpiringNotAfter
			}
			if r.NotAfter == nil || int64(*r.NotAfter) != notAfter.Unix() {
				t.Errorf("budget: %s certificate not_valid_after %v, want %d", r.ServerName, r.NotAfter, notAfter.Unix())
			}
		}
	}
	if !maps.Equal(versions, handshakes) {
		t.Errorf("budget: handshakes by version %v, clients made %v", versions, handshakes)
	}
	if d := budget.drops(t); d != 0 {
		t.Errorf("budget: the agent dropped %v packets", d)
	}
	// What the budget costs: the fields of http.log that need the body.
	compareBodies(t, httpRecs, full.httpLog(t))

	m := budget.metrics(t)
	t.Logf("budget: %v packets skipped (%v bytes), %v truncated (%v payload bytes cut); weird.log %v",
		m["pano_agent_budget_packets_skipped_total"], m["pano_agent_budget_skipped_bytes_total"],
		m["pano_agent_budget_packets_truncated_total"], m["pano_agent_budget_truncated_bytes_total"], budget.weirds(t))
	fullHTTP, fullSSL := full.httpLog(t), full.sslLog(t)
	t.Logf("full capture: %d of %d requests and %d of %d handshakes logged, %v packets dropped, %.0f bytes to Zeek in all (budget: %.0f); weird.log %v",
		len(fullHTTP), requests, len(fullSSL), wantHandshakes, full.drops(t), full.bytesToZeek(t), budget.bytesToZeek(t), full.weirds(t))
	if ratio < 10 {
		t.Errorf("the budget sent %.1fx fewer bytes to Zeek than full capture on the mix, want at least 10x", ratio)
	}
}

// compareBodies reports, request by request (by client port and place
// on the connection), which body-derived fields of http.log the budget
// changed.
func compareBodies(t *testing.T, budget, full []httpLogRecord) {
	t.Helper()
	type key struct{ port, depth int }
	index := func(recs []httpLogRecord) map[key]httpLogRecord {
		out := map[key]httpLogRecord{}
		for _, r := range recs {
			out[key{r.OrigP, r.TransDepth}] = r
		}
		return out
	}
	b := index(budget)
	var same, lenDiff, mimeDiff, missing int
	for k, f := range index(full) {
		r, ok := b[k]
		if !ok {
			missing++
			continue
		}
		switch {
		case r.RespBodyLen != f.RespBodyLen:
			lenDiff++
		case !slices.Equal(r.MIMETypes, f.MIMETypes):
			mimeDiff++
		default:
			same++
		}
	}
	t.Logf("http.log against full capture: %d records alike, %d with another response_body_len, %d with other resp_mime_types, %d not in the budget's log",
		same, lenDiff, mimeDiff, missing)
}
