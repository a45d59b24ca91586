package testenv

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The server names demo2's web server answers for (demo2/certs.sh and
// demo2/nginx.conf). StartNginx checks the certificates still name them.
const (
	// NginxName is the default server, over HTTP and HTTPS; its
	// certificate is valid for a year.
	NginxName = "www.pano.test"
	// NginxExpiringName is served over HTTPS only, chosen by SNI; its
	// certificate expires a few days after the start.
	NginxExpiringName = "expiring.pano.test"
)

// Nginx is demo2's web server running inside a Netns: demo2/web-run.sh,
// the pano-web image's entrypoint, writes its nginx.conf, pages and fresh
// certificates (demo2/certs.sh) and runs Debian's nginx, so that a test
// exercises the image's very recipe.
type Nginx struct {
	Addr        netip.Addr     // the namespace's PeerIP; nginx listens on every address
	HTTP, HTTPS netip.AddrPort // port 80 and port 443 on Addr

	// Dir is WEB_DIR: configuration, pages, certificates, pid.
	Dir string
	// CAFile is the CA that signed both server certificates.
	CAFile string
	// CertFile is NginxName's certificate, ExpiringCertFile
	// NginxExpiringName's; NotAfter and ExpiringNotAfter are their ends.
	CertFile, ExpiringCertFile string
	NotAfter, ExpiringNotAfter time.Time
	// AccessLogPath is the access log (the "pano" format, AccessLog).
	AccessLogPath string
	// LogPath holds web-run.sh's and nginx's output.
	LogPath string
	// Pid is nginx's master process.
	Pid int

	ns *Netns
}

// NginxOptions tunes StartNginx; the zero value is fine.
type NginxOptions struct {
	Workers int // WEB_WORKERS, default 1
	// User is WEB_USER, whom the workers run as: "" is root, the owner of
	// the test's directories; another user (the image's www-data) gets
	// the directory opened to all, as the image's /run/pano-web is.
	User string
	// ExpiringDays is WEB_EXPIRING_DAYS; 0 leaves certs.sh's default.
	ExpiringDays int
}

// StartNginx runs demo2/web-run.sh inside ns until the test ends, with
// its files in a directory of the test's own. It returns once nginx
// answers / over HTTP and HTTPS; its output is printed if the test fails.
func StartNginx(t testing.TB, ns *Netns, opts NginxOptions) *Nginx {
	t.Helper()
	RequireProgram(t, "nginx", "nginx")
	RequireProgram(t, "openssl", "openssl")
	RequireProgram(t, "bash", "bash")
	script := filepath.Join(RepoRoot(t), "demo2", "web-run.sh")
	if opts.Workers <= 0 {
		opts.Workers = 1
	}
	dir := t.TempDir()
	if opts.User == "" {
		opts.User = "root"
	} else {
		for _, d := range []string{dir, filepath.Dir(dir)} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatalf("demo2 web server: %v", err)
			}
		}
	}
	n := &Nginx{
		Addr:             ns.PeerIP,
		HTTP:             netip.AddrPortFrom(ns.PeerIP, 80),
		HTTPS:            netip.AddrPortFrom(ns.PeerIP, 443),
		Dir:              dir,
		CAFile:           filepath.Join(dir, "certs", "ca.crt"),
		CertFile:         filepath.Join(dir, "certs", "www.crt"),
		ExpiringCertFile: filepath.Join(dir, "certs", "expiring.crt"),
		AccessLogPath:    filepath.Join(dir, "access.log"),
		LogPath:          filepath.Join(dir, "web-run.log"),
		ns:               ns,
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "WEB_DIR=" + dir, "WEB_USER=" + opts.User,
		"WEB_WORKERS=" + strconv.Itoa(opts.Workers), "WEB_ACCESS_LOG=" + n.AccessLogPath}
	if opts.ExpiringDays > 0 {
		env = append(env, "WEB_EXPIRING_DAYS="+strconv.Itoa(opts.ExpiringDays))
	}
	cmd := ns.Command(context.Background(), script)
	cmd.Env = env
	p, err := svcStart("nginx", n.LogPath, cmd)
	if err != nil {
		t.Fatalf("demo2 web server: %v", err)
	}
	n.Pid = cmd.Process.Pid
	svcLogOnFailure(t, "demo2 web server", n.LogPath, 60)
	t.Cleanup(func() { p.stop(10 * time.Second) })

	// The client is made once web-run.sh has written the CA.
	var client *http.Client
	probes := 0 // requests nginx answered, each a line in its access log
	defer func() {
		if client != nil {
			client.CloseIdleConnections()
		}
	}()
	err = svcWait(p, 30*time.Second, func(ctx context.Context) error {
		if client == nil {
			c, err := n.newClient()
			if err != nil {
				return err
			}
			client = c
		}
		for _, u := range []string{"http://" + NginxName + "/", "https://" + NginxName + "/"} {
			answered, err := nginxGetOK(ctx, client, u)
			if answered {
				probes++
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("demo2 web server in %s: %v\n%s", ns.Name, err, svcLogTail(n.LogPath, 30))
	}
	// nginx logs a request after answering it: wait for the probes' lines,
	// so that a test counting the log from now on counts its own requests.
	for deadline := time.Now().Add(10 * time.Second); len(n.AccessLog(t)) < probes; {
		if time.Now().After(deadline) {
			t.Fatalf("demo2 web server: %d probe requests answered, %d in the access log", probes, len(n.AccessLog(t)))
		}
		time.Sleep(10 * time.Millisecond)
	}

	for _, c := range []struct {
		path, name string
		notAfter   *time.Time
	}{{n.CertFile, NginxName, &n.NotAfter}, {n.ExpiringCertFile, NginxExpiringName, &n.ExpiringNotAfter}} {
		cert, err := ReadCertificate(c.path)
		if err != nil {
			t.Fatalf("demo2 web server: %v", err)
		}
		if !slices.Equal(cert.DNSNames, []string{c.name}) {
			t.Fatalf("%s names %v; testenv expects %s: update NginxName/NginxExpiringName with demo2/certs.sh", c.path, cert.DNSNames, c.name)
		}
		*c.notAfter = cert.NotAfter
	}
	return n
}

// nginxGetOK asks for url and fails unless the answer is 200; answered
// says whether nginx answered at all (and so logs the request).
func nginxGetOK(ctx context.Context, c *http.Client, url string) (answered bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return true, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return true, nil
}

// ReadCertificate parses the first PEM certificate of a file.
func ReadCertificate(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cert, nil
}

// Client returns an HTTP client that sends every request to this server
// whatever the URL's host (http:// to port 80, https:// to 443), so that
// URLs carry the server names, for the Host header and SNI. It trusts
// the demo's CA only and keeps connections alive.
func (n *Nginx) Client(t testing.TB) *http.Client {
	t.Helper()
	c, err := n.newClient()
	if err != nil {
		t.Fatalf("demo2 web server client: %v", err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func (n *Nginx) newClient() (*http.Client, error) {
	b, err := os.ReadFile(n.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no certificate", n.CAFile)
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			return dialer.DialContext(ctx, "tcp", net.JoinHostPort(n.Addr.String(), port))
		},
		TLSClientConfig:     &tls.Config{RootCAs: pool},
		MaxIdleConnsPerHost: 4,
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}

// NginxStatus is nginx's stub_status: counters since the start.
type NginxStatus struct {
	Active                     int // open client connections
	Accepts, Handled, Requests int
	Reading, Writing, Waiting  int
}

// Status asks /nginx_status, which answers the namespace's own loopback
// only (as the compose health check asks it inside the container). The
// request itself is counted in Requests and Accepts.
func (n *Nginx) Status(t testing.TB) NginxStatus {
	t.Helper()
	var conn net.Conn
	err := n.ns.do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp", "127.0.0.1:80", 5*time.Second)
		return err
	})
	if err != nil {
		t.Fatalf("nginx status: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET /nginx_status HTTP/1.0\r\nHost: %s\r\n\r\n", NginxName); err != nil {
		t.Fatalf("nginx status: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("nginx status: %v", err)
	}
	defer resp.Body.Close()
	var body strings.Builder
	if _, err := bufio.NewReader(resp.Body).WriteTo(&body); err != nil {
		t.Fatalf("nginx status: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("nginx status: %s\n%s", resp.Status, body.String())
	}
	st, err := ParseNginxStatus(body.String())
	if err != nil {
		t.Fatalf("nginx status: %v\n%s", err, body.String())
	}
	return st
}

// ParseNginxStatus parses stub_status's page:
//
//	Active connections: 1
//	server accepts handled requests
//	 4 4 8
//	Reading: 0 Writing: 1 Waiting: 0
func ParseNginxStatus(s string) (NginxStatus, error) {
	var st NginxStatus
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) != 4 {
		return st, fmt.Errorf("stub_status: %d lines, want 4", len(lines))
	}
	if _, err := fmt.Sscanf(strings.TrimSpace(lines[0]), "Active connections: %d", &st.Active); err != nil {
		return st, fmt.Errorf("stub_status line 1 %q: %w", lines[0], err)
	}
	if strings.TrimSpace(lines[1]) != "server accepts handled requests" {
		return st, fmt.Errorf("stub_status line 2 %q", lines[1])
	}
	if _, err := fmt.Sscanf(strings.TrimSpace(lines[2]), "%d %d %d", &st.Accepts, &st.Handled, &st.Requests); err != nil {
		return st, fmt.Errorf("stub_status line 3 %q: %w", lines[2], err)
	}
	if _, err := fmt.Sscanf(strings.TrimSpace(lines[3]), "Reading: %d Writing: %d Waiting: %d", &st.Reading, &st.Writing, &st.Waiting); err != nil {
		return st, fmt.Errorf("stub_status line 4 %q: %w", lines[3], err)
	}
	return st, nil
}

// NginxRequest is one line of the access log in demo2's "pano" format.
type NginxRequest struct {
	Time        time.Time
	Remote      netip.Addr
	Connection  int    // nginx's connection serial number
	ConnRequest int    // this request's number on its connection, from 1
	ServerPort  int    // 80 or 443
	TLSProtocol string // "TLSv1.3"; "" over HTTP
	ServerName  string // SNI; "" without
	Method, URI string
	Status      int
	BodyBytes   int64
	RequestTime time.Duration // nginx's $request_time (millisecond resolution)
}

// AccessLog reads and parses the access log written so far.
func (n *Nginx) AccessLog(t testing.TB) []NginxRequest {
	t.Helper()
	b, err := os.ReadFile(n.AccessLogPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatalf("access log: %v", err)
	}
	var out []NginxRequest
	for i, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if l == "" {
			continue
		}
		r, err := ParseNginxAccess(l)
		if err != nil {
			t.Fatalf("%s:%d: %v", n.AccessLogPath, i+1, err)
		}
		out = append(out, r)
	}
	return out
}

// ParseNginxAccess parses one line of demo2/nginx.conf's "pano" format:
// time, remote address, connection, request on the connection, server
// port, TLS protocol, SNI, method, URI, status, body bytes, request time,
// separated by tabs ("-" for an empty value).
func ParseNginxAccess(line string) (NginxRequest, error) {
	var r NginxRequest
	f := strings.Split(line, "\t")
	if len(f) != 12 {
		return r, fmt.Errorf("access log line has %d fields, want 12 (demo2/nginx.conf's log_format pano): %q", len(f), line)
	}
	dash := func(s string) string {
		if s == "-" {
			return ""
		}
		return s
	}
	var err error
	if r.Time, err = time.Parse(time.RFC3339, f[0]); err != nil {
		return r, fmt.Errorf("time: %w", err)
	}
	if r.Remote, err = netip.ParseAddr(f[1]); err != nil {
		return r, fmt.Errorf("remote address: %w", err)
	}
	ints := []struct {
		s    string
		into *int
		name string
	}{{f[2], &r.Connection, "connection"}, {f[3], &r.ConnRequest, "connection request"}, {f[4], &r.ServerPort, "server port"}, {f[9], &r.Status, "status"}}
	for _, v := range ints {
		if *v.into, err = strconv.Atoi(v.s); err != nil || *v.into < 0 {
			return r, fmt.Errorf("%s %q is no count", v.name, v.s)
		}
	}
	r.TLSProtocol, r.ServerName, r.Method, r.URI = dash(f[5]), dash(f[6]), f[7], f[8]
	if r.BodyBytes, err = strconv.ParseInt(f[10], 10, 64); err != nil || r.BodyBytes < 0 {
		return r, fmt.Errorf("body bytes %q is no count", f[10])
	}
	secs, err := strconv.ParseFloat(f[11], 64)
	if err != nil || secs < 0 {
		return r, fmt.Errorf("request time %q", f[11])
	}
	r.RequestTime = time.Duration(secs * float64(time.Second))
	return r, nil
}
