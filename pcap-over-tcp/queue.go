package pcapovertcp

import "encoding/binary"

// ring is a byte queue of whole pcap records. It starts small and grows up
// to max, so that idle clients cost little memory. The producer appends
// under the owning client's lock; the consumer borrows the readable bytes,
// writes them to the socket without the lock, then releases them. Bytes
// are never overwritten while borrowed: the producer only writes into free
// space, and growth copies into a new array.
type ring struct {
	buf     []byte
	start   int // index of the first readable byte
	n       int // readable bytes
	packets int // whole records queued
	max     int
}

const ringInitial = 64 << 10

func newRing(max int) ring {
	return ring{buf: make([]byte, min(ringInitial, max)), max: max}
}

// push appends a record header and its data, or reports false when the
// queue cannot hold them without exceeding max.
func (q *ring) push(h []byte, data []byte) bool {
	need := len(h) + len(data)
	if q.n+need > len(q.buf) {
		if q.n+need > q.max {
			return false
		}
		q.grow(q.n + need)
	}
	q.write(h)
	q.write(data)
	q.packets++
	return true
}

func (q *ring) write(p []byte) {
	end := (q.start + q.n) % len(q.buf)
	c := copy(q.buf[end:], p)
	if c < len(p) {
		copy(q.buf, p[c:])
	}
	q.n += len(p)
}

func (q *ring) grow(need int) {
	size := max(len(q.buf), 1)
	for size < need {
		size *= 2
	}
	size = min(size, q.max)
	nb := make([]byte, size)
	c := copy(nb, q.buf[q.start:min(q.start+q.n, len(q.buf))])
	if c < q.n {
		copy(nb[c:], q.buf[:q.n-c])
	}
	q.buf, q.start = nb, 0
}

// peek returns up to limit readable bytes as up to two slices (the second
// is non-empty when the data wraps).
func (q *ring) peek(limit int) (a, b []byte) {
	n := min(q.n, limit)
	if n == 0 {
		return nil, nil
	}
	end := q.start + n
	if end <= len(q.buf) {
		a = q.buf[q.start:end]
	} else {
		a = q.buf[q.start:]
		b = q.buf[:end-len(q.buf)]
	}
	return a, b
}

// release drops n borrowed bytes from the front. The consumer tells how
// many records those bytes completed.
func (q *ring) release(n, records int) {
	q.n -= n
	q.packets -= records
	if q.n == 0 {
		q.start = 0
		return
	}
	q.start = (q.start + n) % len(q.buf)
}

// recordCursor counts records in a byte stream of back-to-back pcap
// records written by this package (little-endian headers), across calls,
// so the consumer knows how many packets a write completed.
type recordCursor struct {
	hdr     [RecordHeaderLen]byte
	hdrHave int // header bytes seen of the current record
	left    int // data bytes left in the current record
}

// advance consumes p and returns how many records ended inside it.
func (c *recordCursor) advance(p []byte) int {
	done := 0
	for len(p) > 0 {
		if c.hdrHave < RecordHeaderLen {
			k := copy(c.hdr[c.hdrHave:], p)
			c.hdrHave += k
			p = p[k:]
			if c.hdrHave < RecordHeaderLen {
				break
			}
			c.left = int(binary.LittleEndian.Uint32(c.hdr[8:]))
			if c.left == 0 {
				c.hdrHave = 0
				done++
			}
			continue
		}
		k := min(c.left, len(p))
		c.left -= k
		p = p[k:]
		if c.left == 0 {
			c.hdrHave = 0
			done++
		}
	}
	return done
}
