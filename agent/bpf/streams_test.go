package bpf

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/pano-observability/pano/agent/filter"
	"github.com/pano-observability/pano/internal/flowhashtest"
	"github.com/pano-observability/pano/internal/testenv"
)

func loadStreams(t *testing.T, expr string, streams int) (*Classifier, *ringbuf.Reader) {
	t.Helper()
	testenv.RequireRoot(t)
	rules, err := filter.Parse(expr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load(Options{SnapLen: MaxSnapLen, RingBufferSize: 1 << 20, Rules: rules, Streams: streams})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	rd, err := ringbuf.NewReader(c.RingBuffer())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	return c, rd
}

// streamOf runs one packet through the classifier and returns the
// stream in its record's metadata.
func streamOf(t *testing.T, c *Classifier, rd *ringbuf.Reader, prog *ebpf.Program, data []byte) int {
	t.Helper()
	rec, ok := run(t, c, rd, prog, data)
	if !ok {
		t.Fatalf("packet not captured: % x", data[:min(len(data), 64)])
	}
	return int(rec[MetaStreamOffset])
}

type testFlow struct {
	flowhashtest.Flow
	v6 bool
}

func (f testFlow) packet(reverse bool, vlans []uint16) []byte {
	src, dst, sp, dp := f.Src, f.Dst, f.SrcPort, f.DstPort
	if reverse {
		src, dst, sp, dp = dst, src, dp, sp
	}
	payload := l4(sp, dp, 20)
	if f.Proto == 1 || f.Proto == 58 {
		payload = make([]byte, 28)
	}
	if f.v6 {
		return frame(vlans, ipv6(src.String(), dst.String(), f.Proto, nil, payload), 0x86dd)
	}
	return frame(vlans, ipv4(src.String(), dst.String(), f.Proto, 1, 0, false, 0, payload), 0x0800)
}

// TestClassifierStreamsSymmetric feeds both directions of random flows
// to the classifier (BPF_PROG_TEST_RUN) with 4 streams: both land in
// the same stream, and it is the one the Go reference computes.
func TestClassifierStreamsSymmetric(t *testing.T) {
	const n = 4
	c, rd := loadStreams(t, "any,any", n)
	rng := rand.New(rand.NewPCG(7, 8))
	counts := make([]int, n)
	for i := range 1200 {
		f := testFlow{v6: i%2 == 1}
		if f.v6 {
			var a, b [16]byte
			a[0], b[0] = 0xfd, 0xfd
			for j := 1; j < 16; j++ {
				a[j], b[j] = byte(rng.Uint32()), byte(rng.Uint32())
			}
			f.Src, f.Dst = netip.AddrFrom16(a), netip.AddrFrom16(b)
		} else {
			f.Src = netip.AddrFrom4([4]byte{198, 18, byte(rng.Uint32()), byte(rng.Uint32())})
			f.Dst = netip.AddrFrom4([4]byte{198, 19, byte(rng.Uint32()), byte(rng.Uint32())})
		}
		switch i % 5 {
		case 0, 1, 2:
			f.Proto = 17
		case 3:
			f.Proto = 6
		case 4: // no ports: ICMP / ICMPv6
			f.Proto = 1
			if f.v6 {
				f.Proto = 58
			}
		}
		if f.Proto == 6 || f.Proto == 17 {
			f.SrcPort, f.DstPort = uint16(1024+rng.IntN(60000)), 53
		}
		var vlans []uint16
		if i%7 == 0 {
			vlans = []uint16{100}
		}
		out := streamOf(t, c, rd, c.Egress(), f.packet(false, vlans))
		back := streamOf(t, c, rd, c.Ingress(), f.packet(true, vlans))
		want := flowhashtest.Stream(f.Flow, n)
		if out != back || out != want {
			t.Fatalf("%+v: stream %d one way, %d the other, Go reference %d", f, out, back, want)
		}
		counts[out]++
	}
	for s, k := range counts {
		if k < 1200/n*8/10 {
			t.Errorf("stream %d got %d of 1200 flows: %v", s, k, counts)
		}
	}
}

// TestClassifierStreamsFragments: later fragments carry no ports, yet go
// to the stream of their datagram's first fragment, which is the flow's.
func TestClassifierStreamsFragments(t *testing.T) {
	const n = 4
	c, rd := loadStreams(t, "udp,53", n)
	fragHdr := func(off uint16, more bool, id uint32) []byte {
		b := make([]byte, 9)
		b[0] = 44
		v := off &^ 7
		if more {
			v |= 1
		}
		binary.BigEndian.PutUint16(b[3:], v)
		binary.BigEndian.PutUint32(b[5:], id)
		return b
	}
	seen := map[int]bool{}
	for i := range 200 {
		sport := uint16(20000 + i*37)
		id := uint16(1000 + i)
		var first, later []byte
		f := flowhashtest.Flow{SrcPort: 53, DstPort: sport, Proto: 17}
		if i%2 == 0 {
			f.Src, f.Dst = netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.1")
			first = frame(nil, ipv4("198.18.0.2", "198.18.0.1", 17, id, 0, true, 0, l4(53, sport, 1472)), 0x0800)
			later = frame(nil, ipv4("198.18.0.2", "198.18.0.1", 17, id, 1480, false, 0, make([]byte, 300)), 0x0800)
		} else {
			f.Src, f.Dst = netip.MustParseAddr("fd00::2"), netip.MustParseAddr("fd00::1")
			first = frame(nil, ipv6("fd00::2", "fd00::1", 17, [][]byte{fragHdr(0, true, uint32(id))}, l4(53, sport, 1400)), 0x86dd)
			later = frame(nil, ipv6("fd00::2", "fd00::1", 17, [][]byte{fragHdr(1408, false, uint32(id))}, make([]byte, 300)), 0x86dd)
		}
		s1 := streamOf(t, c, rd, c.Ingress(), first)
		s2 := streamOf(t, c, rd, c.Ingress(), later)
		if want := flowhashtest.Stream(f, n); s1 != want || s2 != want {
			t.Fatalf("datagram %d: first fragment in stream %d, later one in %d; the flow's stream is %d", i, s1, s2, want)
		}
		seen[s1] = true
	}
	if len(seen) != n {
		t.Errorf("fragmented datagrams reached only streams %v", seen)
	}
}

// TestClassifierOneStream: with one stream (the default) the metadata's
// stream byte is always 0.
func TestClassifierOneStream(t *testing.T) {
	c, rd := loadStreams(t, "any,any", 1)
	for i := range 50 {
		pkt := frame(nil, ipv4("198.18.0.1", "198.18.0.2", 17, 1, 0, false, 0, l4(uint16(1024+i*101), 53, 20)), 0x0800)
		if s := streamOf(t, c, rd, c.Egress(), pkt); s != 0 {
			t.Fatalf("stream %d with one stream", s)
		}
	}
	if _, err := Load(Options{SnapLen: 100, RingBufferSize: 1 << 20, Streams: MaxStreams + 1}); err == nil {
		t.Errorf("Load accepted %d streams", MaxStreams+1)
	}
}

// TestClassifierStreamRingBufferFull: losses to a full ring buffer are
// counted against the stream the packets were meant for.
func TestClassifierStreamRingBufferFull(t *testing.T) {
	const n = 4
	c, _ := loadStreams(t, "udp,53", n)
	f := flowhashtest.Flow{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2"), SrcPort: 40000, DstPort: 53, Proto: 17}
	pkt := frame(nil, ipv4("198.18.0.1", "198.18.0.2", 17, 1, 0, false, 0, l4(40000, 53, 1400)), 0x0800)
	if _, err := c.Egress().Run(&ebpf.RunOptions{Data: pkt, Repeat: 1000}); err != nil {
		t.Fatal(err)
	}
	cnt, err := c.Counters()
	if err != nil {
		t.Fatal(err)
	}
	want := flowhashtest.Stream(f, n)
	if cnt.RingBufferFull == 0 || len(cnt.StreamRingBufferFull) != n {
		t.Fatalf("counters %+v", cnt)
	}
	for s, v := range cnt.StreamRingBufferFull {
		if (s == want && v != cnt.RingBufferFull) || (s != want && v != 0) {
			t.Errorf("stream %d: %d lost, want all %d in stream %d", s, v, cnt.RingBufferFull, want)
		}
	}
}

// BenchmarkClassifierStreams measures the classifier's cost per packet in
// the kernel (BPF_PROG_TEST_RUN) with one stream (no hash) and with four
// (the flow hash), side by side: compare the ns/pkt of the two.
func BenchmarkClassifierStreams(b *testing.B) {
	testenv.RequireRoot(b)
	rules, err := filter.Parse("udp,53")
	if err != nil {
		b.Fatal(err)
	}
	pkt6 := frame(nil, ipv6("fd00::1", "fd00::2", 17, nil, l4(40000, 53, 40)), 0x86dd)
	for _, streams := range []int{1, 4} {
		b.Run("streams="+strconv.Itoa(streams), func(b *testing.B) {
			c, err := Load(Options{SnapLen: 128, RingBufferSize: 64 << 20, Rules: rules, Streams: streams})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			rd, err := ringbuf.NewReader(c.RingBuffer())
			if err != nil {
				b.Fatal(err)
			}
			defer rd.Close()
			const batch = 10000 // fits the ring; drained between batches
			var total time.Duration
			for b.Loop() {
				_, per, err := c.Egress().Benchmark(pkt6, batch, nil)
				if err != nil {
					b.Fatal(err)
				}
				total += per * batch
				b.StopTimer()
				rd.SetDeadline(time.Now())
				for {
					if _, err := rd.Read(); err != nil {
						break
					}
				}
				b.StartTimer()
			}
			cnt, err := c.Counters()
			if err != nil {
				b.Fatal(err)
			}
			if cnt.RingBufferFull != 0 {
				b.Fatalf("%d packets lost to a full ring: the measure includes failed copies", cnt.RingBufferFull)
			}
			b.ReportMetric(float64(total.Nanoseconds())/float64(b.N*batch), "ns/pkt")
		})
	}
}
