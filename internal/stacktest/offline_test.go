package stacktest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/pano-observability/pano/internal/testenv"
	pcapovertcp "github.com/pano-observability/pano/pcap-over-tcp"
)

// serviceEnv is a service's environment as compose passes it (defaults
// interpolated), plus PATH and the overrides.
func serviceEnv(s types.ServiceConfig, override ...string) []string {
	env := []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range s.Environment {
		if v != nil {
			env = append(env, k+"="+*v)
		}
	}
	return append(env, override...)
}

// startIn starts a long-running program inside the namespace, stopped by
// SIGTERM at cleanup; its output goes to the returned buffer.
func startIn(t *testing.T, ns *testenv.Netns, env []string, name string, args ...string) *testenv.SyncBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := ns.Command(ctx, name, args...)
	cmd.Env = env
	out := &testenv.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("%s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
	return out
}

// waitHealthy runs a compose health check inside the namespace until it
// passes (bounded).
func waitHealthy(t *testing.T, ns *testenv.Netns, s types.ServiceConfig, replace ...string) {
	t.Helper()
	test := slicesReplace(s.HealthCheck.Test[1:], replace...)
	deadline := time.Now().Add(45 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := ns.Command(ctx, test[0], test[1:]...).Run()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: compose's health check %q still fails after 45 s: %v", s.Name, test, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func slicesReplace(in []string, oldNew ...string) []string {
	r := strings.NewReplacer(oldNew...)
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = r.Replace(s)
	}
	return out
}

// The offline profile, minus Docker: network namespaces stand for the
// host and for the dns-local1 container, joined as Docker joins them (a
// bridge named as docker-compose.yml names it, the container's veth on
// it). The agent runs in the "host" with exactly the environment compose
// gives it, the server with dns-local1's, dnsperf with dnsperf-local1's
// (at a lower rate, for a bounded run). Compose's health checks pass
// against the real programs, and the agent's PCAP-over-TCP stream holds
// every query and every response dnsperf counted, each once.
func TestOfflineProfileCapturedAsComposeConfiguresIt(t *testing.T) {
	testenv.RequireRoot(t)
	for prog, pkg := range map[string]string{"dnsperf": "dnsperf", "unbound": "unbound", "unbound-control": "unbound", "bash": "bash", "ip": "iproute2"} {
		testenv.RequireProgram(t, prog, pkg)
	}
	root := testenv.RepoRoot(t)
	p := mustLoad(t, root)
	agentBin := buildCmd(t, "agent/cmd/pano-agent")

	// The topology of the offline network.
	host, srv, server := composeBridge(t, p, offlineNetwork, "dns-local1", "eth53")

	// Capture, configured as compose configures it.
	agentOut := startIn(t, host, serviceEnv(p.Services["agent"]), agentBin)
	waitHealthy(t, host, p.Services["agent"])

	// Zeek's place: a reader of the stream at the address compose gives Zeek.
	zeek := p.Services["zeek"]
	addr := fmt.Sprintf("%s/%s", envOf(t, p, "zeek", "PCA_SERVER_ADDR"), envOf(t, p, "zeek", "PCA_SERVER_PORT"))
	stream := filepath.Join(t.TempDir(), "stream.pcap")
	startIn(t, host, []string{"PATH=" + os.Getenv("PATH")}, "bash", "-c",
		fmt.Sprintf("exec 3<>/dev/tcp/%s && exec cat <&3 >%q", addr, stream))
	waitHealthy(t, host, zeek) // Zeek's check sees the connection to the agent

	// The offline DNS server with dns-local1's settings (its files in a
	// directory of the test's own).
	dir := t.TempDir()
	dnsLocal := p.Services["dns-local1"]
	startIn(t, srv, serviceEnv(dnsLocal, "DNS_LOCAL_DIR="+dir, "DNS_LOCAL_USER=",
		"DNS_LOCAL_QUERIES="+filepath.Join(root, "demo1", "queries.txt")),
		filepath.Join(root, "demo1", "unbound-run.sh"))
	waitHealthy(t, srv, dnsLocal, "/run/pano-unbound/", dir+"/")

	// One bounded period of dnsperf-local1's load, from the "host".
	load := p.Services["dnsperf-local1"]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := host.Command(ctx, filepath.Join(root, "demo1", "dnsperf-run.sh"))
	cmd.Env = serviceEnv(load, "DNSPERF_QPS=1000", "DNSPERF_PERIOD=2", "DNSPERF_RUNS=1",
		"DNSPERF_QUERIES="+filepath.Join(root, "demo1", "queries.txt"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dnsperf-run.sh: %v\n%s", err, out)
	}
	rep, err := testenv.ParseDNSPerf(string(out))
	if err != nil {
		t.Fatalf("dnsperf report: %v\n%s", err, out)
	}
	if rep.Sent < 1000 || rep.Lost != 0 {
		t.Fatalf("dnsperf sent %d, lost %d; want about 2000 and none lost:\n%s", rep.Sent, rep.Lost, out)
	}
	if bridge := p.Networks[offlineNetwork].DriverOpts["com.docker.network.bridge.name"]; !strings.Contains(agentOut.String(), "interface="+bridge) {
		t.Errorf("the agent did not attach to %s:\n%s", bridge, agentOut.String())
	}

	// The stream: queries to the server and responses from it, counted
	// once each. Wait until the agent has written everything, bounded.
	want := rep.Sent + rep.Completed
	var queries, responses int
	deadline := time.Now().Add(20 * time.Second)
	for {
		queries, responses = countDNS(t, stream, server)
		if queries+responses >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	// A little longer: duplicates would arrive as late as the originals.
	time.Sleep(500 * time.Millisecond)
	queries, responses = countDNS(t, stream, server)
	if queries != rep.Sent || responses != rep.Completed {
		t.Errorf("the agent's stream holds %d queries and %d responses for %s; dnsperf sent %d and received %d",
			queries, responses, server, rep.Sent, rep.Completed)
	}
	t.Logf("dnsperf: sent %d, completed %d, %v; stream: %d queries, %d responses", rep.Sent, rep.Completed, rep.RCodes, queries, responses)
}

// countDNS counts the UDP DNS packets to and from server in a captured
// PCAP-over-TCP stream.
func countDNS(t *testing.T, path, server string) (queries, responses int) {
	t.Helper()
	eachStreamPacket(t, path, func(pkt gopacket.Packet) {
		ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		udp, _ := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
		switch {
		case ip == nil || udp == nil:
		case udp.DstPort == 53 && ip.DstIP.String() == server:
			queries++
		case udp.SrcPort == 53 && ip.SrcIP.String() == server:
			responses++
		}
	})
	return queries, responses
}

// eachStreamPacket calls f with each packet of a captured PCAP-over-TCP
// stream, which may end in the middle of a record.
func eachStreamPacket(t *testing.T, path string, f func(gopacket.Packet)) {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	r, err := pcapovertcp.NewReader(file)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return
		}
		t.Fatalf("stream header: %v", err)
	}
	for {
		_, data, err := r.ReadPacket()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("stream: %v", err)
			}
			return
		}
		f(gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.NoCopy))
	}
}

// composeBridge builds, in two namespaces the test makes, a compose
// network's topology: "host" holds the bridge docker-compose.yml names,
// with the subnet's first address, and the veth of the service's
// container, whose end in srv (named ifName) has the service's address.
// Only the namespaces' loopbacks and the bridge keep addresses: the test's
// own veth /30s could overlap the subnet.
func composeBridge(t *testing.T, p *types.Project, network, service, ifName string) (host, srv *testenv.Netns, server string) {
	t.Helper()
	nw := p.Networks[network]
	subnet := netip.MustParsePrefix(nw.Ipam.Config[0].Subnet)
	bridge := nw.DriverOpts["com.docker.network.bridge.name"]
	server = p.Services[service].Networks[network].Ipv4Address
	host, srv = testenv.NewNetns(t), testenv.NewNetns(t)
	host.Exec(t, "ip", "addr", "flush", "dev", host.PeerIf)
	srv.Exec(t, "ip", "addr", "flush", "dev", srv.PeerIf)
	veth := "veth" + strings.TrimPrefix(host.Name, "pano-")
	for _, args := range [][]string{
		{"-n", host.Name, "link", "add", bridge, "type", "bridge"},
		{"-n", host.Name, "addr", "add", netip.PrefixFrom(subnet.Masked().Addr().Next(), subnet.Bits()).String(), "dev", bridge},
		{"-n", host.Name, "link", "set", bridge, "up"},
		{"-n", host.Name, "link", "add", veth, "type", "veth", "peer", "name", ifName, "netns", srv.Name},
		{"-n", host.Name, "link", "set", veth, "master", bridge, "up"},
		{"-n", srv.Name, "addr", "add", server + "/" + fmt.Sprint(subnet.Bits()), "dev", ifName},
		{"-n", srv.Name, "link", "set", ifName, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return host, srv, server
}
