package pcapovertcp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

func TestWriterGlobalHeader(t *testing.T) {
	for _, tc := range []struct {
		nsec bool
		want string
	}{
		// magic, version 2.4, thiszone 0, sigfigs 0, snaplen 1500, linktype 1; little-endian.
		{false, "d4c3b2a1 0200 0400 00000000 00000000 dc050000 01000000"},
		{true, "4d3cb2a1 0200 0400 00000000 00000000 dc050000 01000000"},
	} {
		var buf bytes.Buffer
		if _, err := NewWriter(&buf, 1500, LinkTypeEthernet, tc.nsec); err != nil {
			t.Fatal(err)
		}
		want := strings.ReplaceAll(tc.want, " ", "")
		if got := hexString(buf.Bytes()); got != want {
			t.Errorf("nsec=%v: header %s, want %s", tc.nsec, got, want)
		}
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func TestWriterRecordAndTruncation(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, 100, LinkTypeEthernet, false)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte{0xab}, 150)
	ts := time.Unix(1700000000, 987654321)
	if err := w.WritePacket(CaptureInfo{Timestamp: ts, Length: 0}, data); err != nil {
		t.Fatal(err)
	}
	if err := w.WritePacket(CaptureInfo{Timestamp: ts, Length: 1500}, data[:60]); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()[FileHeaderLen:]
	le := binary.LittleEndian
	// First: truncated to the snap length, orig_len is the data length.
	if sec, usec, incl, orig := le.Uint32(b[0:]), le.Uint32(b[4:]), le.Uint32(b[8:]), le.Uint32(b[12:]); sec != 1700000000 || usec != 987654 || incl != 100 || orig != 150 {
		t.Fatalf("record 1 header: sec=%d usec=%d incl=%d orig=%d", sec, usec, incl, orig)
	}
	b = b[RecordHeaderLen+100:]
	// Second: shorter than the snap length; orig_len from CaptureInfo.
	if incl, orig := le.Uint32(b[8:]), le.Uint32(b[12:]); incl != 60 || orig != 1500 {
		t.Fatalf("record 2 header: incl=%d orig=%d", incl, orig)
	}
	if len(b) != RecordHeaderLen+60 {
		t.Fatalf("stream has %d bytes after record 1, want %d", len(b), RecordHeaderLen+60)
	}
}

// The Writer's bytes must equal gopacket's pcapgo Writer's for the same
// packets: an independent encoder of the same format.
func TestWriterMatchesPcapgo(t *testing.T) {
	pkts := append(fixturePackets(t), builtPackets(t, 20)...)
	for _, nsec := range []bool{false, true} {
		var ours, theirs bytes.Buffer
		w, err := NewWriter(&ours, 65535, LinkTypeEthernet, nsec)
		if err != nil {
			t.Fatal(err)
		}
		pw := pcapgo.NewWriter(&theirs)
		if nsec {
			pw = pcapgo.NewWriterNanos(&theirs)
		}
		if err := pw.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
			t.Fatal(err)
		}
		for _, p := range pkts {
			if err := w.WritePacket(p.ci, p.data); err != nil {
				t.Fatal(err)
			}
			ci := gopacket.CaptureInfo{Timestamp: p.ci.Timestamp, CaptureLength: len(p.data), Length: p.ci.Length}
			if err := pw.WritePacket(ci, p.data); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(ours.Bytes(), theirs.Bytes()) {
			t.Fatalf("nsec=%v: stream differs from pcapgo's (%d vs %d bytes)", nsec, ours.Len(), theirs.Len())
		}
	}
}

// The Reader must agree with pcapgo on real traces.
func TestReaderMatchesPcapgoOnTraces(t *testing.T) {
	for _, name := range []string{"zeek-dns-nsec.pcap", "zeek-dns-tkey.pcap", "zeek-dns-dnskey.pcap"} {
		f, err := os.Open("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		h, got := readAll(t, f)
		f.Close()
		want := readWithPcapgo(t, "testdata/"+name)
		if h.LinkType != 1 || h.VersionMajor != 2 || h.VersionMinor != 4 || h.Nanosecond {
			t.Errorf("%s: header %+v", name, h)
		}
		expectSame(t, got, want, int(h.SnapLen), true)
	}
}

// swapStream rewrites a little-endian stream made by Writer in big-endian
// order, the way a big-endian host writes it.
func swapStream(t *testing.T, le []byte) []byte {
	t.Helper()
	out := append([]byte(nil), le...)
	sw32 := func(b []byte) { binary.BigEndian.PutUint32(b, binary.LittleEndian.Uint32(b)) }
	sw16 := func(b []byte) { binary.BigEndian.PutUint16(b, binary.LittleEndian.Uint16(b)) }
	sw32(out[0:])
	sw16(out[4:])
	sw16(out[6:])
	for _, off := range []int{8, 12, 16, 20} {
		sw32(out[off:])
	}
	for p := FileHeaderLen; p < len(out); {
		incl := int(binary.LittleEndian.Uint32(out[p+8:]))
		for i := 0; i < 16; i += 4 {
			sw32(out[p+i:])
		}
		p += RecordHeaderLen + incl
	}
	return out
}

func TestReaderBothMagicsBothByteOrders(t *testing.T) {
	pkts := builtPackets(t, 10)
	for _, nsec := range []bool{false, true} {
		var buf bytes.Buffer
		w, err := NewWriter(&buf, 65535, 228, nsec) // 228: LINKTYPE_IPV4, any value is carried
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pkts {
			if err := w.WritePacket(p.ci, p.data); err != nil {
				t.Fatal(err)
			}
		}
		for _, big := range []bool{false, true} {
			stream := buf.Bytes()
			if big {
				stream = swapStream(t, stream)
			}
			h, got := readAll(t, bytes.NewReader(stream))
			if h.Nanosecond != nsec || h.LinkType != 228 || h.SnapLen != 65535 {
				t.Errorf("nsec=%v big=%v: header %+v", nsec, big, h)
			}
			if (h.ByteOrder == binary.BigEndian) != big {
				t.Errorf("nsec=%v big=%v: byte order %v", nsec, big, h.ByteOrder)
			}
			expectSame(t, got, pkts, 65535, nsec)
			// pcapgo must read the big-endian variant identically.
			expectSame(t, readAllPcapgo(t, bytes.NewReader(stream)), pkts, 65535, nsec)
		}
	}
}

func validStream(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, 200, LinkTypeEthernet, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{60, 100} {
		if err := w.WritePacket(CaptureInfo{Timestamp: time.Unix(1, 0)}, make([]byte, n)); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes() // records at 24 (60 bytes) and 100 (100 bytes); 216 bytes
}

func TestReaderErrors(t *testing.T) {
	valid := validStream(t)
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), valid...)) }
	le := binary.LittleEndian
	for _, tc := range []struct {
		name      string
		stream    []byte
		want      string // substring of the error
		offset    int64
		truncated bool
		atHeader  bool // NewReader fails (else the n-th ReadPacket)
	}{
		{"empty", nil, "empty stream", 0, false, true},
		{"short header", valid[:10], "truncated global header: 10 of 24 bytes", 10, true, true},
		{"bad magic", mod(func(b []byte) []byte { le.PutUint32(b, 0xdeadbeef); return b }), "bad magic 0xefbeadde", 0, false, true},
		{"pcapng", mod(func(b []byte) []byte { copy(b, []byte{0x0a, 0x0d, 0x0d, 0x0a}); return b }), "pcapng is not supported", 0, false, true},
		{"version 3.0", mod(func(b []byte) []byte { le.PutUint16(b[4:], 3); le.PutUint16(b[6:], 0); return b }), "unsupported version 3.0", 4, false, true},
		{"version 2.5", mod(func(b []byte) []byte { le.PutUint16(b[6:], 5); return b }), "unsupported version 2.5", 4, false, true},
		{"snaplen 0", mod(func(b []byte) []byte { le.PutUint32(b[16:], 0); return b }), "snap length 0", 16, false, true},
		{"snaplen huge", mod(func(b []byte) []byte { le.PutUint32(b[16:], 0xffffffff); return b }), "snap length 4294967295 exceeds", 16, false, true},
		{"incl > snaplen", mod(func(b []byte) []byte { le.PutUint32(b[100+8:], 201); le.PutUint32(b[100+12:], 300); return b }), "record length 201 exceeds snap length 200", 108, false, false},
		{"incl > orig", mod(func(b []byte) []byte { le.PutUint32(b[100+12:], 99); return b }), "record length 100 exceeds original length 99", 108, false, false},
		{"short record header", valid[:100+7], "truncated record header: 7 of 16 bytes", 100, true, false},
		{"short record data", valid[:100+16+40], "truncated record data: 40 of 100 bytes", 116, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(tc.stream))
			if !tc.atHeader {
				if err != nil {
					t.Fatalf("NewReader: %v", err)
				}
				if _, _, err = r.ReadPacket(); err != nil {
					t.Fatalf("first record: %v", err)
				}
				_, _, err = r.ReadPacket()
			}
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T), want a *FormatError", err, err)
			}
			if !strings.Contains(err.Error(), tc.want) || fe.Offset != tc.offset {
				t.Fatalf("error %q at offset %d, want %q at offset %d", err, fe.Offset, tc.want, tc.offset)
			}
			if errors.Is(err, io.ErrUnexpectedEOF) != tc.truncated {
				t.Fatalf("errors.Is(err, io.ErrUnexpectedEOF) = %v, want %v", !tc.truncated, tc.truncated)
			}
		})
	}
}

func TestReaderCleanEOF(t *testing.T) {
	r, err := NewReader(bytes.NewReader(validStream(t)))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, _, err := r.ReadPacket(); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := r.ReadPacket(); err != io.EOF {
		t.Fatalf("at the end: %v, want io.EOF", err)
	}
	if r.Offset() != 216 {
		t.Fatalf("offset %d, want 216", r.Offset())
	}
}

func TestWriterAndReaderAllocateNothingPerPacket(t *testing.T) {
	pkts := builtPackets(t, 8)
	w, err := NewWriter(io.Discard, 65535, LinkTypeEthernet, false)
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		p := pkts[i%len(pkts)]
		i++
		_ = w.WritePacket(p.ci, p.data)
	}); n != 0 {
		t.Errorf("Writer.WritePacket: %v allocations per packet, want 0", n)
	}

	var buf bytes.Buffer
	w, _ = NewWriter(&buf, 65535, LinkTypeEthernet, false)
	for range 2000 {
		_ = w.WritePacket(pkts[0].ci, pkts[0].data)
	}
	r, err := NewReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	_, _, _ = r.ReadPacket() // sizes the buffer
	if n := testing.AllocsPerRun(1000, func() { _, _, _ = r.ReadPacket() }); n != 0 {
		t.Errorf("Reader.ReadPacket: %v allocations per packet, want 0", n)
	}
}
