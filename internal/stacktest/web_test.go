package stacktest

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/pano-observability/pano/agent/filter"
	"github.com/pano-observability/pano/internal/testenv"
)

// --- demo2's web server and load (profile "web") ----------------------------

func TestWiringWebLoad(t *testing.T) { checkWiringWebLoad(t, testenv.RepoRoot(t)) }

// webPorts returns the ports demo2/nginx.conf listens on, without and
// with TLS.
func webPorts(t testing.TB, root string) (plain, tls []int) {
	t.Helper()
	conf, err := os.ReadFile(filepath.Join(root, "demo2", "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?m)^\s*listen\s+(\d+)(\s+ssl)?\b`).FindAllStringSubmatch(string(conf), -1) {
		n, _ := strconv.Atoi(m[1])
		if m[2] != "" {
			tls = append(tls, n)
		} else {
			plain = append(plain, n)
		}
	}
	slices.Sort(plain)
	slices.Sort(tls)
	return slices.Compact(plain), slices.Compact(tls)
}

// scriptSetting is a service's variable as its entrypoint sees it: the
// compose value, or the script's ${NAME:-default}.
func scriptSetting(t testing.TB, path string, script []byte, service, name string, env map[string]*string) string {
	t.Helper()
	if v, ok := env[name]; ok && v != nil && *v != "" {
		return *v
	}
	m := regexp.MustCompile(`\$\{` + name + `:-([^}]*)\}`).FindSubmatch(script)
	if m == nil {
		t.Fatalf("%s: %s is neither set in docker-compose.yml nor defaulted by %s", service, name, path)
	}
	return string(m[1])
}

func checkWiringWebLoad(t testing.TB, root string) {
	st := loadStack(t, root)
	p := st.p
	nw, ok := p.Networks[webNetwork]
	if !ok || len(nw.Ipam.Config) != 1 {
		t.Fatalf("network %s: missing or without exactly one subnet", webNetwork)
	}
	subnet, err := netip.ParsePrefix(nw.Ipam.Config[0].Subnet)
	if err != nil {
		t.Fatalf("network %s: subnet: %v", webNetwork, err)
	}
	bridge := nw.DriverOpts["com.docker.network.bridge.name"]
	if bridge == "" {
		t.Fatalf("network %s: no com.docker.network.bridge.name, so the capture cannot name its interface", webNetwork)
	}
	web, load := p.Services["web"], p.Services["webload"]
	sn := web.Networks[webNetwork]
	if sn == nil {
		t.Fatalf("web is not on network %s", webNetwork)
	}
	addr, err := netip.ParseAddr(sn.Ipv4Address)
	if err != nil || !subnet.Contains(addr) || addr == subnet.Masked().Addr().Next() {
		t.Errorf("web at %q: outside the subnet %s of its network, or the host's own address", sn.Ipv4Address, subnet)
	}

	loadScript := filepath.Join(root, "demo2", "webload-run.sh")
	script, err := os.ReadFile(loadScript)
	if err != nil {
		t.Fatal(err)
	}
	if target := envOf(t, p, "webload", "WEBLOAD_TARGET"); target != sn.Ipv4Address {
		t.Errorf("webload loads %s; web is at %s", target, sn.Ipv4Address)
	}
	plain, tlsPorts := webPorts(t, root)
	httpPort, _ := strconv.Atoi(scriptSetting(t, loadScript, script, "webload", "WEBLOAD_HTTP_PORT", load.Environment))
	httpsPort, _ := strconv.Atoi(scriptSetting(t, loadScript, script, "webload", "WEBLOAD_HTTPS_PORT", load.Environment))
	if !slices.Equal(plain, []int{httpPort}) || !slices.Equal(tlsPorts, []int{httpsPort}) {
		t.Errorf("demo2/nginx.conf listens on ports %v and TLS ports %v; webload connects to %d and %d", plain, tlsPorts, httpPort, httpsPort)
	}

	// The agent's filter keeps both ports, whatever the address.
	rules, err := filter.Parse(setting(t, p, "agent", helpOf(t, "agent/cmd/pano-agent"), "PCA_FILTER"))
	if err != nil {
		t.Fatalf("agent PCA_FILTER: %v", err)
	}
	for _, port := range []int{httpPort, httpsPort} {
		if !slices.ContainsFunc(rules, func(r filter.Rule) bool {
			return (r.Protocol == filter.TCP || r.Protocol == filter.AnyProtocol) && (int(r.Port) == port || r.Port == 0) &&
				!r.Prefix.IsValid() && r.Direction == filter.Both
		}) {
			t.Errorf("agent PCA_FILTER %v does not keep TCP port %d, the web demo's", rules, port)
		}
	}

	// The agent captures the bridge, not the server's veth.
	agentHelp := helpOf(t, "agent/cmd/pano-agent")
	ifaces := setting(t, p, "agent", agentHelp, "INTERFACES")
	exclude := setting(t, p, "agent", agentHelp, "EXCLUDE_INTERFACES")
	if ifaceMatches(exclude, bridge) || (ifaces != "" && !ifaceMatches(ifaces, bridge)) {
		t.Errorf("agent does not capture %s (INTERFACES=%q EXCLUDE_INTERFACES=%q), the web server's bridge", bridge, ifaces, exclude)
	}

	// The health check asks stub_status on a port nginx listens on.
	conf, err := os.ReadFile(filepath.Join(root, "demo2", "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	ports, _ := hcPorts(web)
	m := hcPathRE.FindStringSubmatch(strings.Join(web.HealthCheck.Test, " "))
	if len(ports) != 1 || !slices.Contains(plain, ports[0]) || m == nil || !strings.Contains(string(conf), "location = "+m[1]+" {") {
		t.Errorf("web: health check asks %v on ports %v; nginx.conf listens on %v and must have the location", m, ports, plain)
	}

	// Every variable compose sets is one the entrypoints read.
	webScript, err := os.ReadFile(filepath.Join(root, "demo2", "web-run.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for svc, text := range map[string][]byte{"web": webScript, "webload": script} {
		for k := range p.Services[svc].Environment {
			if !bytes.Contains(text, []byte("${"+k+":-")) {
				t.Errorf("%s: docker-compose.yml sets %s, which its entrypoint never reads", svc, k)
			}
		}
	}
}

// The web profile, minus Docker, as the offline test does it: network
// namespaces for the host and for the web container, joined by a bridge
// named as docker-compose.yml names it. The agent runs with compose's
// environment, nginx with web's (compose's health check passes against
// it), the load with webload's (one bounded run). Every HTTP request h2load
// made and every TLS ClientHello (h2load's connections and openssl's
// handshakes, the refused TLS 1.1 one too) is in the agent's stream once:
// the filter compose sets keeps ports 80 and 443.
func TestWebProfileCapturedAsComposeConfiguresIt(t *testing.T) {
	testenv.RequireRoot(t)
	for prog, pkg := range map[string]string{"nginx": "nginx", "h2load": "nghttp2-client", "openssl": "openssl", "bash": "bash", "ip": "iproute2"} {
		testenv.RequireProgram(t, prog, pkg)
	}
	root := testenv.RepoRoot(t)
	p := mustLoad(t, root)
	agentBin := buildCmd(t, "agent/cmd/pano-agent")

	host, srv, server := composeBridge(t, p, webNetwork, "web", "eth80")

	startIn(t, host, serviceEnv(p.Services["agent"]), agentBin)
	waitHealthy(t, host, p.Services["agent"])
	addr := fmt.Sprintf("%s/%s", envOf(t, p, "zeek", "PCA_SERVER_ADDR"), envOf(t, p, "zeek", "PCA_SERVER_PORT"))
	stream := filepath.Join(t.TempDir(), "stream.pcap")
	startIn(t, host, []string{"PATH=" + os.Getenv("PATH")}, "bash", "-c",
		fmt.Sprintf("exec 3<>/dev/tcp/%s && exec cat <&3 >%q", addr, stream))
	waitHealthy(t, host, p.Services["zeek"])

	// The web server with web's settings (its files in a directory of the
	// test's own; workers as root, who owns that directory). Compose's
	// health check fails before it runs and passes once it does.
	web := p.Services["web"]
	hc := web.HealthCheck.Test[1:]
	if err := srv.Command(context.Background(), hc[0], hc[1:]...).Run(); err == nil {
		t.Fatal("web: compose's health check passes with no server running")
	}
	startIn(t, srv, serviceEnv(web, "WEB_DIR="+t.TempDir(), "WEB_USER=root"), filepath.Join(root, "demo2", "web-run.sh"))
	waitHealthy(t, srv, web)

	// One bounded run of webload's load, from the "host".
	const handshakes, refused = 1, 1
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := host.Command(ctx, filepath.Join(root, "demo2", "webload-run.sh"))
	cmd.Env = serviceEnv(p.Services["webload"], "WEBLOAD_RATE=100", "WEBLOAD_DURATION=1", "WEBLOAD_RUNS=1",
		fmt.Sprintf("WEBLOAD_HANDSHAKES=%d", handshakes), fmt.Sprintf("WEBLOAD_REFUSED=%d", refused))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("webload-run.sh: %v\n%s", err, out)
	}
	var reps []testenv.H2loadReport
	for _, part := range regexp.MustCompile(`(?m)^== webload-run: run 1 (?:https?)$`).Split(string(out), -1)[1:] {
		rep, err := testenv.ParseH2load(strings.Split(part, "\n== ")[0])
		if err != nil {
			t.Fatalf("h2load report: %v\n%s", err, out)
		}
		reps = append(reps, rep)
	}
	if len(reps) != 2 || reps[0].Requests.Done == 0 || reps[0].Requests.Errored != 0 || reps[1].Requests.Errored != 0 {
		t.Fatalf("want an HTTP and an HTTPS report without errors:\n%s", out)
	}
	loadScript := filepath.Join(root, "demo2", "webload-run.sh")
	script, err := os.ReadFile(loadScript)
	if err != nil {
		t.Fatal(err)
	}
	clients, err := strconv.Atoi(scriptSetting(t, loadScript, script, "webload", "WEBLOAD_CLIENTS", p.Services["webload"].Environment))
	if err != nil {
		t.Fatalf("webload's WEBLOAD_CLIENTS: %v", err)
	}
	wantHellos := clients + 2*2*handshakes + refused

	var gets, hellos int
	deadline := time.Now().Add(20 * time.Second)
	for {
		gets, hellos = countWeb(t, stream, server)
		if (gets >= reps[0].Requests.Done && hellos >= wantHellos) || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // duplicates would come as late as the originals
	gets, hellos = countWeb(t, stream, server)
	if gets != reps[0].Requests.Done || hellos != wantHellos {
		t.Errorf("the agent's stream holds %d HTTP requests and %d ClientHellos for %s; h2load made %d requests, and %d TLS connections were opened",
			gets, hellos, server, reps[0].Requests.Done, wantHellos)
	}
	t.Logf("stream: %d HTTP requests, %d ClientHellos; h2load: %+v / %+v", gets, hellos, reps[0].Requests, reps[1].Requests)
}

// countWeb counts, in a captured PCAP-over-TCP stream, the HTTP requests
// to server:80 and the TLS ClientHellos to server:443 (each in a segment
// of its own here).
func countWeb(t *testing.T, path, server string) (gets, hellos int) {
	t.Helper()
	eachStreamPacket(t, path, func(pkt gopacket.Packet) {
		ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if ip == nil || tcp == nil || ip.DstIP.String() != server {
			return
		}
		pl := tcp.Payload
		switch {
		case tcp.DstPort == 80 && bytes.HasPrefix(pl, []byte("GET ")):
			gets++
		case tcp.DstPort == 443 && len(pl) > 5 && pl[0] == 0x16 && pl[5] == 0x01: // handshake record, ClientHello
			hellos++
		}
	})
	return gets, hellos
}
