package bpf

import (
	"encoding/binary"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/pano-observability/pano/internal/flowhashtest"
)

// fragHdr is an IPv6 fragment header as ipv6() takes it: next header
// first, then the header's 8 bytes.
func fragHdr(off uint16, more bool, id uint32) []byte {
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

// datagram is a UDP datagram cut into a first fragment and two later
// ones.
type datagram struct {
	flow         flowhashtest.Flow
	first, later [][]byte // later: the fragments after the first
}

func fragmented(v6 bool, sport, dport uint16, id uint16) datagram {
	d := datagram{flow: flowhashtest.Flow{SrcPort: sport, DstPort: dport, Proto: 17}}
	if v6 {
		d.flow.Src, d.flow.Dst = netip.MustParseAddr("fd00::2"), netip.MustParseAddr("fd00::1")
		ip := func(off uint16, more bool, payload []byte) []byte {
			return frame(nil, ipv6("fd00::2", "fd00::1", 17, [][]byte{fragHdr(off, more, uint32(id))}, payload), 0x86dd)
		}
		d.first = [][]byte{ip(0, true, l4(sport, dport, 1400))}
		d.later = [][]byte{ip(1408, true, make([]byte, 1408)), ip(2816, false, make([]byte, 100))}
		return d
	}
	d.flow.Src, d.flow.Dst = netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.1")
	ip := func(off uint16, more bool, payload []byte) []byte {
		return frame(nil, ipv4("198.18.0.2", "198.18.0.1", 17, id, off, more, 0, payload), 0x0800)
	}
	d.first = [][]byte{ip(0, true, l4(sport, dport, 1472))}
	d.later = [][]byte{ip(1480, true, make([]byte, 1480)), ip(2960, false, make([]byte, 100))}
	return d
}

// TestClassifierFragmentBeforeFirst: later fragments that come before
// their first fragment cannot be captured (nothing says yet that the
// datagram is wanted); once the first fragment matches they are counted
// as lost, in the datagram's stream. Those of a datagram that does not
// match are not counted, and do not stick to a later datagram that
// reuses the IP ID.
func TestClassifierFragmentBeforeFirst(t *testing.T) {
	const n = 4
	c, _ := loadStreams(t, "udp,53", n)
	// Captured means matched here: nothing else is lost in this test,
	// which the counters confirm at the end.
	captured := func(prog *ebpf.Program, data []byte) bool {
		t.Helper()
		before, err := c.Counters()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := prog.Run(&ebpf.RunOptions{Data: data}); err != nil {
			t.Fatal(err)
		}
		after, err := c.Counters()
		if err != nil {
			t.Fatal(err)
		}
		return after.Matched > before.Matched
	}
	wantLost := make([]uint64, n)
	for i := range 40 {
		v6 := i%2 == 1
		id := uint16(100 + i)
		d := fragmented(v6, 53, uint16(30000+i*71), id)
		// The last fragment first, then the first fragment, then the
		// middle one: one lost, two captured.
		if captured(c.Ingress(), d.later[1]) {
			t.Fatalf("datagram %d: a later fragment captured before its first fragment", i)
		}
		if !captured(c.Ingress(), d.first[0]) || !captured(c.Ingress(), d.later[0]) {
			t.Fatalf("datagram %d: the first fragment, or a later one after it, not captured", i)
		}
		wantLost[flowhashtest.Stream(d.flow, n)]++

		// A datagram to port 54, its later fragments first: not ours,
		// not counted. Then one to port 53 with the same ID, in order:
		// it must not inherit port 54's early fragments.
		other := fragmented(v6, 54, uint16(30000+i*71), id+1000)
		for _, f := range append(other.later, other.first...) {
			if captured(c.Ingress(), f) {
				t.Fatalf("datagram %d: a fragment of a datagram to port 54 captured", i)
			}
		}
		again := fragmented(v6, 53, uint16(30000+i*71), id+1000)
		for _, f := range append(again.first, again.later...) {
			if !captured(c.Ingress(), f) {
				t.Fatalf("datagram %d: a fragment of an in-order datagram not captured", i)
			}
		}
	}
	cnt, err := c.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if cnt.FragmentBeforeFirst != 40 {
		t.Errorf("%d fragments counted as come before their first, want 40", cnt.FragmentBeforeFirst)
	}
	for s := range n {
		if cnt.StreamFragmentBeforeFirst[s] != wantLost[s] {
			t.Errorf("stream %d: %d fragments lost before their first, want %d (by stream %v)", s, cnt.StreamFragmentBeforeFirst[s], wantLost[s], cnt.StreamFragmentBeforeFirst)
		}
	}
	if cnt.RingBufferFull != 0 || cnt.ScratchBusy != 0 || cnt.IPv6TooManyExtHeaders != 0 {
		t.Errorf("other losses counted: %+v", cnt)
	}
}

// TestClassifierIPv6TooManyExtHeaders: the parser follows six IPv6
// extension headers. A packet with more has no known protocol or ports;
// when a rule would have matched it on direction and addresses, it is
// counted as lost, else it is not ours.
func TestClassifierIPv6TooManyExtHeaders(t *testing.T) {
	c := loadForTest(t, "udp,53,fd00::/8;tcp,53,fd00::/8,in", MaxSnapLen)
	rd, err := ringbuf.NewReader(c.RingBuffer())
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	dstOpts := []byte{60, 0, 0, 1, 4, 0, 0, 0, 0} // next, len=0, PadN option
	chain := func(k int) [][]byte {
		var ext [][]byte
		for range k {
			ext = append(ext, dstOpts)
		}
		return ext
	}
	pkt := func(src string, k int, dport uint16) []byte {
		dst := strings.Replace(src, "::2", "::1", 1)
		return frame(nil, ipv6(src, dst, 17, chain(k), l4(40000, dport, 30)), 0x86dd)
	}
	cases := []struct {
		name     string
		prog     *ebpf.Program
		data     []byte
		captured bool
		lost     bool
	}{
		{"six headers, port 53", c.Egress(), pkt("fd00::2", MaxIPv6ExtHeaders, 53), true, false},
		{"six headers, port 54", c.Egress(), pkt("fd00::2", MaxIPv6ExtHeaders, 54), false, false},
		{"seven headers, port 53", c.Egress(), pkt("fd00::2", MaxIPv6ExtHeaders+1, 53), false, true},
		{"twelve headers, port 53, ingress", c.Ingress(), pkt("fd00::2", 12, 53), false, true},
		// Ports unknown: port 54 is as likely to have been 53.
		{"seven headers, port 54", c.Egress(), pkt("fd00::2", MaxIPv6ExtHeaders+1, 54), false, true},
		{"seven headers, outside every rule's prefix", c.Egress(), pkt("2001:db8::2", MaxIPv6ExtHeaders+1, 53), false, false},
	}
	var lost uint64
	for _, tc := range cases {
		before, err := c.Counters()
		if err != nil {
			t.Fatal(err)
		}
		_, got := run(t, c, rd, tc.prog, tc.data)
		after, err := c.Counters()
		if err != nil {
			t.Fatal(err)
		}
		counted := after.IPv6TooManyExtHeaders - before.IPv6TooManyExtHeaders
		if got != tc.captured || (counted == 1) != tc.lost || counted > 1 {
			t.Errorf("%s: captured %v, counted as lost %d; want captured %v, lost %v", tc.name, got, counted, tc.captured, tc.lost)
		}
		if tc.lost {
			lost++
		}
	}
	// Everything is either ours or not: "any,any" captures the deep packet.
	all := loadForTest(t, "any,any", MaxSnapLen)
	if _, err := all.Egress().Run(&ebpf.RunOptions{Data: pkt("fd00::2", 8, 53)}); err != nil {
		t.Fatal(err)
	}
	if cnt, err := all.Counters(); err != nil || cnt.Matched != 1 || cnt.IPv6TooManyExtHeaders != 0 {
		t.Errorf("any,any: counters %+v (%v), want the packet matched and nothing lost", cnt, err)
	}
	cnt, err := c.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if cnt.IPv6TooManyExtHeaders != lost {
		t.Errorf("%d IPv6 packets counted as lost to extension headers, want %d", cnt.IPv6TooManyExtHeaders, lost)
	}
}

// setScratchBusy writes every CPU's scratch flag, as a run of the
// classifier holding the slot would.
func setScratchBusy(t *testing.T, c *Classifier, v uint32) {
	t.Helper()
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	flags := make([]uint32, cpus)
	for i := range flags {
		flags[i] = v
	}
	zero := uint32(0)
	if err := c.objs.ScratchBusy.Put(&zero, flags); err != nil {
		t.Fatalf("write scratch flags: %v", err)
	}
}

// TestClassifierScratchBusy: a run that finds its CPU's scratch slot
// taken (on PREEMPT_RT, by the run it preempted) must not write into it:
// it loses the packet, counted against the packet's stream. Once the
// slot is free again packets are captured, and every run leaves the slot
// free.
func TestClassifierScratchBusy(t *testing.T) {
	const n = 4
	c, rd := loadStreams(t, "udp,53", n)
	f := flowhashtest.Flow{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2"), SrcPort: 41000, DstPort: 53, Proto: 17}
	pkt := frame(nil, ipv4("198.18.0.1", "198.18.0.2", 17, 1, 0, false, 0, l4(41000, 53, 60)), 0x0800)

	setScratchBusy(t, c, 1)
	const lost = 10
	for range lost {
		if _, ok := run(t, c, rd, c.Egress(), pkt); ok {
			t.Fatal("captured through a busy scratch slot")
		}
	}
	cnt, err := c.Counters()
	if err != nil {
		t.Fatal(err)
	}
	want := flowhashtest.Stream(f, n)
	if cnt.ScratchBusy != lost || cnt.StreamScratchBusy[want] != lost || cnt.Matched != lost {
		t.Fatalf("counters %+v: want %d matched and lost to a busy slot, in stream %d", cnt, lost, want)
	}

	setScratchBusy(t, c, 0)
	rec, ok := run(t, c, rd, c.Egress(), pkt)
	if !ok || string(rec[MetaSize:]) != string(pkt) {
		t.Fatal("not captured, or captured wrong, once the slot was free")
	}
	// Every path out of the copy frees the slot, the one of a full ring
	// buffer too (1 MiB, nobody reads).
	big := frame(nil, ipv4("198.18.0.1", "198.18.0.2", 17, 1, 0, false, 0, l4(41000, 53, 1400)), 0x0800)
	if _, err := c.Egress().Run(&ebpf.RunOptions{Data: big, Repeat: 1000}); err != nil {
		t.Fatal(err)
	}
	var flags []uint32
	zero := uint32(0)
	if err := c.objs.ScratchBusy.Lookup(&zero, &flags); err != nil {
		t.Fatal(err)
	}
	for cpu, v := range flags {
		if v != 0 {
			t.Errorf("CPU %d's scratch slot left taken", cpu)
		}
	}
	if cnt, err := c.Counters(); err != nil || cnt.RingBufferFull == 0 || cnt.ScratchBusy != lost {
		t.Errorf("counters %+v (%v): want some lost to a full ring buffer, no more to a busy slot", cnt, err)
	}
}

// TestClassifierConcurrentRuns runs the classifier on every CPU at once
// with packets of different sizes and contents: every record must be one
// of the packets, whole; no packet may go missing uncounted. On a kernel
// without PREEMPT_RT no run can find its slot busy.
func TestClassifierConcurrentRuns(t *testing.T) {
	c, rd := loadStreams(t, "udp,53", 1)
	const senders, repeat = 8, 150
	pkts := make(map[string]bool)
	var data [senders][]byte
	for i := range senders {
		p := l4(uint16(42000+i), 53, 40+97*i)
		for j := 8; j < len(p); j++ {
			p[j] = byte(i)
		}
		data[i] = frame(nil, ipv4("198.18.0.1", "198.18.0.2", 17, uint16(i), 0, false, 0, p), 0x0800)
		pkts[string(data[i])] = true
	}
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for i := range senders {
		wg.Go(func() {
			if _, err := c.Egress().Run(&ebpf.RunOptions{Data: data[i], Repeat: repeat}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	records := 0
	rd.SetDeadline(time.Now().Add(100 * time.Millisecond))
	for {
		rec, err := rd.Read()
		if err != nil {
			break
		}
		records++
		capLen := binary.NativeEndian.Uint32(rec.RawSample[16:])
		if int(capLen) != len(rec.RawSample)-MetaSize || !pkts[string(rec.RawSample[MetaSize:])] {
			t.Fatalf("record %d (%d bytes, cap_len %d) is none of the packets sent", records, len(rec.RawSample), capLen)
		}
	}
	cnt, err := c.Counters()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d records, counters %+v", records, cnt)
	if uint64(records)+cnt.RingBufferFull+cnt.ScratchBusy != senders*repeat || cnt.Matched != senders*repeat {
		t.Errorf("%d runs, %d records, %d lost to a full ring, %d to a busy slot", senders*repeat, records, cnt.RingBufferFull, cnt.ScratchBusy)
	}
	if !realtimeKernel() && cnt.ScratchBusy != 0 {
		t.Errorf("%d runs found their slot busy on a kernel without PREEMPT_RT", cnt.ScratchBusy)
	}
}

func realtimeKernel() bool {
	b, err := os.ReadFile("/sys/kernel/realtime")
	return err == nil && strings.TrimSpace(string(b)) == "1"
}
