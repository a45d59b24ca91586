package zeekpackage_test

// The packet source under real Zeek, started by the image's entrypoint,
// when things go wrong around it: SIGTERM on an idle stream, the server
// restarted, the server vanishing without a FIN or RST, a host name whose
// resolution hangs.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/pano-observability/pano/internal/testenv"
	pcapovertcp "github.com/pano-observability/pano/pcap-over-tcp"
)

// The addresses of the DNS conversations the tests make up; they only
// exist inside the PCAP streams.
var (
	dnsClientIP = netip.MustParseAddr("192.0.2.10")
	dnsServerIP = netip.MustParseAddr("192.0.2.53")
	dnsAnswerIP = netip.MustParseAddr("198.51.100.7")
)

// dnsFrame builds one Ethernet frame of a DNS conversation between
// dnsClientIP:port and dnsServerIP:53: the query, or its NOERROR response
// with one A record.
func dnsFrame(t *testing.T, port, id uint16, name string, response bool) []byte {
	t.Helper()
	src, dst := dnsClientIP, dnsServerIP
	udp := &layers.UDP{SrcPort: layers.UDPPort(port), DstPort: 53}
	if response {
		src, dst = dst, src
		udp.SrcPort, udp.DstPort = udp.DstPort, udp.SrcPort
	}
	eth := &layers.Ethernet{
		SrcMAC:       net.HardwareAddr{0x02, 0, 0, 0, 0, 1},
		DstMAC:       net.HardwareAddr{0x02, 0, 0, 0, 0, 2},
		EthernetType: layers.EthernetTypeIPv4,
	}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	q := layers.DNSQuestion{Name: []byte(name), Type: layers.DNSTypeA, Class: layers.DNSClassIN}
	dns := &layers.DNS{ID: id, RD: true, OpCode: layers.DNSOpCodeQuery, Questions: []layers.DNSQuestion{q}}
	if response {
		dns.QR, dns.RA = true, true
		dns.Answers = []layers.DNSResourceRecord{{Name: q.Name, Type: layers.DNSTypeA, Class: layers.DNSClassIN, TTL: 60, IP: dnsAnswerIP.AsSlice()}}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, dns); err != nil {
		t.Fatalf("dns frame: %v", err)
	}
	return buf.Bytes()
}

// txnSeq gives every conversation its own client port and query ID, so
// that Zeek sees each as a connection of its own.
var txnSeq struct {
	sync.Mutex
	n uint16
}

// sendDNS writes a query for name, timestamped now, and its response a
// millisecond later unless unanswered.
func sendDNS(t *testing.T, srv *pcapovertcp.Server, name string, answered bool) {
	t.Helper()
	txnSeq.Lock()
	txnSeq.n++
	n := txnSeq.n
	txnSeq.Unlock()
	port, id := 20000+n, 0x1000+n
	now := time.Now()
	frames := [][]byte{dnsFrame(t, port, id, name, false)}
	if answered {
		frames = append(frames, dnsFrame(t, port, id, name, true))
	}
	for i, f := range frames {
		srv.WritePacket(pcapovertcp.CaptureInfo{
			Timestamp:     now.Add(time.Duration(i) * time.Millisecond),
			CaptureLength: len(f),
			Length:        len(f),
		}, f)
	}
}

// dnsRecords reads a worker's dns.log and the files Zeek rotated it to
// (JSON, one record a line), by query name. The image rotates hourly and
// at exit, so a test may see its records in either.
func dnsRecords(t *testing.T, dir string) map[string]map[string]any {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "dns.*.log"))
	files = append(files, filepath.Join(dir, "dns.log"))
	recs := map[string]map[string]any{}
	for _, path := range files {
		b, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			var r map[string]any
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				continue // a line being written
			}
			if q, ok := r["query"].(string); ok {
				recs[q] = r
			}
		}
	}
	return recs
}

// dumpDNS returns the dns logs of dir, for a failure message.
func dumpDNS(dir string) string {
	files, _ := filepath.Glob(filepath.Join(dir, "dns*.log"))
	var b strings.Builder
	for _, f := range files {
		c, _ := os.ReadFile(f)
		fmt.Fprintf(&b, "%s:\n%s\n", f, c)
	}
	return b.String()
}

// waitDNS waits up to timeout for a dns.log record of name.
func waitDNS(t *testing.T, dir, name string, timeout time.Duration) map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if r, ok := dnsRecords(t, dir)[name]; ok {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dns.log record for %s within %s:\n%s", name, timeout, dumpDNS(dir))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// reporterMessages returns the messages of reporter.log in order, those
// of the files Zeek rotated it to (hourly, on the hour, in the image)
// first.
func reporterMessages(t *testing.T, dir string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "reporter.*.log"))
	slices.Sort(files) // reporter.YYYY-MM-DD-hh-mm-ss.log
	files = append(files, filepath.Join(dir, "reporter.log"))
	var msgs []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			var r struct {
				Message string `json:"message"`
			}
			if json.Unmarshal([]byte(l), &r) == nil && r.Message != "" {
				msgs = append(msgs, r.Message)
			}
		}
	}
	return msgs
}

// countMessages counts the reporter.log messages containing s.
func countMessages(msgs []string, s string) int {
	n := 0
	for _, m := range msgs {
		if strings.Contains(m, s) {
			n++
		}
	}
	return n
}

// waitMessages waits up to timeout until reporter.log holds at least n
// messages containing s, and returns the n-th.
func waitMessages(t *testing.T, dir, s string, n int, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msgs := reporterMessages(t, dir)
		var found []string
		for _, m := range msgs {
			if strings.Contains(m, s) {
				found = append(found, m)
			}
		}
		if len(found) >= n {
			return found[n-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("reporter.log: fewer than %d messages with %q after %s:\n%s", n, s, timeout, strings.Join(msgs, "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitAccepted waits until srv has accepted n connections in all.
func waitAccepted(t *testing.T, srv *pcapovertcp.Server, n uint64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for srv.Stats().Accepted < n {
		if time.Now().After(deadline) {
			t.Fatalf("the server accepted %d connections within %s, want %d", srv.Stats().Accepted, timeout, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startServers starts n real PCAP-over-TCP servers on consecutive ports
// of host (the agent's stream i on port+i) and returns them and the first
// port.
func startServers(t *testing.T, host string, n int) ([]*pcapovertcp.Server, int) {
	t.Helper()
	for attempt := 0; attempt < 20; attempt++ {
		port := testenv.FreePort(t)
		var lns []net.Listener
		for i := 0; i < n; i++ {
			ln, err := net.Listen("tcp", net.JoinHostPort(host, fmt.Sprint(port+i)))
			if err != nil {
				break
			}
			lns = append(lns, ln)
		}
		ok := len(lns) == n
		for _, ln := range lns {
			ln.Close()
		}
		if !ok {
			continue
		}
		var srvs []*pcapovertcp.Server
		for i := 0; i < n; i++ {
			srv, _ := startRealServer(t, pcapovertcp.ServerConfig{Addr: net.JoinHostPort(host, fmt.Sprint(port+i))})
			srvs = append(srvs, srv)
		}
		return srvs, port
	}
	t.Fatalf("no %d consecutive free ports on %s", n, host)
	return nil, 0
}

// workerLogDir is where worker i of n writes its logs (entrypoint.sh).
func workerLogDir(z *testenv.Zeek, i, n int) string {
	if n == 1 {
		return z.LogDir
	}
	return filepath.Join(z.LogDir, fmt.Sprintf("worker-%d", i))
}

// Issue #15: docker stop must not take Zeek's whole grace period, and what
// Zeek saw before the stream went quiet must reach its logs: the answered
// transaction (logged when its response was seen) and the query that never
// got one (logged when Zeek flushes its connections at exit).
func TestSIGTERMWithIdleStream(t *testing.T) {
	img := testenv.CachedZeekImage(t)
	for _, workers := range []int{1, 2} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			srvs, port := startServers(t, "127.0.0.1", workers)
			z := testenv.StartZeek(t, img, testenv.ZeekOptions{Port: port, Workers: workers})
			for _, srv := range srvs {
				waitAccepted(t, srv, 1, 30*time.Second)
			}
			for i, srv := range srvs {
				sendDNS(t, srv, fmt.Sprintf("answered-%d.pano.test", i), true)
				sendDNS(t, srv, fmt.Sprintf("unanswered-%d.pano.test", i), false)
			}
			for i, srv := range srvs {
				waitFor(t, fmt.Sprintf("stream %d to be sent", i), func() bool { return srv.Stats().SentPackets == 3 })
			}
			// The stream goes quiet; Zeek sits in its poll.
			time.Sleep(3 * time.Second)
			took, err := z.Stop(30 * time.Second)
			t.Logf("%d worker(s): exited %s after SIGTERM (%v)", workers, took.Round(time.Millisecond), err)
			if err != nil {
				t.Fatalf("exit after SIGTERM: %v", err)
			}
			if took > 5*time.Second {
				t.Errorf("Zeek took %s to exit after SIGTERM, want at most 5s", took)
			}
			for i := 0; i < workers; i++ {
				dir := workerLogDir(z, i, workers)
				recs := dnsRecords(t, dir)
				if len(recs) != 2 {
					t.Errorf("worker %d: %d dns.log records, want 2:\n%s", i, len(recs), dumpDNS(dir))
				}
				a, ok := recs[fmt.Sprintf("answered-%d.pano.test", i)]
				if !ok || a["rcode_name"] != "NOERROR" || a["answers"] == nil {
					t.Errorf("worker %d: the answered transaction is not in dns.log with its response: %v", i, a)
				}
				u, ok := recs[fmt.Sprintf("unanswered-%d.pano.test", i)]
				if !ok || u["rcode"] != nil {
					t.Errorf("worker %d: the unanswered query is not in dns.log without rcode: %v", i, u)
				}
			}
		})
	}
}

// Issue #15: the agent restarted. Zeek keeps running, reports the outage
// and the reconnection, and, since its last connection was a healthy
// stream, retries at least every second (PcapOverTcp::reconnect_max_healthy)
// instead of a backoff that had grown to seconds: what the restarted agent
// captures two seconds later is in dns.log.
func TestServerRestartReconnectsPromptly(t *testing.T) {
	img := testenv.CachedZeekImage(t)
	srv, stop := startRealServer(t, pcapovertcp.ServerConfig{Addr: "127.0.0.1:0"})
	addr := srv.Addr().String()
	// Rotation every 2 s: the image rotates hourly, on the hour, and a run
	// across the hour must not lose lines (it did, before the test read
	// the rotated files).
	z := testenv.StartZeek(t, img, testenv.ZeekOptions{Port: srv.Addr().(*net.TCPAddr).Port, Env: []string{"ZEEK_ROTATION_INTERVAL=2secs"}})
	dnsLog := z.LogDir
	waitAccepted(t, srv, 1, 30*time.Second)
	sendDNS(t, srv, "before-restart.pano.test", true)
	waitDNS(t, dnsLog, "before-restart.pano.test", 20*time.Second)

	// Stop the server and keep it away long enough for a doubling backoff
	// from 100 ms to be waiting 6.4 s when it comes back (attempts at
	// 0.1, 0.3, 0.7, 1.5, 3.1, 6.3, then 12.7 s).
	stop()
	time.Sleep(8 * time.Second)
	if done, err := z.Exited(); done {
		t.Fatalf("Zeek exited while the server was away: %v", err)
	}
	srv2, _ := startRealServer(t, pcapovertcp.ServerConfig{Addr: addr})
	restarted := time.Now()
	waitAccepted(t, srv2, 1, 2*time.Second)
	t.Logf("reconnected %s after the restart", time.Since(restarted).Round(time.Millisecond))
	sendDNS(t, srv2, "after-restart.pano.test", true)
	waitDNS(t, dnsLog, "after-restart.pano.test", 20*time.Second)

	waitMessages(t, z.LogDir, "pcap stream", 2, 10*time.Second)
	msgs := reporterMessages(t, z.LogDir)
	if countMessages(msgs, "server closed the connection") != 1 || countMessages(msgs, "pcap stream") != 2 {
		t.Errorf("reporter.log does not tell the disconnection and the reconnection:\n%s", strings.Join(msgs, "\n"))
	}
	if done, err := z.Exited(); done {
		t.Fatalf("Zeek exited: %v", err)
	}
}

// nft runs nft inside a namespace.
func nft(t *testing.T, ns *testenv.Netns, args ...string) {
	t.Helper()
	ns.Exec(t, "nft", args...)
}

// Issue #15: the server's side vanishes without a FIN or RST (its host
// crashed, a firewall dropped the flow). The agent sends nothing when
// there is no traffic, so silence alone proves nothing; TCP keepalive
// probes, answered by a live peer's kernel, do. Zeek runs in a network
// namespace of its own as the container does, the server in the root
// namespace; after a quiet spell that must not be taken for a dead peer,
// nftables in Zeek's namespace drops everything. Zeek must notice within
// 60 s, keep trying (each attempt abandoned after a while), and reconnect
// once the path is back.
func TestHalfOpenConnectionIsDetected(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireProgram(t, "nft", "nftables")
	img := testenv.CachedZeekImage(t)
	ns := testenv.NewNetns(t)
	srv, _ := startRealServer(t, pcapovertcp.ServerConfig{Addr: netip.AddrPortFrom(ns.HostIP, 0).String()})
	port := srv.Addr().(*net.TCPAddr).Port
	z := testenv.StartZeek(t, img, testenv.ZeekOptions{Addr: ns.HostIP.String(), Port: port, Netns: ns.Name})
	dnsLog := z.LogDir
	waitAccepted(t, srv, 1, 30*time.Second)
	sendDNS(t, srv, "before-cut.pano.test", true)
	waitDNS(t, dnsLog, "before-cut.pano.test", 20*time.Second)

	// A quiet stream to a live server is not a dead one: the server's
	// kernel answers the probes. Stay idle past the time after which an
	// unanswered connection is dropped (25 s).
	time.Sleep(35 * time.Second)
	if m := reporterMessages(t, z.LogDir); countMessages(m, "pcap stream") != 1 || srv.Stats().Accepted != 1 {
		t.Fatalf("an idle healthy stream was dropped:\n%s", strings.Join(m, "\n"))
	}

	nft(t, ns, "add", "table", "inet", "panocut")
	nft(t, ns, "add", "chain", "inet", "panocut", "in", "{ type filter hook input priority -300; policy drop; }")
	nft(t, ns, "add", "chain", "inet", "panocut", "out", "{ type filter hook output priority -300; policy drop; }")
	cut := time.Now()
	msg := waitMessages(t, z.LogDir, ": read: ", 1, 65*time.Second)
	detected := time.Since(cut)
	t.Logf("half-open connection noticed %s after the cut: %s", detected.Round(time.Millisecond), msg)
	if detected > 60*time.Second {
		t.Errorf("the dead connection was noticed %s after the cut, want within 60s", detected)
	}

	// Connection attempts into the void are abandoned, not left hanging
	// for the kernel's two minutes of SYN retries.
	waitMessages(t, z.LogDir, "no answer within", 1, 20*time.Second)

	nft(t, ns, "delete", "table", "inet", "panocut")
	restored := time.Now()
	waitAccepted(t, srv, 2, 30*time.Second)
	t.Logf("reconnected %s after the path came back", time.Since(restored).Round(time.Millisecond))
	waitMessages(t, z.LogDir, "pcap stream", 2, 10*time.Second)
	sendDNS(t, srv, "after-cut.pano.test", true)
	waitDNS(t, dnsLog, "after-cut.pano.test", 20*time.Second)
	if done, err := z.Exited(); done {
		t.Fatalf("Zeek exited: %v", err)
	}
}

// tickScript makes Zeek append the wall-clock time to path every 200 ms of
// network time (a timer); with no packets, live Zeek advances network
// time with the clock, so ticks come as long as the main loop runs.
const tickScript = `
global ticks = open(%q);
event pano_tick() {
	print ticks, fmt("%%.3f", current_time());
	schedule 200msec { pano_tick() };
}
event zeek_init() {
	set_buf(ticks, F);
	schedule 200msec { pano_tick() };
}
`

// readTicks returns the times written by tickScript.
func readTicks(t *testing.T, path string) []time.Time {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []time.Time
	for _, l := range strings.Fields(string(b)) {
		var f float64
		if _, err := fmt.Sscanf(l, "%f", &f); err == nil {
			out = append(out, time.Unix(0, int64(f*1e9)))
		}
	}
	return out
}

// Issue #15: the source's target is a host name and name resolution hangs
// (a DNS server that never answers). Zeek's main loop must keep running
// meanwhile. Zeek runs in a namespace whose resolv.conf (ip netns exec
// bind-mounts /etc/netns/<name>/resolv.conf) names a resolver of the
// test's that reads queries and never answers, each lookup waiting 30 s.
//
// Proof that the main loop is not stuck: a timer of a script keeps firing
// while the test resolver holds a query of Zeek's unanswered (a blocking
// getaddrinfo in the source's Open() or in the loop would stop every
// timer), and SIGTERM, which Zeek handles in its main loop, ends Zeek
// within 5 s although the lookup still has most of its 30 s to go.
func TestHostnameResolutionDoesNotBlockZeek(t *testing.T) {
	testenv.RequireRoot(t)
	img := testenv.CachedZeekImage(t)
	ns := testenv.NewNetns(t)
	resolver := ns.ListenUDP(t, netip.AddrPortFrom(ns.PeerIP, 53))
	var mu sync.Mutex
	var queries []time.Time
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := resolver.ReadFrom(buf); err != nil {
				return
			}
			mu.Lock()
			queries = append(queries, time.Now())
			mu.Unlock()
		}
	}()
	etc := filepath.Join("/etc/netns", ns.Name)
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(etc) })
	conf := fmt.Sprintf("nameserver %s\noptions timeout:30 attempts:1\n", ns.PeerIP)
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	// The namespace really resolves through the silent resolver.
	if out, err := exec.Command("ip", "netns", "exec", ns.Name, "cat", "/etc/resolv.conf").CombinedOutput(); err != nil || string(out) != conf {
		t.Fatalf("resolv.conf inside %s: %v: %s", ns.Name, err, out)
	}

	tickLog := filepath.Join(t.TempDir(), "ticks.log")
	script := filepath.Join(t.TempDir(), "ticks.zeek")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(tickScript, tickLog)), 0o644); err != nil {
		t.Fatal(err)
	}
	z := testenv.StartZeek(t, img, testenv.ZeekOptions{
		Addr: "pano-agent.test", Port: 57012, Netns: ns.Name,
		Env: []string{"ZEEK_ARGS=" + script},
	})

	var firstQuery time.Time
	waitFor(t, "Zeek's lookup to reach the test resolver", func() bool {
		mu.Lock()
		defer mu.Unlock()
		if len(queries) > 0 {
			firstQuery = queries[0]
		}
		return len(queries) > 0
	})
	time.Sleep(3 * time.Second)
	var during int
	for _, tk := range readTicks(t, tickLog) {
		if tk.After(firstQuery.Add(time.Second)) {
			during++
		}
	}
	t.Logf("%d timer ticks in the 2 s after the first second of the lookup", during)
	if during < 2 {
		t.Errorf("%d timer ticks while the lookup hung: Zeek's main loop is blocked", during)
	}
	if m := reporterMessages(t, z.LogDir); countMessages(m, "cannot resolve") > 0 {
		t.Fatalf("the lookup ended before the test could check (resolver not silent?):\n%s", strings.Join(m, "\n"))
	}
	took, err := z.Stop(60 * time.Second)
	t.Logf("exited %s after SIGTERM during the lookup (%v)", took.Round(time.Millisecond), err)
	if err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if took > 5*time.Second {
		t.Errorf("Zeek took %s to exit after SIGTERM during a lookup, want at most 5s", took)
	}
}
