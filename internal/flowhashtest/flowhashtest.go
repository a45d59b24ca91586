// Package flowhashtest is the reference model of the classifier's flow
// hash, in Go: which of N PCAP-over-TCP streams a packet goes to. The
// classifier computes it in the kernel (agent/bpf/capture.c,
// flow_stream); the tests of agent/bpf, agent and internal/e2etest hold
// it to this copy. Only tests import it: the agent itself never needs
// the hash outside the kernel.
//
// The hash is symmetric: both directions of a conversation map to the
// same stream. Each endpoint (address, port) is hashed on its own and the
// two endpoint hashes are combined smaller first. Packets without ports
// hash with port 0. Later fragments of a datagram are not hashed by the
// classifier: they take their first fragment's stream.
package flowhashtest

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// Flow is what the hash reads from a packet.
type Flow struct {
	Src, Dst         netip.Addr // both IPv4 or both IPv6
	SrcPort, DstPort uint16     // 0 when the packet has no ports
	Proto            uint8      // IP protocol number (IPv6: after extension headers)
}

// Stream returns f's stream out of n (0..n-1). n <= 1, or an invalid
// address (a non-IP frame), gives 0.
func Stream(f Flow, n int) int {
	if n <= 1 || !f.Src.IsValid() || !f.Dst.IsValid() {
		return 0
	}
	family := uint32(6)
	if f.Src.Is4() {
		family = 4
	}
	a := endpoint(f.Src, f.SrcPort)
	b := endpoint(f.Dst, f.DstPort)
	h := mix(0, min(a, b))
	h = mix(h, max(a, b))
	h = mix(h, family<<8|uint32(f.Proto))
	h = fmix(h)
	return int(uint64(h) * uint64(n) >> 32)
}

// endpoint hashes an address as four big-endian words (IPv4 in the
// first, the others zero) and a port.
func endpoint(addr netip.Addr, port uint16) uint32 {
	var b [16]byte
	if addr.Is4() {
		a4 := addr.As4()
		copy(b[:], a4[:])
	} else {
		b = addr.As16()
	}
	var h uint32
	for i := range 4 {
		h = mix(h, binary.BigEndian.Uint32(b[i*4:]))
	}
	return fmix(mix(h, uint32(port)))
}

// mix is one MurmurHash3 round.
func mix(h, k uint32) uint32 {
	k *= 0xcc9e2d51
	k = bits.RotateLeft32(k, 15)
	k *= 0x1b873593
	h ^= k
	h = bits.RotateLeft32(h, 13)
	return h*5 + 0xe6546b64
}

// fmix is MurmurHash3's finaliser.
func fmix(h uint32) uint32 {
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}
