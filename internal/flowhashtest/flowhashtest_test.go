package flowhashtest

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

func randomFlow(rng *rand.Rand, v6 bool) Flow {
	var f Flow
	if v6 {
		var a, b [16]byte
		for i := range a {
			a[i], b[i] = byte(rng.Uint32()), byte(rng.Uint32())
		}
		f.Src, f.Dst = netip.AddrFrom16(a), netip.AddrFrom16(b)
	} else {
		var a, b [4]byte
		for i := range a {
			a[i], b[i] = byte(rng.Uint32()), byte(rng.Uint32())
		}
		f.Src, f.Dst = netip.AddrFrom4(a), netip.AddrFrom4(b)
	}
	f.Proto = []uint8{6, 17, 1}[rng.IntN(3)]
	if f.Proto != 1 {
		f.SrcPort, f.DstPort = uint16(rng.Uint32()), uint16(rng.Uint32())
	}
	return f
}

func reverse(f Flow) Flow {
	return Flow{Src: f.Dst, Dst: f.Src, SrcPort: f.DstPort, DstPort: f.SrcPort, Proto: f.Proto}
}

func TestSymmetric(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		f := randomFlow(rng, i%2 == 1)
		for _, n := range []int{2, 3, 4, 7, 64} {
			s, r := Stream(f, n), Stream(reverse(f), n)
			if s != r {
				t.Fatalf("%+v: stream %d one way, %d the other (n=%d)", f, s, r, n)
			}
			if s < 0 || s >= n {
				t.Fatalf("%+v: stream %d out of 0..%d", f, s, n-1)
			}
		}
	}
	// Same address both ends, ports swapped: still symmetric.
	a := netip.MustParseAddr("198.18.0.1")
	f := Flow{Src: a, Dst: a, SrcPort: 1000, DstPort: 53, Proto: 17}
	if Stream(f, 4) != Stream(reverse(f), 4) {
		t.Error("same address both ends: not symmetric")
	}
}

func TestOneStreamOrNotIP(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 1000 {
		f := randomFlow(rng, false)
		if Stream(f, 1) != 0 || Stream(f, 0) != 0 {
			t.Fatal("n <= 1 must give stream 0")
		}
	}
	if Stream(Flow{}, 4) != 0 {
		t.Error("a non-IP frame must go to stream 0")
	}
}

// TestDistinguishes checks that every input field changes the stream of
// some flows: a field left out of the hash would show here.
func TestDistinguishes(t *testing.T) {
	base := Flow{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2"), SrcPort: 40000, DstPort: 53, Proto: 17}
	changes := map[string]func(f Flow, i int) Flow{
		"source port":      func(f Flow, i int) Flow { f.SrcPort = uint16(1024 + i); return f },
		"destination port": func(f Flow, i int) Flow { f.DstPort = uint16(1024 + i); return f },
		"source address": func(f Flow, i int) Flow {
			f.Src = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
			return f
		},
		"destination address": func(f Flow, i int) Flow {
			f.Dst = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
			return f
		},
		"protocol": func(f Flow, i int) Flow { f.Proto = uint8(i); return f },
		"ipv6 low word": func(f Flow, i int) Flow {
			f.Src = netip.AddrFrom16([16]byte{0: 0xfd, 14: byte(i >> 8), 15: byte(i)})
			f.Dst = netip.MustParseAddr("fd00::2")
			return f
		},
	}
	for name, change := range changes {
		seen := map[int]bool{}
		for i := range 200 {
			seen[Stream(change(base, i), 4)] = true
		}
		if len(seen) != 4 {
			t.Errorf("changing the %s reaches only streams %v", name, seen)
		}
	}
}

// TestBalance: the traffic the agent splits is mostly one resolver (or a
// few) talking to many clients, or one client from many source ports;
// the streams must get even shares.
func TestBalance(t *testing.T) {
	server := netip.MustParseAddr("198.18.0.2")
	server6 := netip.MustParseAddr("fd00::2")
	for _, n := range []int{2, 3, 4, 8} {
		counts := make([]int, n)
		const flows = 40000
		for p := range flows / 2 {
			port := uint16(1024 + p)
			counts[Stream(Flow{Src: netip.MustParseAddr("198.18.0.1"), Dst: server, SrcPort: port, DstPort: 53, Proto: 17}, n)]++
			counts[Stream(Flow{Src: netip.MustParseAddr("fd00::1"), Dst: server6, SrcPort: port, DstPort: 53, Proto: 17}, n)]++
		}
		for i, c := range counts {
			share := float64(c) * float64(n) / flows
			if share < 0.95 || share > 1.05 {
				t.Errorf("n=%d: stream %d has %.3f of its fair share (%v)", n, i, share, counts)
			}
		}
		// Many clients, one port each.
		clear(counts)
		for c := range flows {
			src := netip.AddrFrom4([4]byte{10, byte(c >> 16), byte(c >> 8), byte(c)})
			counts[Stream(Flow{Src: src, Dst: server, SrcPort: 53000, DstPort: 53, Proto: 17}, n)]++
		}
		for i, c := range counts {
			share := float64(c) * float64(n) / flows
			if share < 0.95 || share > 1.05 {
				t.Errorf("n=%d, many clients: stream %d has %.3f of its fair share (%v)", n, i, share, counts)
			}
		}
	}
}

func BenchmarkStream(b *testing.B) {
	f := Flow{Src: netip.MustParseAddr("fd00::1"), Dst: netip.MustParseAddr("fd00::2"), SrcPort: 40000, DstPort: 53, Proto: 17}
	for i := 0; b.Loop(); i++ {
		f.SrcPort = uint16(i)
		_ = Stream(f, 4)
	}
}
