// Package demo2 holds the HTTP/TLS demo: nginx's configuration, the
// certificates made at its start, the path list and the load runner.
// These tests run them for real (Debian's nginx, h2load and openssl) in
// network namespaces of their own.
package demo2

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	osuser "os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pano-observability/pano/internal/testenv"
)

const pathFile = "paths.txt"

func readPaths(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(pathFile)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			paths = append(paths, l)
		}
	}
	return paths
}

// wantStatus is what each path answers (locations.conf).
var wantStatus = map[string]int{"/": 200, "/big": 200, "/missing": 404, "/error": 500}

// The list is what the README promises: ten requests, 80% 2xx, 10% 4xx,
// 10% 5xx, each path one the server knows.
func TestPathList(t *testing.T) {
	paths := readPaths(t)
	if len(paths) != 10 {
		t.Errorf("%d paths, want 10 (the README's shares assume it)", len(paths))
	}
	classes := map[int]int{}
	for _, p := range paths {
		st, ok := wantStatus[p]
		if !ok {
			t.Errorf("path %s: not one of locations.conf's", p)
		}
		classes[st/100]++
	}
	if classes[2] != 8 || classes[4] != 1 || classes[5] != 1 {
		t.Errorf("status classes %v, want 8 2xx, 1 4xx, 1 5xx", classes)
	}
	loc, err := os.ReadFile("locations.conf")
	if err != nil {
		t.Fatal(err)
	}
	for p := range wantStatus {
		if !strings.Contains(string(loc), "location = "+p+" {") {
			t.Errorf("locations.conf has no exact location for %s", p)
		}
	}
}

// bodySizes fetches each path once and returns its body's length.
func bodySizes(t *testing.T, n *testenv.Nginx) map[string]int64 {
	t.Helper()
	c := n.Client(t)
	sizes := map[string]int64{}
	for p, st := range wantStatus {
		resp, err := c.Get("http://" + testenv.NginxName + p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != st {
			t.Errorf("%s: %s, want %d", p, resp.Status, st)
		}
		if resp.Close {
			t.Errorf("%s: the server closes the connection; keep-alive must hold for every path", p)
		}
		sizes[p] = int64(len(b))
	}
	if sizes["/big"] != 20480 {
		t.Errorf("/big is %d bytes, want 20480", sizes["/big"])
	}
	return sizes
}

// h2load's mix over HTTP/1.1, HTTPS/1.1 and HTTPS/2: every status class
// is exactly the list's share, the body bytes are the sum of the pages',
// nothing errors, and each client keeps one connection (keep-alive). The
// workers run as the image's www-data.
func TestServerAnswersTheMix(t *testing.T) {
	ns := testenv.NewNetns(t)
	n := testenv.StartNginx(t, ns, testenv.NginxOptions{Workers: 2, User: "www-data"})
	checkWorkers(t, ns, "www-data", 2)
	sizes := bodySizes(t, n)
	paths := readPaths(t)
	var perPass int64
	for _, p := range paths {
		perPass += sizes[p]
	}
	const clients, passes = 4, 10 // passes of the list per client
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, tc := range []struct {
		scheme string
		port   uint16
		h1     bool
		proto  string
	}{{"http", 80, true, "http/1.1"}, {"https", 443, true, "http/1.1"}, {"https", 443, false, "h2"}} {
		before := n.Status(t)
		rep := testenv.RunH2load(ctx, t, testenv.H2loadOptions{
			URIs:      append([]string{tc.scheme + "://" + testenv.NginxName + paths[0]}, paths[1:]...),
			ConnectTo: netip.AddrPortFrom(n.Addr, tc.port), Requests: clients * passes * len(paths), Clients: clients, H1: tc.h1,
		})
		after := n.Status(t)
		what := fmt.Sprintf("%s %s", tc.scheme, tc.proto)
		total := clients * passes * len(paths)
		q := rep.Requests
		if q.Total != total || q.Done != total || q.Errored != 0 || q.Timeout != 0 {
			t.Errorf("%s: requests %+v, want %d done and none errored", what, q, total)
		}
		if rep.Status2xx != total*8/10 || rep.Status3xx != 0 || rep.Status4xx != total/10 || rep.Status5xx != total/10 {
			t.Errorf("%s: %d 2xx, %d 3xx, %d 4xx, %d 5xx; want %d, 0, %d, %d (the list's shares)",
				what, rep.Status2xx, rep.Status3xx, rep.Status4xx, rep.Status5xx, total*8/10, total/10, total/10)
		}
		if want := perPass * clients * passes; rep.TrafficData != want {
			t.Errorf("%s: %d body bytes, want %d", what, rep.TrafficData, want)
		}
		if rep.ApplicationProtocol != tc.proto || (tc.scheme == "https") != strings.HasPrefix(rep.TLSProtocol, "TLSv1.") {
			t.Errorf("%s: protocol %q over %q", what, rep.ApplicationProtocol, rep.TLSProtocol)
		}
		// One connection per client, and one for the second status request.
		if d := after.Accepts - before.Accepts; d != clients+1 {
			t.Errorf("%s: %d connections for %d clients; keep-alive must keep one per client", what, d, clients)
		}
	}
}

// checkWorkers checks that nginx's workers inside ns run as user.
func checkWorkers(t *testing.T, ns *testenv.Netns, user string, want int) {
	t.Helper()
	u, err := osuser.Lookup(user)
	if err != nil {
		t.Fatalf("user %s: %v", user, err)
	}
	out, err := exec.Command("ip", "netns", "pids", ns.Name).Output()
	if err != nil {
		t.Fatalf("ip netns pids: %v", err)
	}
	workers := 0
	for _, pid := range strings.Fields(string(out)) {
		cmdline, _ := os.ReadFile("/proc/" + pid + "/cmdline")
		if !strings.Contains(string(cmdline), "nginx: worker process") {
			continue
		}
		workers++
		status, _ := os.ReadFile("/proc/" + pid + "/status")
		if m := regexp.MustCompile(`(?m)^Uid:\s+(\d+)`).FindSubmatch(status); m == nil || string(m[1]) != u.Uid {
			t.Errorf("nginx worker %s runs as uid %q, want %s (%s)", pid, m, user, u.Uid)
		}
	}
	if workers != want {
		t.Errorf("%d nginx workers, want %d", workers, want)
	}
}

// The certificates: a CA, www.pano.test for a year, expiring.pano.test
// for five days; each name gets its own certificate by SNI, and a client
// naming neither gets the default server's.
func TestCertificatesAndSNI(t *testing.T) {
	ns := testenv.NewNetns(t)
	n := testenv.StartNginx(t, ns, testenv.NginxOptions{})
	now := time.Now()
	if d := n.NotAfter.Sub(now); d < 364*24*time.Hour || d > 366*24*time.Hour {
		t.Errorf("%s expires in %v, want a year", testenv.NginxName, d)
	}
	if d := n.ExpiringNotAfter.Sub(now); d < 4*24*time.Hour || d > 6*24*time.Hour {
		t.Errorf("%s expires in %v, want 5 days (4 to 6)", testenv.NginxExpiringName, d)
	}
	ca, err := testenv.ReadCertificate(n.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.IsCA || ca.NotAfter.Before(n.NotAfter) {
		t.Errorf("CA: IsCA %v, ends %v (before %v?)", ca.IsCA, ca.NotAfter, n.NotAfter)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)

	for _, tc := range []struct{ sni, want string }{
		{testenv.NginxName, testenv.NginxName},
		{testenv.NginxExpiringName, testenv.NginxExpiringName},
		{"", testenv.NginxName},
		{"other.pano.test", testenv.NginxName},
	} {
		conn, err := net.DialTimeout("tcp", n.HTTPS.String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// Verified below, against the name the server should have chosen
		// (an empty ServerName sends no SNI at all).
		tc2 := tls.Client(conn, &tls.Config{ServerName: tc.sni, InsecureSkipVerify: true})
		_ = tc2.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc2.Handshake(); err != nil {
			t.Fatalf("SNI %q: %v", tc.sni, err)
		}
		leaf := tc2.ConnectionState().PeerCertificates[0]
		tc2.Close()
		if !slices.Equal(leaf.DNSNames, []string{tc.want}) {
			t.Errorf("SNI %q: certificate for %v, want %s", tc.sni, leaf.DNSNames, tc.want)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: tc.want, Roots: pool}); err != nil {
			t.Errorf("SNI %q: %v", tc.sni, err)
		}
		wantEnd := map[string]time.Time{testenv.NginxName: n.NotAfter, testenv.NginxExpiringName: n.ExpiringNotAfter}[tc.want]
		if !leaf.NotAfter.Equal(wantEnd) {
			t.Errorf("SNI %q: served a certificate ending %v; the file ends %v", tc.sni, leaf.NotAfter, wantEnd)
		}
	}
}

// TLS 1.2 and 1.3 complete with both names; TLS 1.1 is refused by the
// server (its alert, not a client that never offered it).
func TestTLSVersions(t *testing.T) {
	ns := testenv.NewNetns(t)
	n := testenv.StartNginx(t, ns, testenv.NginxOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, v := range []string{"1.2", "1.3"} {
		for _, name := range []string{testenv.NginxName, testenv.NginxExpiringName} {
			h := testenv.OpenSSLHandshake(ctx, t, testenv.TLSHandshakeOptions{Addr: n.HTTPS, ServerName: name, Version: v, CAFile: n.CAFile})
			if !h.Established || h.Version != "TLSv"+v || !h.Verified || !strings.HasSuffix(h.PeerSubject, "CN = "+name) {
				t.Errorf("TLS %s with %s: %+v", v, name, h)
			}
		}
	}
	for _, v := range []string{"1", "1.1"} {
		h := testenv.OpenSSLHandshake(ctx, t, testenv.TLSHandshakeOptions{Addr: n.HTTPS, ServerName: testenv.NginxName, Version: v})
		if h.Established || h.Alert != "protocol version" {
			t.Errorf("TLS %s: %+v; want refused by the server's protocol_version alert", v, h)
		}
	}
}

// stageFiles returns what a Dockerfile stage COPYs and its ENTRYPOINT.
func stageFiles(t *testing.T, stage string) (files []string, entrypoint string) {
	t.Helper()
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	in := false
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 4 && f[0] == "FROM":
			in = strings.EqualFold(f[2], "AS") && f[3] == stage
		case in && len(f) >= 3 && f[0] == "COPY":
			files = append(files, f[1:len(f)-1]...)
			if f[len(f)-1] != "/demo2/" {
				t.Errorf("stage %s copies to %s, not /demo2/", stage, f[len(f)-1])
			}
		case in && len(f) >= 2 && f[0] == "ENTRYPOINT":
			entrypoint = strings.Trim(strings.Join(f[1:], " "), `[]"`)
		}
	}
	if len(files) == 0 {
		t.Fatalf("Dockerfile: stage %s copies nothing", stage)
	}
	return files, entrypoint
}

// imageDir copies a stage's files into a directory of their own, as the
// image holds them: a script that needs another file fails there.
func imageDir(t *testing.T, stage string) (dir, entrypoint string) {
	t.Helper()
	files, ep := stageFiles(t, stage)
	dir = t.TempDir()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("Dockerfile stage %s: %v", stage, err)
		}
		info, _ := os.Stat(f)
		if err := os.WriteFile(filepath.Join(dir, f), b, info.Mode()); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.HasPrefix(ep, "/demo2/") || !slices.Contains(files, strings.TrimPrefix(ep, "/demo2/")) {
		t.Fatalf("stage %s: entrypoint %q is not one of its files %v", stage, ep, files)
	}
	return dir, filepath.Join(dir, strings.TrimPrefix(ep, "/demo2/"))
}

// The web image's files alone make a configuration nginx accepts.
func TestWebImageFilesSuffice(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireProgram(t, "nginx", "nginx")
	testenv.RequireProgram(t, "openssl", "openssl")
	_, entry := imageDir(t, "web")
	out := t.TempDir()
	cmd := exec.Command(entry, "--config")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "WEB_DIR=" + out, "WEB_USER=root"}
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("web-run.sh --config from the image's files: %v\n%s", err, b)
	}
	if !strings.HasSuffix(strings.TrimSpace(string(b)), "\n"+filepath.Join(out, "nginx.conf")) {
		t.Errorf("web-run.sh --config did not end by printing the configuration's path:\n%s", b)
	}
	// nginx -t binds the ports: in a namespace of its own they are free.
	ns := testenv.NewNetns(t)
	if b, err := ns.Command(context.Background(), "nginx", "-t", "-p", out+"/", "-c", filepath.Join(out, "nginx.conf")).CombinedOutput(); err != nil {
		t.Errorf("nginx -t: %v\n%s", err, b)
	}
}

// runWebload runs the load image's entrypoint, from a copy of the
// image's files, with extra environment, bounded by a minute.
func runWebload(t *testing.T, env ...string) (string, int) {
	t.Helper()
	testenv.RequireProgram(t, "h2load", "nghttp2-client")
	testenv.RequireProgram(t, "openssl", "openssl")
	_, entry := imageDir(t, "webload")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, entry)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("webload-run.sh: %v", err)
	}
	return string(out), 0
}

var runMarker = regexp.MustCompile(`(?m)^== webload-run: run (\d+) (https|http|handshakes)(.*)$`)

// webloadReports splits webload-run.sh's output into its h2load reports
// (per run and scheme) and handshake lines (per run).
func webloadReports(t *testing.T, out string) (map[string]testenv.H2loadReport, map[string]string) {
	t.Helper()
	reports, handshakes := map[string]testenv.H2loadReport{}, map[string]string{}
	marks := runMarker.FindAllStringSubmatchIndex(out, -1)
	for i, m := range marks {
		run, kind := out[m[2]:m[3]], out[m[4]:m[5]]
		if kind == "handshakes" {
			handshakes[run] = strings.TrimPrefix(out[m[6]:m[7]], ": ")
			continue
		}
		end := len(out)
		if i+1 < len(marks) {
			end = marks[i+1][0]
		}
		rep, err := testenv.ParseH2load(out[m[1]:end])
		if err != nil {
			t.Fatalf("run %s %s: %v\n%s", run, kind, err, out[m[1]:end])
		}
		reports[run+" "+kind] = rep
	}
	return reports, handshakes
}

// The load image's entrypoint, two bounded runs against the real server:
// each run's reports hold exactly the list's shares, the handshake line
// counts what openssl did, and the server saw exactly those connections
// and requests.
func TestWebloadRunReportsEachRun(t *testing.T) {
	ns := testenv.NewNetns(t)
	n := testenv.StartNginx(t, ns, testenv.NginxOptions{Workers: 2})
	before, logged := n.Status(t), len(n.AccessLog(t))
	// 100 requests/s for 1 s with 2 clients: 100 requests (5 passes each).
	out, code := runWebload(t, "WEBLOAD_TARGET="+n.Addr.String(), "WEBLOAD_RATE=100", "WEBLOAD_CLIENTS=2",
		"WEBLOAD_DURATION=1", "WEBLOAD_RUNS=2", "WEBLOAD_HANDSHAKES=2", "WEBLOAD_REFUSED=1")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	after := n.Status(t)
	reports, handshakes := webloadReports(t, out)
	if len(reports) != 4 || len(handshakes) != 2 {
		t.Fatalf("%d reports and %d handshake lines, want 4 and 2 (two runs):\n%s", len(reports), len(handshakes), out)
	}
	for key, rep := range reports {
		if rep.Requests.Done != 100 || rep.Requests.Errored != 0 || rep.Status2xx != 80 || rep.Status4xx != 10 || rep.Status5xx != 10 {
			t.Errorf("%s: %+v, %d/%d/%d 2xx/4xx/5xx; want 100 done, 80/10/10", key, rep.Requests, rep.Status2xx, rep.Status4xx, rep.Status5xx)
		}
		if rep.ApplicationProtocol != "http/1.1" || strings.HasSuffix(key, "https") != (rep.TLSProtocol != "") {
			t.Errorf("%s: %q over %q", key, rep.ApplicationProtocol, rep.TLSProtocol)
		}
	}
	for run, h := range handshakes {
		if want := "TLSv1.2 4/4 established, TLSv1.3 4/4 established, TLSv1.1 1/1 refused"; h != want {
			t.Errorf("run %s: handshakes %q, want %q", run, h, want)
		}
	}
	// Per run: 2 + 2 h2load connections, 8 handshakes, 1 refused; and
	// the second status request.
	if d := after.Accepts - before.Accepts; d != 2*(4+8+1)+1 {
		t.Errorf("the server accepted %d connections, want %d", d, 2*(4+8+1)+1)
	}
	requests := n.AccessLog(t)[logged:]
	byPort := map[int]int{}
	for _, r := range requests {
		byPort[r.ServerPort]++
		if r.ServerPort == 443 && (r.ServerName != testenv.NginxName || r.TLSProtocol != "TLSv1.3") {
			t.Errorf("HTTPS request %+v: want SNI %s over TLSv1.3", r, testenv.NginxName)
		}
	}
	if byPort[80] != 200 || byPort[443] != 200 || len(requests) != 400 {
		t.Errorf("the server logged %v requests by port, want 200 on 80 and 200 on 443", byPort)
	}

	// HTTP/2 inside TLS when asked.
	out, code = runWebload(t, "WEBLOAD_TARGET="+n.Addr.String(), "WEBLOAD_RATE=40", "WEBLOAD_CLIENTS=2",
		"WEBLOAD_DURATION=1", "WEBLOAD_RUNS=1", "WEBLOAD_HANDSHAKES=0", "WEBLOAD_REFUSED=0", "WEBLOAD_HTTPS_PROTOCOL=h2")
	if code != 0 {
		t.Fatalf("h2: exit %d:\n%s", code, out)
	}
	reports, handshakes = webloadReports(t, out)
	if rep := reports["1 https"]; rep.ApplicationProtocol != "h2" || rep.Requests.Done != 40 || rep.Status5xx != 4 {
		t.Errorf("h2 run: %+v", rep)
	}
	if h := handshakes["1"]; h != "TLSv1.2 0/0 established, TLSv1.3 0/0 established, TLSv1.1 0/0 refused" {
		t.Errorf("h2 run: handshakes %q", h)
	}
}

// SIGTERM (docker stop) ends the runner at once with status 0, and takes
// h2load with it: the server's connections close.
func TestWebloadRunStopsCleanlyOnSIGTERM(t *testing.T) {
	testenv.RequireProgram(t, "h2load", "nghttp2-client")
	ns := testenv.NewNetns(t)
	n := testenv.StartNginx(t, ns, testenv.NginxOptions{})
	_, entry := imageDir(t, "webload")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, entry)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "WEBLOAD_TARGET=" + n.Addr.String(), "WEBLOAD_RATE=20", "WEBLOAD_DURATION=600"}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	output := make(chan string, 1)
	go func() { b, _ := io.ReadAll(bufio.NewReader(pr)); output <- string(b) }()

	// Running once both h2load processes hold their connections.
	deadline := time.Now().Add(20 * time.Second)
	for n.Status(t).Active < 1+2*4 {
		if time.Now().After(deadline) {
			t.Fatalf("h2load's 8 connections never showed (status %+v)", n.Status(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	werr := cmd.Wait()
	out := <-output
	if werr != nil {
		t.Fatalf("webload-run.sh did not stop cleanly on SIGTERM: %v\n%s", werr, out)
	}
	// Only the status request's own connection stays.
	for st := n.Status(t); st.Active != 1; st = n.Status(t) {
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("%d connections still open after the runner stopped: h2load outlived it", st.Active-1)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestScriptsRefuseBadSettings(t *testing.T) {
	testenv.RequireProgram(t, "bash", "bash")
	run := func(script string, env []string) (string, int) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// --config: web-run.sh would only write its files, were the
		// settings good; the others have no such mode and fail first.
		var args []string
		if script == "web-run.sh" {
			args = []string{"--config"}
		}
		cmd := exec.CommandContext(ctx, "./"+script, args...)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "WEB_DIR=" + t.TempDir()}, env...)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("%s: %v", script, err)
		}
		return string(out), 0
	}
	target := "WEBLOAD_TARGET=198.18.0.2"
	for _, tc := range []struct {
		script string
		env    []string
		want   string
	}{
		{"webload-run.sh", nil, "WEBLOAD_TARGET is not set"},
		{"webload-run.sh", []string{target, "WEBLOAD_RATE=fast"}, "WEBLOAD_RATE must be a whole number"},
		{"webload-run.sh", []string{target, "WEBLOAD_CLIENTS=0"}, "must be positive"},
		{"webload-run.sh", []string{target, "WEBLOAD_HANDSHAKES=-1"}, "WEBLOAD_HANDSHAKES must be a whole number"},
		{"webload-run.sh", []string{target, "WEBLOAD_HTTPS_PROTOCOL=h3"}, "must be h1 or h2"},
		{"webload-run.sh", []string{target, "WEBLOAD_PATHS=/nonexistent"}, "not readable"},
		{"webload-run.sh", []string{target, "WEBLOAD_PATHS=Dockerfile"}, "is not a path starting with /"},
		{"web-run.sh", []string{"WEB_WORKERS=0"}, "WEB_WORKERS must be a positive whole number"},
		{"web-run.sh", []string{"WEB_USER=no-such-user-pano"}, "WEB_USER 'no-such-user-pano' is no user"},
		{"web-run.sh", []string{"WEB_USER=root", "WEB_ACCESS_LOG=access.log"}, "WEB_ACCESS_LOG must be off or an absolute path"},
		{"web-run.sh", []string{"WEB_USER=root", "WEB_EXPIRING_DAYS=0"}, "WEB_EXPIRING_DAYS must be a positive whole number of days"},
		{"web-run.sh", []string{"WEB_USER=root", "WEB_CERT_DAYS=soon"}, "WEB_CERT_DAYS must be a positive whole number of days"},
		{"certs.sh", nil, "usage: certs.sh DIR"},
	} {
		out, code := run(tc.script, tc.env)
		if code != 2 || !strings.Contains(out, tc.want) {
			t.Errorf("%s %v: exit %d, output %q; want exit 2 and %q", tc.script, tc.env, code, out, tc.want)
		}
	}
}
