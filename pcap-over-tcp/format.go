// Package pcapovertcp implements the PCAP-over-IP convention: a TCP server
// that, to every client that connects, writes a 24-byte libpcap global
// header followed by packet records for as long as the connection lives.
// No request is read from the client.
//
// The package has three parts: the stream format (Writer, Reader), a
// fan-out Server whose producer never waits for a consumer (every client
// has its own bounded queue; what a slow client misses is counted), and a
// Client that dials a server and reconnects with exponential backoff.
//
// The import path ends in pcap-over-tcp, the folder the design card names,
// and a Go package name cannot hold dashes: importers write
// `pcapovertcp "github.com/pano-observability/pano/pcap-over-tcp"`. The
// name is the package's own, so the alias only says it out loud (the
// import works without it); renaming the folder would break the layout
// every other document follows.
package pcapovertcp

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// Magic numbers of the libpcap file format, as read in the writer's byte
// order.
const (
	MagicMicroseconds uint32 = 0xa1b2c3d4
	MagicNanoseconds  uint32 = 0xa1b23c4d
)

// Sizes of the libpcap headers.
const (
	FileHeaderLen   = 24
	RecordHeaderLen = 16
)

// LinkTypeEthernet is DLT_EN10MB / LINKTYPE_ETHERNET.
const LinkTypeEthernet uint32 = 1

// DefaultSnapLen is the snap length used when none is configured.
const DefaultSnapLen uint32 = 65535

// MaxSnapLen bounds the snap length a Reader accepts, so that a corrupt
// header cannot make it allocate gigabytes. libpcap itself caps captures
// at 262144 bytes; 64 MiB leaves room for any real writer.
const MaxSnapLen uint32 = 64 << 20

// CaptureInfo describes one captured packet.
type CaptureInfo struct {
	Timestamp time.Time
	// CaptureLength is the number of bytes captured (incl_len). The
	// Writer and Server derive it from len(data) and the snap length;
	// the Reader fills it in.
	CaptureLength int
	// Length is the packet's length on the wire (orig_len). When it is
	// smaller than len(data) the writer uses len(data).
	Length         int
	InterfaceIndex int
}

// FileHeader is the libpcap global header of a stream.
type FileHeader struct {
	Magic        uint32 // as written, in the writer's byte order
	ByteOrder    binary.ByteOrder
	VersionMajor uint16
	VersionMinor uint16
	ThisZone     int32
	SigFigs      uint32
	SnapLen      uint32
	LinkType     uint32
	Nanosecond   bool
}

// FormatError reports malformed stream content and where it starts.
type FormatError struct {
	Offset int64 // byte offset in the stream
	What   string
	Err    error // io.ErrUnexpectedEOF for truncation, else nil
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("pcap stream: byte offset %d: %s", e.Offset, e.What)
}

func (e *FormatError) Unwrap() error { return e.Err }

// appendFileHeader appends a little-endian libpcap global header.
func appendFileHeader(dst []byte, snaplen, linktype uint32, nanosecond bool) []byte {
	magic := MagicMicroseconds
	if nanosecond {
		magic = MagicNanoseconds
	}
	dst = binary.LittleEndian.AppendUint32(dst, magic)
	dst = binary.LittleEndian.AppendUint16(dst, 2)
	dst = binary.LittleEndian.AppendUint16(dst, 4)
	dst = binary.LittleEndian.AppendUint32(dst, 0) // thiszone
	dst = binary.LittleEndian.AppendUint32(dst, 0) // sigfigs
	dst = binary.LittleEndian.AppendUint32(dst, snaplen)
	dst = binary.LittleEndian.AppendUint32(dst, linktype)
	return dst
}

// putRecordHeader encodes a record header into h for data truncated to
// snaplen and returns the number of data bytes to write after it.
func putRecordHeader(h *[RecordHeaderLen]byte, ci CaptureInfo, dataLen int, snaplen uint32, nanosecond bool) int {
	incl := dataLen
	if uint64(incl) > uint64(snaplen) {
		incl = int(snaplen)
	}
	orig := ci.Length
	if orig < dataLen {
		orig = dataLen
	}
	if uint64(orig) > 0xffffffff {
		orig = 0xffffffff
	}
	sec := ci.Timestamp.Unix()
	frac := uint32(ci.Timestamp.Nanosecond())
	if !nanosecond {
		frac /= 1000
	}
	if ci.Timestamp.IsZero() {
		sec, frac = 0, 0
	}
	binary.LittleEndian.PutUint32(h[0:], uint32(sec))
	binary.LittleEndian.PutUint32(h[4:], frac)
	binary.LittleEndian.PutUint32(h[8:], uint32(incl))
	binary.LittleEndian.PutUint32(h[12:], uint32(orig))
	return incl
}

// Writer writes a libpcap stream (little-endian, version 2.4). Wrap w in a
// bufio.Writer when it is a socket or file: each packet is two Write calls.
type Writer struct {
	w          io.Writer
	snaplen    uint32
	nanosecond bool
	hdr        [RecordHeaderLen]byte
}

// NewWriter writes the global header to w and returns a Writer for the
// records. snaplen 0 means DefaultSnapLen.
func NewWriter(w io.Writer, snaplen uint32, linktype uint32, nanosecond bool) (*Writer, error) {
	if snaplen == 0 {
		snaplen = DefaultSnapLen
	}
	var buf [FileHeaderLen]byte
	if _, err := w.Write(appendFileHeader(buf[:0], snaplen, linktype, nanosecond)); err != nil {
		return nil, fmt.Errorf("write pcap global header: %w", err)
	}
	return &Writer{w: w, snaplen: snaplen, nanosecond: nanosecond}, nil
}

// WritePacket writes one record: data truncated to the snap length, and
// orig_len from ci.Length (at least len(data)). ci.CaptureLength is
// ignored.
func (w *Writer) WritePacket(ci CaptureInfo, data []byte) error {
	n := putRecordHeader(&w.hdr, ci, len(data), w.snaplen, w.nanosecond)
	if _, err := w.w.Write(w.hdr[:]); err != nil {
		return fmt.Errorf("write pcap record header: %w", err)
	}
	if _, err := w.w.Write(data[:n]); err != nil {
		return fmt.Errorf("write pcap record data: %w", err)
	}
	return nil
}

// Reader reads a libpcap stream written in either byte order with either
// timestamp resolution.
type Reader struct {
	r      *bufio.Reader
	hdr    FileHeader
	offset int64
	limit  uint32 // largest incl_len accepted
	rec    [RecordHeaderLen]byte
	buf    []byte
}

// NewReader reads and validates the global header.
func NewReader(r io.Reader) (*Reader, error) {
	br, ok := r.(*bufio.Reader)
	if !ok || br.Size() < 64<<10 {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	rd := &Reader{r: br}
	var b [FileHeaderLen]byte
	n, err := io.ReadFull(br, b[:])
	if err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return nil, &FormatError{Offset: 0, What: "empty stream: no global header", Err: io.EOF}
		}
		return nil, &FormatError{Offset: int64(n), What: fmt.Sprintf("truncated global header: %d of %d bytes", n, FileHeaderLen), Err: io.ErrUnexpectedEOF}
	}
	rd.offset = FileHeaderLen
	h, ferr := parseFileHeader(b[:])
	if ferr != nil {
		return nil, ferr
	}
	rd.hdr = h
	rd.limit = h.SnapLen
	return rd, nil
}

func parseFileHeader(b []byte) (FileHeader, *FormatError) {
	var h FileHeader
	le := binary.LittleEndian.Uint32(b)
	be := binary.BigEndian.Uint32(b)
	switch {
	case le == MagicMicroseconds || le == MagicNanoseconds:
		h.ByteOrder, h.Magic = binary.LittleEndian, le
	case be == MagicMicroseconds || be == MagicNanoseconds:
		h.ByteOrder, h.Magic = binary.BigEndian, be
	default:
		what := fmt.Sprintf("bad magic 0x%08x: not a libpcap stream", be)
		if be == 0x0a0d0d0a {
			what += " (pcapng is not supported)"
		}
		return h, &FormatError{Offset: 0, What: what}
	}
	h.Nanosecond = h.Magic == MagicNanoseconds
	bo := h.ByteOrder
	h.VersionMajor = bo.Uint16(b[4:])
	h.VersionMinor = bo.Uint16(b[6:])
	h.ThisZone = int32(bo.Uint32(b[8:]))
	h.SigFigs = bo.Uint32(b[12:])
	h.SnapLen = bo.Uint32(b[16:])
	h.LinkType = bo.Uint32(b[20:])
	if h.VersionMajor != 2 || h.VersionMinor > 4 {
		return h, &FormatError{Offset: 4, What: fmt.Sprintf("unsupported version %d.%d (want 2.4)", h.VersionMajor, h.VersionMinor)}
	}
	if h.SnapLen == 0 {
		return h, &FormatError{Offset: 16, What: "snap length 0"}
	}
	if h.SnapLen > MaxSnapLen {
		return h, &FormatError{Offset: 16, What: fmt.Sprintf("snap length %d exceeds the maximum %d", h.SnapLen, MaxSnapLen)}
	}
	return h, nil
}

// Header returns the stream's global header.
func (r *Reader) Header() FileHeader { return r.hdr }

// Offset returns the number of bytes consumed so far.
func (r *Reader) Offset() int64 { return r.offset }

// ReadPacket returns the next record. The data slice is owned by the
// Reader and valid until the next call. At a clean end of stream (between
// records) the error is io.EOF; a malformed or truncated record gives a
// *FormatError.
func (r *Reader) ReadPacket() (CaptureInfo, []byte, error) {
	start := r.offset
	n, err := io.ReadFull(r.r, r.rec[:])
	r.offset += int64(n)
	if err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return CaptureInfo{}, nil, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return CaptureInfo{}, nil, &FormatError{Offset: start, What: fmt.Sprintf("truncated record header: %d of %d bytes", n, RecordHeaderLen), Err: io.ErrUnexpectedEOF}
		}
		return CaptureInfo{}, nil, fmt.Errorf("pcap stream: byte offset %d: %w", start, err)
	}
	bo := r.hdr.ByteOrder
	sec := bo.Uint32(r.rec[0:])
	frac := bo.Uint32(r.rec[4:])
	incl := bo.Uint32(r.rec[8:])
	orig := bo.Uint32(r.rec[12:])
	if incl > r.limit {
		return CaptureInfo{}, nil, &FormatError{Offset: start + 8, What: fmt.Sprintf("record length %d exceeds snap length %d", incl, r.limit)}
	}
	if incl > orig {
		return CaptureInfo{}, nil, &FormatError{Offset: start + 8, What: fmt.Sprintf("record length %d exceeds original length %d", incl, orig)}
	}
	data, n, err := r.readData(int(incl))
	r.offset += int64(n)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return CaptureInfo{}, nil, &FormatError{Offset: start + RecordHeaderLen, What: fmt.Sprintf("truncated record data: %d of %d bytes", n, incl), Err: io.ErrUnexpectedEOF}
		}
		return CaptureInfo{}, nil, fmt.Errorf("pcap stream: byte offset %d: %w", start+RecordHeaderLen, err)
	}
	nsec := int64(frac)
	if !r.hdr.Nanosecond {
		nsec *= 1000
	}
	ci := CaptureInfo{
		Timestamp:     time.Unix(int64(sec), nsec).UTC(),
		CaptureLength: int(incl),
		Length:        int(orig),
	}
	return ci, data, nil
}

// readData returns the next n bytes. Records that fit in the bufio
// buffer are returned in place (no copy); larger ones go to r.buf, which
// grows with the bytes that really arrive, so that a lying header costs
// no more memory than the data sent.
func (r *Reader) readData(n int) ([]byte, int, error) {
	if n <= r.r.Size() {
		p, err := r.r.Peek(n)
		if err != nil {
			_, _ = r.r.Discard(len(p))
			return nil, len(p), err
		}
		_, _ = r.r.Discard(n)
		return p, n, nil
	}
	const step = 1 << 20
	r.buf = r.buf[:0]
	for len(r.buf) < n {
		chunk := min(n-len(r.buf), step)
		r.buf = append(r.buf, make([]byte, chunk)...)
		got, err := io.ReadFull(r.r, r.buf[len(r.buf)-chunk:])
		if err != nil {
			return nil, len(r.buf) - chunk + got, err
		}
	}
	return r.buf, n, nil
}
