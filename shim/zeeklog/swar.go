package zeeklog

import (
	"encoding/binary"
	"math/bits"
)

// stringRun and digitRun test eight bytes at a time in a uint64 ("SIMD
// within a register"): on Zeek's string values and numbers that measured
// faster than a byte at a time (on the few bytes of a member name, or of
// a TSV field, a table lookup per byte is faster). Each test sets the top
// bit of every byte it flags. A borrow or carry can flag a byte above a
// flagged one by mistake, never one below, so the lowest flag of a word
// is exact, and it is the only one used.

const (
	lsbs = 0x0101010101010101
	msbs = 0x8080808080808080
)

// load reads b[i:i+8] as a little-endian word: byte i is the lowest.
func load(b []byte, i int) uint64 { return binary.LittleEndian.Uint64(b[i:]) }

// eqMask flags the bytes of x equal to the byte broadcast in c (c = b*lsbs).
func eqMask(x, c uint64) uint64 {
	y := x ^ c
	return (y - lsbs) &^ y & msbs
}

// ctrlMask flags the bytes of x below 0x20.
func ctrlMask(x uint64) uint64 { return (x - 0x20*lsbs) &^ x & msbs }

// stringMask flags the bytes of x that end a run of plain JSON string
// content: '"', '\\' and control characters.
func stringMask(x uint64) uint64 {
	return eqMask(x, '"'*lsbs) | eqMask(x, '\\'*lsbs) | ctrlMask(x)
}

// firstFlag returns the index of the lowest flagged byte of a nonzero mask.
func firstFlag(m uint64) int { return bits.TrailingZeros64(m) >> 3 }

// stringRun returns the index of the first byte at or after i that ends a
// run of plain JSON string content: '"', '\\' or a control character
// (see stringStop); len(src) when there is none.
func stringRun(src []byte, i int) int {
	for ; i+8 <= len(src); i += 8 {
		x := load(src, i)
		if m := stringMask(x); m != 0 {
			return i + firstFlag(m)
		}
	}
	for i < len(src) && !stringStop[src[i]] {
		i++
	}
	return i
}

// digitRun returns the index of the first byte at or after i that is not
// an ASCII digit, or len(b).
func digitRun(b []byte, i int) int {
	for ; i+8 <= len(b); i += 8 {
		x := load(b, i)
		// Below '0': the subtraction sets the top bit. Above '9': the
		// addition does. High bytes: x has it set.
		if m := ((x - '0'*lsbs) | (x + (0x7f-'9')*lsbs) | x) & msbs; m != 0 {
			return i + firstFlag(m)
		}
	}
	for i < len(b) && b[i]-'0' <= 9 {
		i++
	}
	return i
}
