package pcapovertcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

type testPacket struct {
	ci   CaptureInfo
	data []byte
}

// fixturePackets reads the DNS traces under testdata with gopacket's
// pcapgo, an independent reader, so that a bug in this package's Reader
// cannot hide in the expected values.
func fixturePackets(t testing.TB) []testPacket {
	t.Helper()
	files, err := filepath.Glob("testdata/zeek-dns-*.pcap")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata traces: %v", err)
	}
	sort.Strings(files)
	var pkts []testPacket
	for _, f := range files {
		pkts = append(pkts, readWithPcapgo(t, f)...)
	}
	return pkts
}

func readWithPcapgo(t testing.TB, path string) []testPacket {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return readAllPcapgo(t, f)
}

// builtPackets are DNS packets made with gopacket/layers: IPv4 and IPv6,
// query and response, with timestamps that exercise sub-microsecond
// digits (lost in microsecond streams).
func builtPackets(t testing.TB, n int) []testPacket {
	t.Helper()
	base := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	var pkts []testPacket
	for i := range n {
		v6 := i%2 == 1
		response := i%4 >= 2
		eth := &layers.Ethernet{
			SrcMAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 2},
			EthernetType: layers.EthernetTypeIPv4,
		}
		var ip gopacket.NetworkLayer
		src, dst := net.IPv4(198, 18, 0, 1), net.IPv4(198, 18, 0, 2)
		if v6 {
			src, dst = net.ParseIP("fd00::1"), net.ParseIP("fd00::2")
		}
		if response {
			src, dst = dst, src
		}
		if v6 {
			eth.EthernetType = layers.EthernetTypeIPv6
			ip = &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: src, DstIP: dst}
		} else {
			ip = &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: src, DstIP: dst}
		}
		udp := &layers.UDP{SrcPort: layers.UDPPort(40000 + i%1000), DstPort: 53}
		if response {
			udp.SrcPort, udp.DstPort = udp.DstPort, udp.SrcPort
		}
		if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
			t.Fatal(err)
		}
		name := []byte(fmt.Sprintf("host%d.pano.test", i))
		dns := &layers.DNS{ID: uint16(i), RD: true, QDCount: 1,
			Questions: []layers.DNSQuestion{{Name: name, Type: layers.DNSTypeA, Class: layers.DNSClassIN}}}
		if response {
			dns.QR, dns.RA = true, true
			dns.Answers = []layers.DNSResourceRecord{{Name: name, Type: layers.DNSTypeA, Class: layers.DNSClassIN, TTL: 300, IP: net.IPv4(198, 18, byte(i>>8), byte(i))}}
		}
		buf := gopacket.NewSerializeBuffer()
		opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
		if err := gopacket.SerializeLayers(buf, opts, eth, ip.(gopacket.SerializableLayer), udp, dns); err != nil {
			t.Fatalf("serialize DNS packet %d: %v", i, err)
		}
		data := append([]byte(nil), buf.Bytes()...)
		ts := base.Add(time.Duration(i) * 1234567 * time.Nanosecond)
		pkts = append(pkts, testPacket{ci: CaptureInfo{Timestamp: ts, CaptureLength: len(data), Length: len(data)}, data: data})
	}
	return pkts
}

// startServer runs a Server until the test ends.
func startServer(t testing.TB, cfg ServerConfig) *Server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return 10s after its context was cancelled")
		}
	})
	return s
}

// eventually polls cond until it holds, failing the test after a
// generous limit (a hang guard, not a performance assertion).
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitClients(t testing.TB, s *Server, n int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d clients", n), func() bool { return len(s.Stats().Clients) == n })
}

func clientStats(t testing.TB, s *Server, remote string) ClientStats {
	t.Helper()
	for _, c := range s.Stats().Clients {
		if c.Remote == remote {
			return c
		}
	}
	t.Fatalf("no client %s in %+v", remote, s.Stats().Clients)
	return ClientStats{}
}

// readAll reads a stream to its end with this package's Reader.
func readAll(t testing.TB, r io.Reader) (FileHeader, []testPacket) {
	t.Helper()
	rd, err := NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	var pkts []testPacket
	for {
		ci, data, err := rd.ReadPacket()
		if errors.Is(err, io.EOF) {
			return rd.Header(), pkts
		}
		if err != nil {
			t.Fatalf("after %d packets: %v", len(pkts), err)
		}
		pkts = append(pkts, testPacket{ci: ci, data: append([]byte(nil), data...)})
	}
}

// expectSame compares received packets with the packets written, given
// the stream's snap length and timestamp resolution.
func expectSame(t testing.TB, got, sent []testPacket, snaplen int, nanosecond bool) {
	t.Helper()
	if len(got) != len(sent) {
		t.Fatalf("got %d packets, want %d", len(got), len(sent))
	}
	for i := range sent {
		want := sent[i].data[:min(len(sent[i].data), snaplen)]
		if string(got[i].data) != string(want) {
			t.Fatalf("packet %d: data differs:\n got %x\nwant %x", i, got[i].data, want)
		}
		if got[i].ci.Length != max(sent[i].ci.Length, len(sent[i].data)) {
			t.Fatalf("packet %d: orig_len %d, want %d", i, got[i].ci.Length, len(sent[i].data))
		}
		if got[i].ci.CaptureLength != len(want) {
			t.Fatalf("packet %d: incl_len %d, want %d", i, got[i].ci.CaptureLength, len(want))
		}
		wantTS := sent[i].ci.Timestamp
		if !nanosecond {
			wantTS = wantTS.Truncate(time.Microsecond)
		}
		if !got[i].ci.Timestamp.Equal(wantTS) {
			t.Fatalf("packet %d: timestamp %v, want %v", i, got[i].ci.Timestamp, wantTS)
		}
	}
}

// readAllPcapgo reads a stream to its end with gopacket's pcapgo.
func readAllPcapgo(t testing.TB, r io.Reader) []testPacket {
	t.Helper()
	pkts, err := pcapgoRead(r)
	if err != nil {
		t.Fatal(err)
	}
	return pkts
}

func pcapgoRead(r io.Reader) ([]testPacket, error) {
	rd, err := pcapgo.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("pcapgo: %w", err)
	}
	var pkts []testPacket
	for {
		data, ci, err := rd.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return pkts, nil
		}
		if err != nil {
			return pkts, fmt.Errorf("pcapgo: after %d packets: %w", len(pkts), err)
		}
		pkts = append(pkts, testPacket{
			ci:   CaptureInfo{Timestamp: ci.Timestamp, CaptureLength: ci.CaptureLength, Length: ci.Length},
			data: append([]byte(nil), data...),
		})
	}
}
