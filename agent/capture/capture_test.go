package capture

import (
	"encoding/binary"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pano-observability/pano/agent/bpf"
	pcapovertcp "github.com/pano-observability/pano/pcap-over-tcp"
)

type recorder struct {
	ci   []pcapovertcp.CaptureInfo
	data [][]byte
}

func (r *recorder) WritePacket(ci pcapovertcp.CaptureInfo, data []byte) {
	r.ci = append(r.ci, ci)
	r.data = append(r.data, append([]byte(nil), data...))
}

func record(ts uint64, ifindex uint32, dir uint8, origLen int, vlan bool, tci, tpid uint16, data []byte) []byte {
	b := make([]byte, bpf.MetaSize, bpf.MetaSize+len(data))
	binary.NativeEndian.PutUint64(b[0:], ts)
	binary.NativeEndian.PutUint32(b[8:], ifindex)
	binary.NativeEndian.PutUint32(b[12:], uint32(origLen))
	binary.NativeEndian.PutUint32(b[16:], uint32(len(data)))
	binary.NativeEndian.PutUint16(b[20:], tci)
	binary.NativeEndian.PutUint16(b[22:], tpid)
	b[24] = dir
	if vlan {
		b[25] = 1
	}
	return append(b, data...)
}

// ipv4Frame is an Ethernet frame with a minimal IPv4 header and payload.
func ipv4Frame(mac byte, ttl byte, payload string) []byte {
	f := make([]byte, 14+20)
	f[0], f[6] = mac, mac
	f[12], f[13] = 0x08, 0x00
	f[14] = 0x45
	f[14+8] = ttl
	f[14+9] = 17
	f[14+10] = ttl // stands in for a checksum that changes with the TTL
	return append(f, payload...)
}

func TestHandleRestoresOffloadedVLANTag(t *testing.T) {
	rec := &recorder{}
	r := testReader(rec)
	frame := ipv4Frame(1, 64, "dns")
	r.handle(record(1, 3, 1, len(frame), true, 0x2007, 0x8100, frame), nil)
	if len(rec.data) != 1 {
		t.Fatal("no packet")
	}
	got := rec.data[0]
	want := append(append(append([]byte(nil), frame[:12]...), 0x81, 0x00, 0x20, 0x07), frame[12:]...)
	if string(got) != string(want) {
		t.Fatalf("frame % x\nwant  % x", got, want)
	}
	if ci := rec.ci[0]; ci.Length != len(frame)+4 || ci.CaptureLength != len(frame)+4 || ci.InterfaceIndex != 3 {
		t.Fatalf("capture info %+v", ci)
	}
}

func TestHandleTruncatedAndMalformed(t *testing.T) {
	rec := &recorder{}
	r := testReader(rec)
	frame := ipv4Frame(1, 64, "a longer payload")
	r.handle(record(1, 3, 1, 1500, false, 0, 0, frame), nil)
	if ci := rec.ci[0]; ci.Length != 1500 || ci.CaptureLength != len(frame) {
		t.Fatalf("truncated packet: %+v", ci)
	}
	r.handle(make([]byte, 10), nil)
	bad := record(1, 3, 1, 100, false, 0, 0, frame)
	binary.NativeEndian.PutUint32(bad[16:], 1000) // claims more bytes than it has
	r.handle(bad, nil)
	if st := r.Stats(); st.Malformed != 2 || st.Packets != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// testReader is a Reader without a ring buffer, for handle.
func testReader(sinks ...Sink) *Reader {
	return &Reader{sinks: sinks, streams: make([]streamCounters, len(sinks)), clock: NewClock()}
}

// TestHandleRoutesByStream: each record goes to the sink its metadata
// names, is counted there, and a stream without a sink is malformed.
func TestHandleRoutesByStream(t *testing.T) {
	recs := []*recorder{{}, {}, {}}
	r := testReader(recs[0], recs[1], recs[2])
	for i, stream := range []byte{0, 2, 2, 1, 2, 3} {
		frame := ipv4Frame(1, 64, strconv.Itoa(i))
		rec := record(uint64(i+1), 3, 1, len(frame), false, 0, 0, frame)
		rec[bpf.MetaStreamOffset] = stream
		r.handle(rec, nil)
	}
	for i, want := range []int{1, 1, 3} {
		if len(recs[i].data) != want {
			t.Errorf("stream %d: %d packets, want %d", i, len(recs[i].data), want)
		}
	}
	if string(recs[1].data[0][34:]) != "3" {
		t.Errorf("stream 1 got %q", recs[1].data[0][34:])
	}
	st := r.Stats()
	if st.Packets != 5 || st.Malformed != 1 || len(st.Streams) != 3 || st.Streams[2].Packets != 3 ||
		st.Streams[2].Bytes != 3*35 || st.Bytes != 5*35 {
		t.Fatalf("stats %+v", st)
	}
}

func TestClockIsWallClock(t *testing.T) {
	c := NewClock()
	before := time.Now()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		t.Fatal(err)
	}
	got := c.Time(uint64(ts.Nano()))
	after := time.Now()
	if got.Before(before.Add(-time.Millisecond)) || got.After(after.Add(time.Millisecond)) {
		t.Fatalf("boot-time reading mapped to %v, want between %v and %v", got, before, after)
	}
}

// fakeClocks are a wall clock and a boot clock that differ by off; each
// boot clock read takes gap (a preemption when large).
type fakeClocks struct{ now, off, gap int64 }

func (f *fakeClocks) clock() *Clock {
	return &Clock{
		realtime: func() int64 { f.now += 100; return f.now },
		boottime: func() (int64, error) { f.now += f.gap; b := f.now - f.off; f.now += f.gap; return b, nil },
	}
}

// A measurement whose realtime reads straddle a preemption is not
// trusted: it would move the offset by up to half the gap, stamping a
// response before its query (seen in the whole-chain test under load).
func TestClockIgnoresPreemptedReads(t *testing.T) {
	f := &fakeClocks{now: 1_000_000_000_000, off: 995_000_000_000}
	c := f.clock()
	if !c.Update() {
		t.Fatal("a tight measurement was refused")
	}
	good := c.Time(0)
	f.gap = int64(400 * time.Microsecond) // every sample preempted
	f.off -= 200_000                      // and the measured offset moves
	if c.Update() {
		t.Error("a measurement with a 800 µs bracket was accepted")
	}
	if got := c.Time(0); !got.Equal(good) {
		t.Errorf("a refused measurement moved the clock by %v", got.Sub(good))
	}
	f.gap = 0
	if !c.Update() {
		t.Error("a tight measurement after preempted ones was refused")
	}
}

// A new offset is slewed in: boot-to-wall never runs backwards, and the
// change is complete after change/slewPPM; a step of a second or more is
// followed at once.
func TestClockSlewsOffsetChanges(t *testing.T) {
	f := &fakeClocks{now: 1_000_000_000_000, off: 995_000_000_000}
	c := f.clock()
	c.Update()
	b0 := f.now - f.off
	f.off += 300_000 // the wall clock moved 300 µs against the boot clock
	c.Update()
	anchor := f.now - f.off
	prev := c.Time(uint64(anchor))
	for b := anchor + 50_000; b < anchor+int64(2*time.Second); b += 50_000 {
		got := c.Time(uint64(b))
		if !got.After(prev) {
			t.Fatalf("boot time +%v maps to %v, not after %v", time.Duration(b-b0), got, prev)
		}
		prev = got
	}
	// No jump at the update: still the old offset there.
	if got, want := c.Time(uint64(anchor)), time.Unix(0, anchor+f.off-300_000); got.Sub(want).Abs() > time.Microsecond {
		t.Errorf("at the update: %v, want %v (the old offset)", got, want)
	}
	// 300 µs at 1000 ppm: done within 300 ms.
	late := anchor + int64(time.Second)
	if got, want := c.Time(uint64(late)), time.Unix(0, late+f.off); got.Sub(want).Abs() > time.Microsecond {
		t.Errorf("1 s after the update: %v, want %v (the new offset)", got, want)
	}
	f.off -= int64(5 * time.Second) // a step of the wall clock
	c.Update()
	b := f.now - f.off
	if got, want := c.Time(uint64(b)), time.Unix(0, b+f.off); got.Sub(want).Abs() > time.Microsecond {
		t.Errorf("after a 5 s step: %v, want %v", got, want)
	}
}

func TestDedup(t *testing.T) {
	d := NewDedup(2 * time.Millisecond)
	t0 := time.Unix(1000, 0)
	a := ipv4Frame(1, 64, "query")
	routed := ipv4Frame(2, 63, "query") // other MACs, TTL and checksum
	other := ipv4Frame(1, 64, "other")
	if d.Duplicate(t0, 1, a) {
		t.Fatal("first sighting is a duplicate")
	}
	if !d.Duplicate(t0.Add(time.Millisecond), 2, routed) {
		t.Error("same packet on another interface within the window not a duplicate")
	}
	if d.Duplicate(t0.Add(time.Millisecond), 1, a) {
		t.Error("same interface counted as a duplicate (a retransmission)")
	}
	if d.Duplicate(t0.Add(time.Millisecond), 2, other) {
		t.Error("different payload counted as a duplicate")
	}
	if d.Duplicate(t0.Add(10*time.Millisecond), 3, a) {
		t.Error("a sighting outside the window counted as a duplicate")
	}
	if d.Duplicate(t0, 1, []byte{1, 2, 3}) || d.Duplicate(t0, 2, []byte{1, 2, 3}) {
		t.Error("non-IP frame deduplicated")
	}
	if NewDedup(0).Duplicate(t0, 1, a) {
		t.Error("disabled dedup reported a duplicate")
	}
	// A busy table: many distinct packets, then their copies on another
	// interface, all within the window, are all recognised.
	d = NewDedup(2 * time.Millisecond)
	const n = 2000 // 1M packets/s over 2ms, the size the table promises
	for i := range n {
		if d.Duplicate(t0.Add(time.Duration(i)*time.Microsecond), 1, ipv4Frame(1, 64, strconv.Itoa(i))) {
			t.Fatalf("distinct packet %d reported as a duplicate", i)
		}
	}
	missed := 0
	for i := range n {
		if !d.Duplicate(t0.Add(time.Duration(n/2+i)*time.Microsecond), 2, ipv4Frame(2, 63, strconv.Itoa(i))) {
			missed++
		}
	}
	if missed != 0 {
		t.Errorf("%d of %d duplicates missed", missed, n)
	}
}

func BenchmarkDedup(b *testing.B) {
	d := NewDedup(2 * time.Millisecond)
	frames := make([][]byte, 1024)
	for i := range frames {
		frames[i] = ipv4Frame(1, 64, "a dns query of a typical size, about sixty bytes "+strconv.Itoa(i))
	}
	t0 := time.Now()
	b.ResetTimer()
	for i := range b.N {
		d.Duplicate(t0.Add(time.Duration(i)*time.Microsecond), uint32(1+i&1), frames[i&1023])
	}
}
