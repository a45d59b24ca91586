package pcapovertcp

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"
)

// FuzzReader feeds arbitrary bytes to the Reader. It must never panic or
// over-allocate; errors must be FormatErrors inside the input; every
// packet it returns must satisfy the format's invariants and survive a
// round trip through the Writer. Seeds: testdata/fuzz/FuzzReader.
func FuzzReader(f *testing.F) {
	f.Fuzz(func(t *testing.T, stream []byte) {
		r, err := NewReader(bytes.NewReader(stream))
		if err != nil {
			checkFormatError(t, err, 0, len(stream))
			return
		}
		h := r.Header()
		if h.SnapLen == 0 || h.SnapLen > MaxSnapLen || h.VersionMajor != 2 {
			t.Fatalf("accepted header %+v", h)
		}
		var out bytes.Buffer
		w, err := NewWriter(&out, h.SnapLen, h.LinkType, h.Nanosecond)
		if err != nil {
			t.Fatal(err)
		}
		var pkts []testPacket
		for {
			prev := r.Offset()
			ci, data, err := r.ReadPacket()
			if err == io.EOF {
				if r.Offset() != int64(len(stream)) {
					t.Fatalf("io.EOF at offset %d of %d", r.Offset(), len(stream))
				}
				break
			}
			if err != nil {
				checkFormatError(t, err, int(prev), len(stream))
				break
			}
			if len(data) != ci.CaptureLength || uint32(len(data)) > h.SnapLen || len(data) > ci.Length {
				t.Fatalf("packet: %d bytes, incl %d, orig %d, snaplen %d", len(data), ci.CaptureLength, ci.Length, h.SnapLen)
			}
			if r.Offset() != prev+RecordHeaderLen+int64(len(data)) {
				t.Fatalf("offset %d after a %d-byte record at %d", r.Offset(), len(data), prev)
			}
			if err := w.WritePacket(ci, data); err != nil {
				t.Fatal(err)
			}
			pkts = append(pkts, testPacket{ci: ci, data: append([]byte(nil), data...)})
		}
		_, again := readAll(t, &out)
		if len(again) != len(pkts) {
			t.Fatalf("round trip: %d packets, want %d", len(again), len(pkts))
		}
		for i := range pkts {
			a, b := again[i], pkts[i]
			if !bytes.Equal(a.data, b.data) || a.ci.Length != b.ci.Length || !sameStamp(a.ci.Timestamp, b.ci.Timestamp) {
				t.Fatalf("round trip, packet %d: %+v, want %+v", i, a.ci, b.ci)
			}
		}
	})
}

// sameStamp compares timestamps as the format can carry them: 32-bit
// seconds (a fraction of a second out of range carries into them).
func sameStamp(a, b time.Time) bool {
	return uint32(a.Unix()) == uint32(b.Unix()) && a.Nanosecond() == b.Nanosecond()
}

func checkFormatError(t *testing.T, err error, from, size int) {
	t.Helper()
	var fe *FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *FormatError", err, err)
	}
	if fe.Offset < int64(from) || fe.Offset > int64(size) {
		t.Fatalf("error %q: offset %d outside [%d, %d]", err, fe.Offset, from, size)
	}
}

// FuzzQueue checks the per-client queue and record counting against a
// plain model: ops with the low bit set push a record of that many bytes,
// others take up to that many bytes out, as a partial socket write would.
func FuzzQueue(f *testing.F) {
	f.Add([]byte{201, 2, 255, 7, 9, 64, 33, 1, 0, 3, 5, 7})
	f.Add(bytes.Repeat([]byte{99, 98, 97, 20}, 40))
	f.Fuzz(func(t *testing.T, ops []byte) {
		q := ring{buf: make([]byte, 16), max: 1024} // small: growth and wrap-around happen early
		var model []byte
		var records []int // sizes of the records queued, in order
		var cur recordCursor
		var hdr [RecordHeaderLen]byte
		for i, op := range ops {
			if op&1 == 1 {
				data := bytes.Repeat([]byte{byte(i)}, int(op))
				n := putRecordHeader(&hdr, CaptureInfo{Timestamp: time.Unix(int64(i), 0)}, len(data), 65535, false)
				ok := q.push(hdr[:], data[:n])
				if fits := len(model)+RecordHeaderLen+n <= q.max; ok != fits {
					t.Fatalf("op %d: push returned %v with %d of %d bytes used", i, ok, len(model), q.max)
				}
				if ok {
					model = append(append(model, hdr[:]...), data[:n]...)
					records = append(records, RecordHeaderLen+n)
				}
			} else {
				a, b := q.peek(int(op))
				got := append(append([]byte(nil), a...), b...)
				if want := model[:min(len(model), int(op))]; !bytes.Equal(got, want) {
					t.Fatalf("op %d: peeked %x, want %x", i, got, want)
				}
				done := cur.advance(a) + cur.advance(b)
				q.release(len(got), done)
				model = model[len(got):]
				// Records fully consumed: drop them from the model's list.
				consumed := len(got)
				for consumed > 0 && len(records) > 0 {
					if records[0] <= consumed {
						consumed -= records[0]
						records = records[1:]
					} else {
						records[0] -= consumed
						consumed = 0
					}
				}
			}
			if q.n != len(model) || len(q.buf) > q.max {
				t.Fatalf("op %d: queue holds %d bytes in %d, model %d", i, q.n, len(q.buf), len(model))
			}
			whole := len(records)
			if q.packets != whole {
				t.Fatalf("op %d: queue counts %d records, model %d", i, q.packets, whole)
			}
		}
	})
}
