package e2etest

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pano-observability/pano/internal/testenv"
)

// webPaths is demo2's request mix (demo2/paths.txt): ten requests, 8
// answered 200, one 404, one 500.
var webPaths = []string{"/", "/", "/big", "/", "/missing", "/", "/", "/big", "/", "/error"}

// TestWholeChainHTTPAndTLS: h2load's HTTP/1.1 and HTTPS mix and openssl's
// TLS 1.2 and 1.3 handshakes against demo2's nginx in a namespace, captured
// by the agent (tcp,80;tcp,443), through real Zeek with the package, the
// shim, Kafka, flowlogs-pipeline and Prometheus. Requests per status class
// equal h2load's own report over HTTP (Zeek cannot read HTTP inside TLS);
// handshakes per TLS version equal the connections each client made; the
// certificate-expiry gauge equals the certificates' notAfter.
func TestWholeChainHTTPAndTLS(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireProgram(t, "h2load", "nghttp2-client")
	testenv.RequireProgram(t, "nginx", "nginx")
	testenv.RequireProgram(t, "openssl", "openssl")
	ns := testenv.NewNetns(t)
	web := testenv.StartNginx(t, ns, testenv.NginxOptions{})
	slow := startSlowWeb(t, slowWebDelay)
	c := startChainFor(t, []string{ns.HostIf, slow.ns.HostIf}, 1, "tcp,80;tcp,443", []string{"http", "ssl"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	const requests, clients = 1000, 10
	uris := func(scheme string) []string {
		out := []string{scheme + "://" + testenv.NginxName + webPaths[0]}
		return append(out, webPaths[1:]...)
	}
	plain := testenv.RunH2load(ctx, t, testenv.H2loadOptions{URIs: uris("http"), ConnectTo: web.HTTP, Requests: requests, Clients: clients, H1: true})
	tls := testenv.RunH2load(ctx, t, testenv.H2loadOptions{URIs: uris("https"), ConnectTo: web.HTTPS, Requests: requests, Clients: clients, H1: true})
	handshakes := opensslHandshakes(ctx, t, web)
	handshakes["TLSv13"] += clients // h2load's HTTPS connections
	if tls.TLSProtocol != "TLSv1.3" {
		t.Fatalf("h2load negotiated %q, want TLSv1.3", tls.TLSProtocol)
	}
	// Zeek reads HTTP in the clear only: the HTTPS requests count as
	// handshakes, the plain ones as requests.
	want := map[string]int{"2": plain.Status2xx, "4": plain.Status4xx, "5": plain.Status5xx}
	if want["2"] != requests*8/10 || want["4"] != requests/10 || want["5"] != requests/10 || tls.Status2xx != requests*8/10 {
		t.Fatalf("h2load's own counts do not follow the mix: %v, over HTTPS %d 2xx", want, tls.Status2xx)
	}
	total := requests

	// Zeek logs a request once its reply is parsed and a handshake when it
	// ends; wait until Prometheus holds every request and handshake.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		c.zeekAlive(t)
		n, _ := c.prom.QueryScalar(ctx, `sum(pano_http_requests_total)`)
		h, _ := c.prom.QueryScalar(ctx, `sum(pano_tls_handshakes_total)`)
		if int(n) >= total && int(h) >= handshakes["TLSv12"]+handshakes["TLSv13"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 2 minutes Prometheus holds %v requests of %d and %v handshakes of %v", n, total, h, handshakes)
		}
		time.Sleep(time.Second)
	}
	time.Sleep(6 * time.Second) // one more scrape: nothing beyond the totals arrives
	q := func(expr string) float64 {
		t.Helper()
		v, err := c.prom.QueryScalar(ctx, expr)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		return v
	}
	server := ns.PeerIP.String()
	if got := q(fmt.Sprintf(`sum(pano_http_requests_total{server=%q})`, server)); int(got) != total {
		t.Errorf("requests: Prometheus %v, h2load %d", got, total)
	}
	for class, n := range want {
		if got := q(fmt.Sprintf(`sum(pano_http_requests_total{server=%q,status_code=~"%s.."})`, server, class)); int(got) != n {
			t.Errorf("%sxx: Prometheus %v, h2load %d", class, got, n)
		}
	}
	for v, n := range handshakes {
		if got := q(fmt.Sprintf(`sum(pano_tls_handshakes_total{server=%q,version=%q,outcome="established"})`, server, v)); int(got) != n {
			t.Errorf("%s handshakes: Prometheus %v, clients made %d", v, got, n)
		}
	}
	// Certificates are visible in TLS 1.2 handshakes only (1.3 encrypts them).
	for name, notAfter := range map[string]time.Time{testenv.NginxName: web.NotAfter, testenv.NginxExpiringName: web.ExpiringNotAfter} {
		got := q(fmt.Sprintf(`max(pano_tls_cert_not_valid_after_timestamp_seconds{server=%q,server_name=%q})`, server, name))
		if int64(got) != notAfter.Unix() {
			t.Errorf("%s: expiry gauge %v, certificate notAfter %d (%v)", name, got, notAfter.Unix(), notAfter)
		}
	}
	// Response time: reported beside h2load's (a local nginx answers in
	// well under a millisecond, where h2load's own time dominates).
	mean := q(fmt.Sprintf(`sum(pano_http_response_time_seconds_sum{server=%q}) / sum(pano_http_response_time_seconds_count{server=%q})`, server, server))
	count := q(fmt.Sprintf(`sum(pano_http_response_time_seconds_count{server=%q})`, server))
	if int(count) != total {
		t.Errorf("response times observed: %v, want one per request (%d)", count, total)
	}
	h2mean := plain.RequestTime.Mean.Seconds()
	t.Logf("requests %d (2xx %d, 4xx %d, 5xx %d), handshakes %v; mean response time: Zeek %.3f ms, h2load %.3f ms (ratio %.2f)",
		total, want["2"], want["4"], want["5"], handshakes, mean*1e3, h2mean*1e3, mean/h2mean)
	if math.IsNaN(mean) || mean <= 0 {
		t.Errorf("mean response time %v", mean)
	}

	// A server with an application's response time (milliseconds): there
	// the histogram's mean must be within 20% of h2load's (the issue's
	// criterion), which nginx's sub-millisecond answers above cannot show.
	slowRep := testenv.RunH2load(ctx, t, testenv.H2loadOptions{URIs: []string{"http://" + testenv.NginxName + "/"}, ConnectTo: slow.addr,
		Requests: 400, Clients: 4, H1: true})
	if slowRep.Status2xx != 400 {
		t.Fatalf("slow server: %d of 400 answered 2xx", slowRep.Status2xx)
	}
	slowServer := slow.addr.Addr().String()
	deadline = time.Now().Add(time.Minute)
	for q(fmt.Sprintf(`sum(pano_http_response_time_seconds_count{server=%q}) or vector(0)`, slowServer)) < 400 {
		if time.Now().After(deadline) {
			t.Fatalf("slow server: fewer than 400 response times in Prometheus after a minute")
		}
		time.Sleep(time.Second)
	}
	slowMean := q(fmt.Sprintf(`sum(pano_http_response_time_seconds_sum{server=%q}) / sum(pano_http_response_time_seconds_count{server=%q})`, slowServer, slowServer))
	h2 := slowRep.RequestTime.Mean.Seconds()
	t.Logf("slow server (%v per answer): mean response time Zeek %.3f ms, h2load %.3f ms (ratio %.3f)", slowWebDelay, slowMean*1e3, h2*1e3, slowMean/h2)
	if math.Abs(slowMean/h2-1) > 0.2 {
		t.Errorf("slow server: mean response time %.3f ms, h2load's %.3f ms: more than 20%% apart", slowMean*1e3, h2*1e3)
	}
}

// opensslHandshakes makes three TLS 1.2 and three TLS 1.3 handshakes with
// each of demo2's server names, and returns their counts by Zeek's
// version names (TLSv12, TLSv13).
func opensslHandshakes(ctx context.Context, t *testing.T, web *testenv.Nginx) map[string]int {
	t.Helper()
	handshakes := map[string]int{}
	for _, v := range []string{"1.2", "1.3"} {
		for _, name := range []string{testenv.NginxName, testenv.NginxExpiringName} {
			for range 3 {
				h := testenv.OpenSSLHandshake(ctx, t, testenv.TLSHandshakeOptions{Addr: web.HTTPS, ServerName: name, Version: v, CAFile: web.CAFile})
				if !h.Established {
					t.Fatalf("TLS %s handshake with %s failed: %s", v, name, h.Output)
				}
				handshakes["TLSv1"+strings.TrimPrefix(v, "1.")]++
			}
		}
	}
	return handshakes
}

// slowWebDelay is the slow server's time to answer.
const slowWebDelay = 5 * time.Millisecond

// slowWeb is an HTTP server in a namespace of its own that answers after
// a delay, as an application behind a web server does.
type slowWeb struct {
	ns   *testenv.Netns
	addr netip.AddrPort
}

func startSlowWeb(t *testing.T, delay time.Duration) *slowWeb {
	t.Helper()
	ns := testenv.NewNetns(t)
	addr := netip.AddrPortFrom(ns.PeerIP, 80)
	ln := ns.ListenTCP(t, addr)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(delay)
		fmt.Fprintln(w, "slow but fine")
	})}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	t.Cleanup(func() { srv.Close() })
	return &slowWeb{ns: ns, addr: addr}
}
