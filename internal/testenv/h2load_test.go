package testenv

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestParseH2load parses reports of the real h2load 1.52, recorded in
// testdata/h2load (its README says how), and checks every field.
func TestParseH2load(t *testing.T) {
	us := time.Microsecond
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	for _, tc := range []struct {
		file                       string
		req                        H2loadRequests
		s2, s3, s4, s5             int
		total, headers, data       int64
		reqTime, connect, ttfb     H2loadTimes
		reqPerSec                  float64
		finished                   time.Duration
		tlsProto, cipher, appProto string
	}{
		{"h1-mix.txt", H2loadRequests{400, 400, 400, 320, 80, 0, 0}, 320, 0, 40, 40, 1745800, 65520, 1659800,
			H2loadTimes{71 * us, ms(4.98), 594 * us, 648 * us}, H2loadTimes{134 * us, 733 * us, 381 * us, 257 * us},
			H2loadTimes{786 * us, ms(1.35), ms(1.01), 246 * us}, 5947.87, ms(67.25), "", "", "http/1.1"},
		{"https-h1-rps.txt", H2loadRequests{200, 200, 200, 160, 40, 0, 0}, 160, 0, 20, 20, 872900, 32760, 829900,
			H2loadTimes{169 * us, ms(6.74), 614 * us, 918 * us}, H2loadTimes{ms(4.44), ms(13.76), ms(9.13), ms(4.20)},
			H2loadTimes{ms(11.18), ms(14.30), ms(12.69), ms(1.70)}, 101.35, 1970 * time.Millisecond, "TLSv1.3", "TLS_AES_128_GCM_SHA256", "http/1.1"},
		{"https-h2.txt", H2loadRequests{2000, 2000, 2000, 1600, 400, 0, 0}, 1600, 0, 200, 200, 8523392, 180800, 8299000,
			H2loadTimes{168 * us, ms(10.86), ms(2.94), ms(1.93)}, H2loadTimes{ms(6.64), ms(27.76), ms(15.64), ms(7.98)},
			H2loadTimes{ms(31.33), ms(32.39), ms(31.85), 357 * us}, 8171.87, ms(244.74), "TLSv1.3", "TLS_AES_128_GCM_SHA256", "h2"},
		{"refused.txt", H2loadRequests{20, 0, 0, 0, 20, 20, 0}, 0, 0, 0, 0, 0, 0, 0,
			H2loadTimes{}, H2loadTimes{}, H2loadTimes{}, 0, 773 * us, "", "", ""},
		{"stalled.txt", H2loadRequests{8, 2, 0, 0, 8, 8, 2}, 0, 0, 0, 0, 0, 0, 0,
			H2loadTimes{}, H2loadTimes{}, H2loadTimes{}, 0, 2 * time.Second, "", "", "http/1.1"},
		{"duration.txt", H2loadRequests{15852, 15852, 15852, 15852, 0, 0, 0}, 15851, 0, 0, 0, 166588439, 4320626, 246002315,
			H2loadTimes{79 * us, ms(8.13), 251 * us, 397 * us}, H2loadTimes{}, H2loadTimes{}, 7926, 3 * time.Second, "", "", "http/1.1"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "h2load", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			r, err := ParseH2load(string(b))
			if err != nil {
				t.Fatal(err)
			}
			if r.Requests != tc.req {
				t.Errorf("requests %+v, want %+v", r.Requests, tc.req)
			}
			if r.Status2xx != tc.s2 || r.Status3xx != tc.s3 || r.Status4xx != tc.s4 || r.Status5xx != tc.s5 {
				t.Errorf("status %d/%d/%d/%d, want %d/%d/%d/%d", r.Status2xx, r.Status3xx, r.Status4xx, r.Status5xx, tc.s2, tc.s3, tc.s4, tc.s5)
			}
			if r.TrafficTotal != tc.total || r.TrafficHeaders != tc.headers || r.TrafficData != tc.data {
				t.Errorf("traffic %d/%d/%d, want %d/%d/%d", r.TrafficTotal, r.TrafficHeaders, r.TrafficData, tc.total, tc.headers, tc.data)
			}
			// Durations go through float milliseconds: allow rounding to 1ns.
			near := func(a, b time.Duration) bool { d := a - b; return d >= -1 && d <= 1 }
			for _, c := range []struct {
				name      string
				got, want H2loadTimes
			}{{"request", r.RequestTime, tc.reqTime}, {"connect", r.ConnectTime, tc.connect}, {"1st byte", r.FirstByte, tc.ttfb}} {
				if !near(c.got.Min, c.want.Min) || !near(c.got.Max, c.want.Max) || !near(c.got.Mean, c.want.Mean) || !near(c.got.SD, c.want.SD) {
					t.Errorf("time for %s %+v, want %+v", c.name, c.got, c.want)
				}
			}
			if r.ReqPerSec != tc.reqPerSec || !near(r.Finished, tc.finished) {
				t.Errorf("finished in %v at %v req/s, want %v at %v", r.Finished, r.ReqPerSec, tc.finished, tc.reqPerSec)
			}
			if r.TLSProtocol != tc.tlsProto || r.Cipher != tc.cipher || r.ApplicationProtocol != tc.appProto {
				t.Errorf("TLS %q %q, protocol %q; want %q %q %q", r.TLSProtocol, r.Cipher, r.ApplicationProtocol, tc.tlsProto, tc.cipher, tc.appProto)
			}
			if r.Output != string(b) {
				t.Error("Output is not h2load's output")
			}
			checkH2loadAgainstText(t, r)
		})
	}
}

// checkH2loadAgainstText re-reads the counts of a report from its text
// with an independent method (one regular expression per number over the
// whole output), so that a RunH2load caller can prove the parsed report
// is what h2load printed.
func checkH2loadAgainstText(t testing.TB, r H2loadReport) {
	t.Helper()
	num := func(pattern string) int64 {
		m := regexp.MustCompile(pattern).FindStringSubmatch(r.Output)
		if m == nil {
			t.Fatalf("%s not in h2load output", pattern)
		}
		n, _ := strconv.ParseInt(m[1], 10, 64)
		return n
	}
	for pattern, got := range map[string]int64{
		`(\d+) total, \d+ started`: int64(r.Requests.Total), `(\d+) started`: int64(r.Requests.Started),
		`(\d+) done`: int64(r.Requests.Done), `(\d+) succeeded`: int64(r.Requests.Succeeded),
		`(\d+) failed`: int64(r.Requests.Failed), `(\d+) errored`: int64(r.Requests.Errored),
		`(\d+) 2xx`: int64(r.Status2xx), `(\d+) 3xx`: int64(r.Status3xx), `(\d+) 4xx`: int64(r.Status4xx), `(\d+) 5xx`: int64(r.Status5xx),
		`\((\d+)\) total`: r.TrafficTotal, `\((\d+)\) headers`: r.TrafficHeaders, `\((\d+)\) data`: r.TrafficData,
	} {
		if want := num(pattern); got != want {
			t.Errorf("%s: parsed %d, printed %d", pattern, got, want)
		}
	}
}

func TestParseH2loadErrors(t *testing.T) {
	good, err := os.ReadFile(filepath.Join("testdata", "h2load", "h1-mix.txt"))
	if err != nil {
		t.Fatal(err)
	}
	g := string(good)
	for name, in := range map[string]string{
		"empty":              "",
		"not finished":       g[:strings.Index(g, "finished in")],
		"no requests":        strings.Replace(g, "requests: 400 total", "reqs: 400 total", 1),
		"no status":          strings.Replace(g, "status codes:", "codes:", 1),
		"no traffic":         strings.Replace(g, "traffic:", "bytes:", 1),
		"no request time":    strings.Replace(g, "time for request:", "time for req:", 1),
		"bad count":          strings.Replace(g, "320 succeeded", "x succeeded", 1),
		"bad status":         strings.Replace(g, "40 4xx", "forty 4xx", 1),
		"bad traffic":        strings.Replace(g, "(65520) headers", "(6552o) headers", 1),
		"bad duration":       strings.Replace(g, "594us", "594xs", 1),
		"bad unit":           strings.Replace(g, "4.98ms", "4.98m", 1),
		"hours":              strings.Replace(g, "4.98ms", "4h58m", 1),
		"min above max":      strings.Replace(g, "71us", "5ms", 1),
		"mean above max":     strings.Replace(g, "594us", "9.99ms", 1),
		"done above started": strings.Replace(g, "400 done", "401 done", 1),
		"succeeded + failed": strings.Replace(g, "80 failed", "81 failed", 1),
		"errored > failed":   strings.Replace(g, "0 errored", "81 errored", 1),
		"statuses > started": strings.Replace(g, "320 2xx", "361 2xx", 1),
		"headers > total":    strings.Replace(g, "(65520) headers", "(1745801) headers", 1),
		"two reports":        g + g,
		"bad req/s":          strings.Replace(g, "5947.87 req/s", "1e99 req/s", 1),
	} {
		if _, err := ParseH2load(in); err == nil {
			t.Errorf("%s: no error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

func FuzzParseH2load(f *testing.F) {
	addReportSeeds(f, "h2load")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseH2load(s)
		if err != nil {
			return
		}
		q := r.Requests
		for _, n := range []int{q.Total, q.Started, q.Done, q.Succeeded, q.Failed, q.Errored, q.Timeout, r.Status2xx, r.Status3xx, r.Status4xx, r.Status5xx} {
			if n < 0 {
				t.Fatalf("negative count accepted: %+v", r)
			}
		}
		if q.Done > q.Started || q.Started > q.Total || q.Succeeded+q.Failed > q.Total || q.Errored > q.Failed ||
			r.Status2xx+r.Status3xx+r.Status4xx+r.Status5xx > q.Started || r.TrafficHeaders > r.TrafficTotal ||
			r.TrafficTotal < 0 || r.TrafficData < 0 || r.ReqPerSec < 0 || r.Finished < 0 ||
			r.RequestTime.Min > r.RequestTime.Max || r.RequestTime.Mean > r.RequestTime.Max {
			t.Fatalf("inconsistent report accepted: %+v", r)
		}
	})
}

func TestH2loadArgs(t *testing.T) {
	args, err := h2loadArgs(H2loadOptions{
		URIs: []string{"https://www.pano.test/", "/big"}, ConnectTo: netip.MustParseAddrPort("[fd00::2]:443"),
		Requests: 40, Clients: 4, Threads: 2, RPS: 2.5, H1: true, ExtraArgs: []string{"-m", "1"},
	})
	want := "-n 40 -c 4 -t 2 --rps=2.5 --h1 --connect-to=[fd00::2]:443 -m 1 https://www.pano.test/ /big"
	if err != nil || strings.Join(args, " ") != want {
		t.Errorf("args\n %s (%v)\nwant\n %s", strings.Join(args, " "), err, want)
	}
	// A duration replaces the request count; nothing given is one pass.
	args, err = h2loadArgs(H2loadOptions{URIs: []string{"http://x/"}, Duration: 1500 * time.Millisecond, Requests: 9})
	if err != nil || strings.Join(args, " ") != "-D 1500ms http://x/" {
		t.Errorf("duration: %v %v", args, err)
	}
	args, err = h2loadArgs(H2loadOptions{URIs: []string{"http://x/", "/a", "/b"}})
	if err != nil || strings.Join(args, " ") != "-n 3 http://x/ /a /b" {
		t.Errorf("unbounded: %v %v", args, err)
	}
	for name, o := range map[string]H2loadOptions{
		"no URI":        {},
		"relative":      {URIs: []string{"/big"}},
		"sub-ms":        {URIs: []string{"http://x/"}, Duration: 1500 * time.Microsecond},
		"negative rate": {URIs: []string{"http://x/"}, RPS: -1},
	} {
		if _, err := h2loadArgs(o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestRunH2loadMatchesTheAccessLog runs the real h2load against demo2's
// nginx and compares its parsed report with what nginx logged: each
// status class and the body bytes, request for request.
func TestRunH2loadMatchesTheAccessLog(t *testing.T) {
	RequireProgram(t, "h2load", "nghttp2-client")
	ns := NewNetns(t)
	n := StartNginx(t, ns, NginxOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, tc := range []struct {
		scheme string
		port   uint16
		h1     bool
	}{{"http", 80, true}, {"https", 443, true}, {"https", 443, false}} {
		before := len(n.AccessLog(t))
		rep := RunH2load(ctx, t, H2loadOptions{
			URIs:      []string{tc.scheme + "://" + NginxName + "/", "/big", "/missing", "/error", "/big"},
			ConnectTo: netip.AddrPortFrom(n.Addr, tc.port), Requests: 100, Clients: 2, H1: tc.h1,
		})
		checkH2loadAgainstText(t, rep)
		logged := n.AccessLog(t)[before:]
		var classes [6]int
		var body int64
		for _, l := range logged {
			classes[l.Status/100]++
			body += l.BodyBytes
		}
		if rep.Requests.Done != 100 || rep.Requests.Errored != 0 || len(logged) != 100 {
			t.Errorf("%s h1=%v: h2load did %d requests (%d errored), nginx logged %d; want 100, 0, 100", tc.scheme, tc.h1, rep.Requests.Done, rep.Requests.Errored, len(logged))
		}
		if rep.Status2xx != classes[2] || rep.Status4xx != classes[4] || rep.Status5xx != classes[5] || rep.Status3xx != 0 {
			t.Errorf("%s h1=%v: h2load counted %d/%d/%d 2xx/4xx/5xx, nginx logged %v", tc.scheme, tc.h1, rep.Status2xx, rep.Status4xx, rep.Status5xx, classes)
		}
		// Every client asks the list in order: 20 passes of five paths.
		if rep.Status2xx != 60 || rep.Status4xx != 20 || rep.Status5xx != 20 {
			t.Errorf("%s h1=%v: %d/%d/%d 2xx/4xx/5xx, want 60/20/20", tc.scheme, tc.h1, rep.Status2xx, rep.Status4xx, rep.Status5xx)
		}
		if rep.TrafficData != body {
			t.Errorf("%s h1=%v: h2load received %d body bytes, nginx sent %d", tc.scheme, tc.h1, rep.TrafficData, body)
		}
		wantProto := map[bool]string{true: "http/1.1", false: "h2"}[tc.h1]
		if rep.ApplicationProtocol != wantProto || (tc.scheme == "https") != (rep.TLSProtocol != "") {
			t.Errorf("%s h1=%v: protocol %q over %q", tc.scheme, tc.h1, rep.ApplicationProtocol, rep.TLSProtocol)
		}
	}
}
