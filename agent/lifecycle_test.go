package agent_test

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netlink"

	"github.com/pano-observability/pano/agent"
	"github.com/pano-observability/pano/agent/bpf"
	"github.com/pano-observability/pano/agent/config"
	"github.com/pano-observability/pano/agent/filter"
	"github.com/pano-observability/pano/agent/tracer"
	"github.com/pano-observability/pano/internal/testenv"
)

// addVeth creates a veth pair named prefix+"a" / prefix+"b" in the root
// namespace, both ends up and without addresses.
func addVeth(t *testing.T, prefix string) (a, b string) {
	t.Helper()
	a, b = prefix+"a", prefix+"b"
	if out, err := exec.Command("ip", "link", "add", a, "type", "veth", "peer", "name", b).CombinedOutput(); err != nil {
		t.Fatalf("ip link add %s: %v: %s", a, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", a).Run() })
	for _, n := range []string{a, b} {
		if out, err := exec.Command("ip", "link", "set", n, "up").CombinedOutput(); err != nil {
			t.Fatalf("ip link set %s up: %v: %s", n, err, out)
		}
	}
	return a, b
}

func randomPrefix() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return "pa" + hex.EncodeToString(b[:])
}

// udpFrames builds n frames from a's MAC to b's, UDP to port 53, with
// addresses from the benchmarking range (they never leave the veth).
func udpFrames(t *testing.T, a, b string, n int) [][]byte {
	t.Helper()
	ia, err := net.InterfaceByName(a)
	if err != nil {
		t.Fatal(err)
	}
	ib, err := net.InterfaceByName(b)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for i := range n {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, Id: uint16(i),
			SrcIP: net.IPv4(198, 18, 255, 1), DstIP: net.IPv4(198, 18, 255, 2)}
		udp := &layers.UDP{SrcPort: layers.UDPPort(30000 + i), DstPort: 53}
		_ = udp.SetNetworkLayerForChecksum(ip)
		buf := gopacket.NewSerializeBuffer()
		err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			&layers.Ethernet{SrcMAC: ia.HardwareAddr, DstMAC: ib.HardwareAddr, EthernetType: layers.EthernetTypeIPv4},
			ip, udp, gopacket.Payload([]byte("pano test payload")))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, buf.Bytes())
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestInterfaceAddedLater starts the agent on a pattern no interface
// matches yet, creates a veth pair that matches it, and sends frames
// across: both ends are attached when they appear, each frame is seen
// leaving one end and entering the other, and the deduplication window
// keeps one copy. Deleting the pair detaches it.
func TestInterfaceAddedLater(t *testing.T) {
	for _, tc := range []struct {
		window  string
		perSend int
	}{{"0", 2}, {"", 1}} {
		name := "dedup-default"
		if tc.window != "" {
			name = "dedup-" + tc.window
		}
		t.Run(name, func(t *testing.T) {
			testenv.RequireRoot(t)
			prefix := randomPrefix()
			env := map[string]string{"INTERFACES": prefix + "*", "PCA_FILTER": "udp,53"}
			if tc.window != "" {
				env["DEDUP_WINDOW"] = tc.window
			}
			ra := startAgent(t, env)
			if n := len(ra.Attached()); n != 0 {
				t.Fatalf("%d interfaces attached before any matches", n)
			}
			a, b := addVeth(t, prefix)
			waitFor(t, "both veth ends attached", func() bool { return attached(ra.Attached(), []string{a, b}) })

			const n = 50
			(&testenv.Netns{HostIf: a}).InjectFrames(t, udpFrames(t, a, b, n)...)
			waitFor(t, "the frames captured", func() bool {
				st := ra.ReaderStats()
				return st.Packets+st.Duplicates >= 2*n
			})

			if out, err := exec.Command("ip", "link", "del", a).CombinedOutput(); err != nil {
				t.Fatalf("ip link del: %v: %s", err, out)
			}
			waitFor(t, "the deleted veth detached", func() bool { return len(ra.Attached()) == 0 })

			got := ra.stop(t)
			st := ra.ReaderStats()
			if len(got) != tc.perSend*n {
				t.Errorf("stream holds %d packets, want %d (%d frames, %d copies each); reader %+v", len(got), tc.perSend*n, n, tc.perSend, st)
			}
			if wantDup := uint64((2 - tc.perSend) * n); st.Duplicates != wantDup {
				t.Errorf("%d duplicates dropped, want %d", st.Duplicates, wantDup)
			}
		})
	}
}

// TestShutdownRemovesEverything checks that a stopped agent leaves no
// TCX link, tc filter or clsact qdisc of its own behind, and leaves a
// clsact qdisc that was there before it.
func TestShutdownRemovesEverything(t *testing.T) {
	for _, tc := range []struct {
		mode         string
		clsactBefore bool
		staleFilters bool // left by a killed agent
	}{{"tcx", false, false}, {"tc", false, false}, {"tc", true, false}, {"tc", true, true}} {
		name := tc.mode
		if tc.clsactBefore {
			name += "-existing-clsact"
		}
		if tc.staleFilters {
			name += "-stale-filters"
		}
		t.Run(name, func(t *testing.T) {
			testenv.RequireRoot(t)
			a, _ := addVeth(t, randomPrefix())
			l, err := netlink.LinkByName(a)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.staleFilters:
				// What a killed agent leaves: its qdisc and filters.
				leaveStaleFilters(t, l)
			case tc.clsactBefore:
				if out, err := exec.Command("tc", "qdisc", "add", "dev", a, "clsact").CombinedOutput(); err != nil {
					t.Fatalf("tc qdisc add: %v: %s", err, out)
				}
			}
			ra := startAgent(t, map[string]string{"INTERFACES": a, "ATTACH_MODE": tc.mode}, a)

			tcx, filters, clsact := hooks(t, l)
			t.Logf("while running: %d tcx programs, %d tc filters, clsact %v", tcx, filters, clsact)
			switch tc.mode {
			case "tcx":
				if tcx != 2 || filters != 0 {
					t.Errorf("running in tcx mode: %d tcx programs, %d tc filters; want 2 and 0", tcx, filters)
				}
			case "tc":
				if tcx != 0 || filters != 2 || !clsact {
					t.Errorf("running in tc mode: %d tcx programs, %d tc filters, clsact %v; want 0, 2, true", tcx, filters, clsact)
				}
			}

			ra.stop(t)
			tcx, filters, clsact = hooks(t, l)
			if tcx != 0 || filters != 0 || clsact != tc.clsactBefore {
				t.Errorf("after shutdown: %d tcx programs, %d tc filters, clsact %v; want 0, 0, %v", tcx, filters, clsact, tc.clsactBefore)
			}
		})
	}
}

// leaveStaleFilters attaches the classifier in legacy TC mode and then
// drops every reference to it without detaching, as a killed agent would.
func leaveStaleFilters(t *testing.T, l netlink.Link) {
	t.Helper()
	rules, _ := filter.Parse("udp,53")
	cls, err := bpf.Load(bpf.Options{SnapLen: 100, RingBufferSize: 1 << 16, Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	defer cls.Close()
	tr := tracer.New(tracer.ModeTC, cls.Ingress(), cls.Egress(), nil)
	if err := tr.Attach(l.Attrs().Index, l.Attrs().Name); err != nil {
		t.Fatal(err)
	}
	if _, filters, _ := hooks(t, l); filters != 2 {
		t.Fatalf("%d stale filters set up, want 2", filters)
	}
}

// hooks counts what is attached to the interface.
func hooks(t *testing.T, l netlink.Link) (tcx, filters int, clsact bool) {
	t.Helper()
	for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
		res, err := link.QueryPrograms(link.QueryOptions{Target: l.Attrs().Index, Attach: at})
		if err != nil {
			t.Fatalf("query tcx: %v", err)
		}
		tcx += len(res.Programs)
	}
	qdiscs, err := netlink.QdiscList(l)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qdiscs {
		if q.Type() == "clsact" {
			clsact = true
		}
	}
	if clsact {
		for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
			fs, err := netlink.FilterList(l, parent)
			if err != nil {
				t.Fatal(err)
			}
			filters += len(fs)
		}
	}
	return tcx, filters, clsact
}

// TestStartupErrors checks that configuration mistakes fail at start
// with a message that names the fix.
func TestStartupErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, port, _ := net.SplitHostPort(busy.Addr().String())

	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"unknown interface", map[string]string{"INTERFACES": "nosuchif0"}, `unknown interface "nosuchif0"`},
		{"pcap port in use", map[string]string{"PCA_SERVER_PORT": port}, "in use"},
		{"metrics port in use", map[string]string{"PCA_SERVER_PORT": "0", "METRICS_ADDR": busy.Addr().String()}, "METRICS_ADDR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("METRICS_ADDR", "off")
			t.Setenv("INTERFACES", "lo")
			t.Setenv("EXCLUDE_INTERFACES", "none")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			cfg, err := config.Load(nil, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			a, err := agent.New(cfg, nil)
			if err == nil {
				a.Close()
				t.Fatal("agent started")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
			t.Log(err)
		})
	}
}

// TestMissingCapabilities runs the agent binary as an unprivileged user:
// it must exit with an error naming the capabilities and how to grant
// them in docker.
func TestMissingCapabilities(t *testing.T) {
	testenv.RequireRoot(t)
	setpriv := testenv.RequireProgram(t, "setpriv", "util-linux")
	bin := filepath.Join(t.TempDir(), "pano-agent")
	build := exec.Command("go", "build", "-o", bin, "./cmd/pano-agent")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if err := os.Chmod(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", bin,
		"-pca-server-port=0", "-metrics-addr=off", "-interfaces=lo", "-exclude-interfaces=")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("agent ran without capabilities:\n%s", out)
	}
	for _, want := range []string{"CAP_BPF", "CAP_NET_ADMIN", "cap_add: [BPF, NET_ADMIN, PERFMON]"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output does not mention %q:\n%s", want, out)
		}
	}
}
