package zeekpackage_test

// response_time on a pipelined HTTP connection. None of Zeek's HTTP traces
// pipelines (each request there waits for its reply), so this capture is
// written here, packet by packet: four requests sent back to back before
// any reply, then three replies, the fourth request never answered. Each
// record must be timed from its own request to its own reply.

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/pano-observability/pano/internal/testenv"
)

// usec is a capture time in microseconds since the epoch, as pcap stores
// it and Zeek reads it.
type usec int64

func (u usec) zeek() float64 { return zeekTime(int64(u)/1e6, int64(u)%1e6) }

// tcpTrace writes one TCP connection, client 10.1.0.1:40000 to server
// 10.1.0.2:80, into a pcap file.
type tcpTrace struct {
	t                *testing.T
	w                *pcapgo.Writer
	cliSeq, srvSeq   uint32
	cliAddr, srvAddr net.IP
	cliPort, srvPort layers.TCPPort
}

func (tr *tcpTrace) send(at usec, fromClient bool, flags string, payload string) {
	tr.t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: tr.srvAddr, DstIP: tr.cliAddr}
	tcp := &layers.TCP{SrcPort: tr.srvPort, DstPort: tr.cliPort, Seq: tr.srvSeq, Ack: tr.cliSeq, Window: 65535}
	if fromClient {
		ip.SrcIP, ip.DstIP = tr.cliAddr, tr.srvAddr
		tcp.SrcPort, tcp.DstPort, tcp.Seq, tcp.Ack = tr.cliPort, tr.srvPort, tr.cliSeq, tr.srvSeq
	}
	for _, f := range flags {
		switch f {
		case 'S':
			tcp.SYN = true
		case 'A':
			tcp.ACK = true
		case 'F':
			tcp.FIN = true
		case 'P':
			tcp.PSH = true
		}
	}
	if !tcp.ACK {
		tcp.Ack = 0
	}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		tr.t.Fatal(err)
	}
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	if !fromClient {
		eth.SrcMAC, eth.DstMAC = eth.DstMAC, eth.SrcMAC
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp, gopacket.Payload(payload)); err != nil {
		tr.t.Fatal(err)
	}
	data := buf.Bytes()
	ci := gopacket.CaptureInfo{Timestamp: time.UnixMicro(int64(at)), CaptureLength: len(data), Length: len(data)}
	if err := tr.w.WritePacket(ci, data); err != nil {
		tr.t.Fatal(err)
	}
	// SYN and FIN take a sequence number, as data does.
	n := uint32(len(payload))
	if tcp.SYN || tcp.FIN {
		n++
	}
	if fromClient {
		tr.cliSeq += n
	} else {
		tr.srvSeq += n
	}
}

// writePipelinedTrace writes the capture and returns the times of the
// requests and of the replies.
func writePipelinedTrace(t *testing.T, path string) (reqs, reps []usec) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	tr := &tcpTrace{t: t, w: w, cliSeq: 1000, srvSeq: 50000,
		cliAddr: net.IPv4(10, 1, 0, 1).To4(), srvAddr: net.IPv4(10, 1, 0, 2).To4(), cliPort: 40000, srvPort: 80}
	t0 := usec(1_700_000_000_000_000)
	tr.send(t0, true, "S", "")
	tr.send(t0+300, false, "SA", "")
	tr.send(t0+600, true, "A", "")
	// Four requests, back to back, each in a segment of its own.
	for i := range 4 {
		at := t0 + 10_000 + usec(i)*250
		tr.send(at, true, "PA", fmt.Sprintf("GET /r%d HTTP/1.1\r\nHost: example.test\r\n\r\n", i+1))
		reqs = append(reqs, at)
	}
	// Replies to the first three, in order, at uneven delays.
	for i, d := range []usec{48_000, 93_517, 151_003} {
		at := t0 + 10_000 + d
		body := fmt.Sprintf("reply %d", i+1)
		tr.send(at, false, "PA", fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
		reps = append(reps, at)
	}
	tr.send(t0+400_000, true, "FA", "")
	tr.send(t0+400_300, false, "FA", "")
	tr.send(t0+400_600, true, "A", "")
	return reqs, reps
}

func TestHTTPPipelinedResponseTimes(t *testing.T) {
	img := testenv.CachedZeekImage(t)
	dir := t.TempDir()
	trace := filepath.Join(dir, "pipelined.pcap")
	reqs, reps := writePipelinedTrace(t, trace)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run, _, err := runZeek(ctx, img, filepath.Join(dir, "zeek"), trace, "pano")
	if err != nil {
		t.Fatal(err)
	}
	recs := run["http"]
	if len(recs) != len(reqs) {
		t.Fatalf("http.log has %d records, want one per request (%d)", len(recs), len(reqs))
	}
	for i, rec := range recs {
		var ts, rt float64
		var depth int
		var uri string
		mustField(t, rec, "ts", &ts)
		mustField(t, rec, "trans_depth", &depth)
		mustField(t, rec, "uri", &uri)
		has := mustField(t, rec, "response_time", &rt)
		_, status := rec["status_code"]
		t.Logf("http.log record %d: %s ts %.6f response_time %s", i+1, uri, ts, rec["response_time"])
		if ts != reqs[i].zeek() || depth != i+1 || uri != fmt.Sprintf("/r%d", i+1) {
			t.Errorf("http.log record %d: ts %v, trans_depth %d, uri %s; want request %d's: %v", i+1, ts, depth, uri, i+1, reqs[i].zeek())
		}
		if i >= len(reps) {
			if has || status {
				t.Errorf("http.log record %d: the request was never answered, yet response_time present=%v, status_code present=%v", i+1, has, status)
			}
			continue
		}
		// Exactly Zeek's double: the times are whole microseconds.
		if want := reps[i].zeek() - reqs[i].zeek(); !has || rt != want {
			line, _ := json.Marshal(rec)
			t.Errorf("http.log record %d: response_time %v (present: %v), want %v, its own reply's time less its request's\n%s", i+1, rt, has, want, line)
		}
	}
}
