// Package demo1 holds the DNS demo's load: the dnsperf query list, the
// dnsperf runner and the offline DNS server. These tests run them for real
// (Debian's dnsperf and unbound) on loopback.
package demo1

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/pano-observability/pano/internal/testenv"
)

const queryFile = "queries.txt"

type query struct{ name, qtype string }

func readQueries(t *testing.T) []query {
	t.Helper()
	f, err := os.Open(queryFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var qs []query
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, ";") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			t.Fatalf("%s:%d: %q is not NAME TYPE", queryFile, n, line)
		}
		qs = append(qs, query{strings.ToLower(f[0]), f[1]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return qs
}

func isNX(name string) bool { return strings.HasPrefix(name, "pano-nxdomain-") }

// The list is what the demo promises: A and AAAA alternating, one query
// in five for a name that does not exist, names that exist on the public
// internet otherwise.
func TestQueryList(t *testing.T) {
	qs := readQueries(t)
	if len(qs) != 100 {
		t.Errorf("%d queries, want 100 (the README's shares assume it)", len(qs))
	}
	nx := 0
	for i, q := range qs {
		want := "A"
		if i%2 == 1 {
			want = "AAAA"
		}
		if q.qtype != want {
			t.Errorf("query %d (%s %s): type %s, want %s (A and AAAA alternate)", i+1, q.name, q.qtype, q.qtype, want)
		}
		if isNX(q.name) {
			nx++
			if !strings.HasSuffix(q.name, ".invalid") && !strings.Contains(q.name, ".example.") {
				t.Errorf("%s: a non-existent name must live under .invalid or example.{com,net,org}, which never exist", q.name)
			}
		} else if strings.Count(q.name, ".") < 1 {
			t.Errorf("%s: not a public name", q.name)
		}
	}
	if nx != 20 {
		t.Errorf("%d NXDOMAIN queries of %d, want 20", nx, len(qs))
	}
}

// offlineServer runs the offline demo's unbound, configured by
// unbound-run.sh from the query list, on 127.0.0.1 and a free port.
func offlineServer(t *testing.T) netip.AddrPort {
	t.Helper()
	testenv.RequireProgram(t, "unbound", "unbound")
	testenv.RequireProgram(t, "unbound-control", "unbound")
	var lastErr string
	for attempt := 0; attempt < 3; attempt++ {
		port := testenv.FreePort(t)
		dir := t.TempDir()
		env := append(os.Environ(),
			"DNS_LOCAL_ADDRS=127.0.0.1", fmt.Sprintf("DNS_LOCAL_PORT=%d", port), "DNS_LOCAL_USER=",
			"DNS_LOCAL_DIR="+dir, "DNS_LOCAL_QUERIES="+queryFile, "DNS_LOCAL_THREADS=1")
		ctx, cancel := context.WithCancel(context.Background())
		cmd := exec.CommandContext(ctx, "./unbound-run.sh")
		cmd.Env = env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = 5 * time.Second
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatalf("unbound-run.sh: %v", err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		t.Cleanup(func() {
			cancel()
			<-exited
		})
		// Ready when unbound-control reaches it (the compose health check).
		ready := false
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !ready; {
			select {
			case err := <-exited:
				exited <- err
				deadline = time.Now()
				continue
			case <-time.After(100 * time.Millisecond):
			}
			ready = exec.Command("unbound-control", "-c", filepath.Join(dir, "unbound.conf"), "status").Run() == nil
		}
		if ready {
			return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
		}
		cancel()
		<-exited
		exited <- nil
		lastErr = out.String()
	}
	t.Fatalf("unbound did not start:\n%s", lastErr)
	return netip.AddrPort{}
}

func TestOfflineServerAnswersTheQueryList(t *testing.T) {
	srv := offlineServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Each name of the list: documentation addresses, or NXDOMAIN.
	seen := map[string]bool{}
	i := 0
	for _, q := range readQueries(t) {
		if seen[q.name] {
			continue
		}
		seen[q.name] = true
		i++
		for _, qt := range []layers.DNSType{layers.DNSTypeA, layers.DNSTypeAAAA} {
			rc, addrs, err := testenv.DNSQuery(ctx, srv, q.name, qt)
			if err != nil {
				t.Fatalf("%s %v: %v", q.name, qt, err)
			}
			if isNX(q.name) {
				if rc != layers.DNSResponseCodeNXDomain || len(addrs) != 0 {
					t.Errorf("%s %v: %v %v, want NXDOMAIN", q.name, qt, rc, addrs)
				}
				continue
			}
			want := netip.MustParseAddr(fmt.Sprintf("192.0.2.%d", i))
			if qt == layers.DNSTypeAAAA {
				want = netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", i))
			}
			if rc != layers.DNSResponseCodeNoErr || len(addrs) != 1 || addrs[0] != want {
				t.Errorf("%s %v: %v %v, want NOERROR %v", q.name, qt, rc, addrs, want)
			}
		}
	}
	// Anything else: NXDOMAIN, never a lookup on the internet.
	for _, name := range []string{"www.example.net", "pano-not-in-the-list.org", "a.root-servers.net"} {
		rc, _, err := testenv.DNSQuery(ctx, srv, name, layers.DNSTypeA)
		if err != nil || rc != layers.DNSResponseCodeNXDomain {
			t.Errorf("%s: %v %v, want NXDOMAIN from local data only", name, rc, err)
		}
	}

	// dnsperf through the list three times: exactly 80% NOERROR, 20%
	// NXDOMAIN, nothing lost.
	rep := testenv.RunDNSPerf(ctx, t, testenv.DNSPerfOptions{Server: srv, QueryFile: queryFile, MaxQueries: 300, Timeout: 2 * time.Second})
	if rep.Sent != 300 || rep.Completed != 300 || rep.Lost != 0 {
		t.Errorf("dnsperf sent %d, completed %d, lost %d; want 300, 300, 0", rep.Sent, rep.Completed, rep.Lost)
	}
	if rep.RCodes["NOERROR"] != 240 || rep.RCodes["NXDOMAIN"] != 60 || len(rep.RCodes) != 2 {
		t.Errorf("return codes %v, want NOERROR 240, NXDOMAIN 60", rep.RCodes)
	}
}

// runScript runs one of the demo's scripts with extra environment.
func runScript(t *testing.T, script string, env ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "./"+script)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("%s: %v", script, err)
	}
	return string(out), 0
}

func TestDNSPerfRunReportsEachPeriod(t *testing.T) {
	testenv.RequireProgram(t, "dnsperf", "dnsperf")
	srv := offlineServer(t)
	out, code := runScript(t, "dnsperf-run.sh",
		"DNSPERF_SERVER="+srv.Addr().String(), fmt.Sprintf("DNSPERF_PORT=%d", srv.Port()),
		"DNSPERF_QPS=500", "DNSPERF_PERIOD=2", "DNSPERF_RUNS=2", "DNSPERF_QUERIES="+queryFile)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	reports := strings.Split(out, "Statistics:")
	if len(reports) != 3 {
		t.Fatalf("%d reports, want one per period (2):\n%s", len(reports)-1, out)
	}
	for _, r := range reports[1:] {
		rep, err := testenv.ParseDNSPerf("Statistics:" + r)
		if err != nil {
			t.Fatalf("report: %v\n%s", err, r)
		}
		// 500 queries/s for 2 s, each answered; one in five NXDOMAIN
		// (the list's order, so within one list's worth).
		if rep.Sent < 900 || rep.Sent > 1010 || rep.Lost != 0 {
			t.Errorf("sent %d lost %d, want about 1000 and 0", rep.Sent, rep.Lost)
		}
		if nx := rep.RCodes["NXDOMAIN"]; nx < rep.Completed/5-20 || nx > rep.Completed/5+20 {
			t.Errorf("NXDOMAIN %d of %d, want a fifth", nx, rep.Completed)
		}
	}
}

func TestDNSPerfRunStopsCleanlyOnSIGTERM(t *testing.T) {
	testenv.RequireProgram(t, "dnsperf", "dnsperf")
	srv := offlineServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "./dnsperf-run.sh")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "DNSPERF_SERVER=" + srv.Addr().String(),
		fmt.Sprintf("DNSPERF_PORT=%d", srv.Port()), "DNSPERF_QPS=100", "DNSPERF_PERIOD=600", "DNSPERF_QUERIES=" + queryFile}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	var out bytes.Buffer
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "Sending queries") {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("dnsperf-run.sh did not stop cleanly on SIGTERM: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "Statistics:") {
		t.Errorf("no final report after SIGTERM:\n%s", out.String())
	}
}

func TestScriptsRefuseBadSettings(t *testing.T) {
	for _, tc := range []struct {
		script string
		env    []string
		want   string
	}{
		{"dnsperf-run.sh", nil, "DNSPERF_SERVER is not set"},
		{"dnsperf-run.sh", []string{"DNSPERF_SERVER=127.0.0.1", "DNSPERF_QPS=fast"}, "qps must be a whole number"},
		{"dnsperf-run.sh", []string{"DNSPERF_SERVER=127.0.0.1", "DNSPERF_QPS=0"}, "must be positive"},
		{"dnsperf-run.sh", []string{"DNSPERF_SERVER=127.0.0.1", "DNSPERF_QUERIES=/nonexistent"}, "not readable"},
		{"unbound-run.sh", []string{"DNS_LOCAL_PORT=x"}, "DNS_LOCAL_PORT must be a number"},
		{"unbound-run.sh", []string{"DNS_LOCAL_THREADS=0", "DNS_LOCAL_QUERIES=" + queryFile}, "DNS_LOCAL_THREADS"},
		{"unbound-run.sh", []string{"DNS_LOCAL_QUERIES=/nonexistent"}, "not readable"},
		{"unbound-run.sh", []string{"DNS_LOCAL_ADDRS= ", "DNS_LOCAL_QUERIES=" + queryFile}, "DNS_LOCAL_ADDRS is empty"},
	} {
		out, code := runScript(t, tc.script, tc.env...)
		if code != 2 || !strings.Contains(out, tc.want) {
			t.Errorf("%s %v: exit %d, output %q; want exit 2 and %q", tc.script, tc.env, code, out, tc.want)
		}
	}
}
