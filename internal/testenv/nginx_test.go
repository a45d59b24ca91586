package testenv

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestParseNginxStatus(t *testing.T) {
	// Real stub_status output of nginx 1.22 (trailing spaces included).
	st, err := ParseNginxStatus("Active connections: 1 \nserver accepts handled requests\n 4 4 8 \nReading: 0 Writing: 1 Waiting: 0 \n")
	if err != nil {
		t.Fatal(err)
	}
	if st != (NginxStatus{Active: 1, Accepts: 4, Handled: 4, Requests: 8, Writing: 1}) {
		t.Errorf("%+v", st)
	}
	for _, bad := range []string{"", "Active connections: x\nserver accepts handled requests\n 1 1 1\nReading: 0 Writing: 1 Waiting: 0",
		"Active connections: 1\nserver accepts handled requests\n 1 1\nReading: 0 Writing: 1 Waiting: 0"} {
		if _, err := ParseNginxStatus(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestParseNginxAccess(t *testing.T) {
	// Real lines of demo2's "pano" format.
	r, err := ParseNginxAccess("2026-12-03T13:13:48+00:00\t198.19.250.1\t47\t8\t443\tTLSv1.3\twww.pano.test\tGET\t/error\t500\t38\t0.001")
	if err != nil {
		t.Fatal(err)
	}
	if r.Connection != 47 || r.ConnRequest != 8 || r.ServerPort != 443 || r.TLSProtocol != "TLSv1.3" || r.ServerName != "www.pano.test" ||
		r.Method != "GET" || r.URI != "/error" || r.Status != 500 || r.BodyBytes != 38 || r.RequestTime != time.Millisecond ||
		r.Remote.String() != "198.19.250.1" || !r.Time.Equal(time.Date(2026, 12, 3, 13, 13, 48, 0, time.UTC)) {
		t.Errorf("%+v", r)
	}
	r, err = ParseNginxAccess("2026-12-03T13:13:48+00:00\t198.19.250.1\t48\t7\t80\t-\t-\tGET\t/missing\t404\t47\t0.000")
	if err != nil || r.TLSProtocol != "" || r.ServerName != "" || r.Status != 404 {
		t.Errorf("%+v %v", r, err)
	}
	for _, bad := range []string{"", "a\tb", strings.Repeat("x\t", 11) + "x",
		"2026-12-03T13:13:48+00:00\t198.19.250.1\t48\t7\t80\t-\t-\tGET\t/missing\tfour\t47\t0.000",
		"2026-12-03T13:13:48+00:00\t198.19.250.1\t48\t7\t80\t-\t-\tGET\t/missing\t404\t-1\t0.000"} {
		if _, err := ParseNginxAccess(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestStartNginx runs demo2's web server and checks what the helper
// promises: both names' certificates, keep-alive (three requests on one
// connection), the counters of stub_status and the access log.
func TestStartNginx(t *testing.T) {
	ns := NewNetns(t)
	n := StartNginx(t, ns, NginxOptions{})
	if time.Until(n.NotAfter) < 360*24*time.Hour || time.Until(n.ExpiringNotAfter) > 6*24*time.Hour {
		t.Errorf("certificates end %v and %v; want a year and a few days from now", n.NotAfter, n.ExpiringNotAfter)
	}
	before := n.Status(t)
	logged := len(n.AccessLog(t))

	c := n.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, path := range []string{"/", "/missing", "/big"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+NginxExpiringName+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if got := resp.TLS.PeerCertificates[0].Subject.CommonName; got != NginxExpiringName {
			t.Errorf("%s: certificate for %s", path, got)
		}
	}

	after := n.Status(t)
	// One connection for the three requests, one for each status request.
	if d := after.Accepts - before.Accepts; d != 2 {
		t.Errorf("%d connections accepted between two status requests, want 2 (keep-alive)", d)
	}
	if d := after.Requests - before.Requests; d != 4 {
		t.Errorf("%d requests between two status requests, want 4", d)
	}
	entries := n.AccessLog(t)[logged:]
	if len(entries) != 3 {
		t.Fatalf("access log: %d new lines, want 3: %+v", len(entries), entries)
	}
	for i, want := range []struct {
		uri    string
		status int
		bytes  int64
	}{{"/", 200, -1}, {"/missing", 404, -1}, {"/big", 200, 20480}} {
		e := entries[i]
		if e.URI != want.uri || e.Status != want.status || e.ConnRequest != i+1 || e.Connection != entries[0].Connection ||
			e.ServerName != NginxExpiringName || e.ServerPort != 443 || e.TLSProtocol == "" || e.Remote != ns.HostIP ||
			(want.bytes >= 0 && e.BodyBytes != want.bytes) {
			t.Errorf("access log line %d: %+v, want %s %d as request %d of one connection from %s", i+1, e, want.uri, want.status, i+1, ns.HostIP)
		}
	}
}
