package produce

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/klauspost/compress/gzip"
	snappy "github.com/klauspost/compress/snappy/xerial"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Message is one record for Send, which copies it into a batch: its
// buffers may be reused as soon as Send returns.
type Message struct {
	Key     []byte // nil: no key
	Value   []byte
	Headers []Header
}

// Header is a record header.
type Header struct{ Key, Value []byte }

// batchHeaderLen is the size of a record batch (magic 2) before its
// records: base offset 8, length 4, leader epoch 4, magic 1, CRC 4,
// attributes 2, last offset delta 4, first and max timestamps 8+8,
// producer id 8, epoch 2, first sequence 4, record count 4.
const batchHeaderLen = 61

// Offsets in the batch header.
const (
	offLength     = 8
	offEpoch      = 12
	offMagic      = 16
	offCRC        = 17
	offAttributes = 21 // the CRC covers from here to the end
	offLastDelta  = 23
	offFirstTime  = 27
	offMaxTime    = 35
	offProducer   = 43
	offProdEpoch  = 51
	offSequence   = 53
	offCount      = 57
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// batch is a partition's records of one produce request, encoded as they
// arrive: a record is copied once, into buf, which is the request's
// payload (uncompressed) or the input of the compressor.
type batch struct {
	buf    []byte // header room, then the records
	packed []byte // the batch compressed, when it is
	n      int32
	ackers []Acker
	first  time.Time // of the first record: linger and timestamps
	last   int64     // timestamp delta of the last record, ms
}

// batchPool recycles batch buffers: a fresh half-megabyte buffer per
// request costs page faults and clearing on every request.
type batchPool struct{ p sync.Pool }

func (bp *batchPool) get(capacity int) *batch {
	if b, ok := bp.p.Get().(*batch); ok {
		return b
	}
	return &batch{buf: make([]byte, batchHeaderLen, capacity), ackers: make([]Acker, 0, 256)}
}

func (bp *batchPool) put(b *batch) {
	clear(b.ackers)
	b.buf, b.n, b.ackers, b.last = b.buf[:batchHeaderLen], 0, b.ackers[:0], 0
	bp.p.Put(b)
}

// recordLen is the encoded size of m's record body (after its length).
func recordLen(m *Message, tsDelta int64, offDelta int32) int {
	n := 1 + varintLen(tsDelta) + varintLen(int64(offDelta))
	if m.Key == nil {
		n += varintLen(-1)
	} else {
		n += varintLen(int64(len(m.Key))) + len(m.Key)
	}
	n += varintLen(int64(len(m.Value))) + len(m.Value) + varintLen(int64(len(m.Headers)))
	for _, h := range m.Headers {
		n += varintLen(int64(len(h.Key))) + len(h.Key) + varintLen(int64(len(h.Value))) + len(h.Value)
	}
	return n
}

// encodedLen is what m adds to a batch, its length prefix included.
func encodedLen(m *Message, tsDelta int64, offDelta int32) int {
	n := recordLen(m, tsDelta, offDelta)
	return varintLen(int64(n)) + n
}

// add appends m as the batch's next record, stamped now.
func (b *batch) add(m *Message, now time.Time, a Acker) {
	if b.n == 0 {
		b.first = now
	}
	ts := max(now.Sub(b.first).Milliseconds(), b.last)
	e := b.buf
	e = binary.AppendVarint(e, int64(recordLen(m, ts, b.n)))
	e = append(e, 0) // attributes
	e = binary.AppendVarint(e, ts)
	e = binary.AppendVarint(e, int64(b.n))
	if m.Key == nil {
		e = binary.AppendVarint(e, -1)
	} else {
		e = binary.AppendVarint(e, int64(len(m.Key)))
		e = append(e, m.Key...)
	}
	e = binary.AppendVarint(e, int64(len(m.Value)))
	e = append(e, m.Value...)
	e = binary.AppendVarint(e, int64(len(m.Headers)))
	for _, h := range m.Headers {
		e = binary.AppendVarint(e, int64(len(h.Key)))
		e = append(e, h.Key...)
		e = binary.AppendVarint(e, int64(len(h.Value)))
		e = append(e, h.Value...)
	}
	b.buf = e
	b.n++
	b.last = ts
	b.ackers = append(b.ackers, a)
}

// producerIdentity is what every batch of a producer carries.
type producerIdentity struct {
	id    int64
	epoch int16
}

// seal writes the header of b's records, first numbered seq, and returns
// the record batch to send: b.buf itself, or, compressed, out's.
func (b *batch) seal(id producerIdentity, seq int32, c *compressor) ([]byte, error) {
	wire := b.buf
	if c != nil {
		var err error
		if b.packed, err = c.compress(b.packed[:0], b.buf[batchHeaderLen:]); err != nil {
			return nil, fmt.Errorf("compress %d records: %w", b.n, err)
		}
		wire = b.packed
	}
	h := wire[:batchHeaderLen]
	first := b.first.UnixMilli()
	binary.BigEndian.PutUint64(h, 0)
	binary.BigEndian.PutUint32(h[offLength:], uint32(len(wire)-offEpoch))
	binary.BigEndian.PutUint32(h[offEpoch:], 0xffffffff) // no leader epoch: a producer does not know it
	h[offMagic] = 2
	var attributes uint16
	if c != nil {
		attributes = uint16(c.codec)
	}
	binary.BigEndian.PutUint16(h[offAttributes:], attributes)
	binary.BigEndian.PutUint32(h[offLastDelta:], uint32(b.n-1))
	binary.BigEndian.PutUint64(h[offFirstTime:], uint64(first))
	binary.BigEndian.PutUint64(h[offMaxTime:], uint64(first+b.last))
	binary.BigEndian.PutUint64(h[offProducer:], uint64(id.id))
	binary.BigEndian.PutUint16(h[offProdEpoch:], uint16(id.epoch))
	binary.BigEndian.PutUint32(h[offSequence:], uint32(seq))
	binary.BigEndian.PutUint32(h[offCount:], uint32(b.n))
	binary.BigEndian.PutUint32(h[offCRC:], crc32.Checksum(wire[offAttributes:], crcTable))
	return wire, nil
}

// compressor compresses the records of one lane's batches, one batch at
// a time, keeping its state from batch to batch.
type compressor struct {
	codec sarama.CompressionCodec
	out   sliceWriter
	snap  []byte
	lz4   *lz4.Writer
	gzip  *gzip.Writer
	zstd  *zstd.Encoder
}

// newCompressor returns nil for no compression.
func newCompressor(codec sarama.CompressionCodec) (*compressor, error) {
	c := &compressor{codec: codec}
	switch codec {
	case sarama.CompressionNone:
		return nil, nil
	case sarama.CompressionLZ4:
		// 64 KiB blocks and no content checksum, as Kafka's own
		// producer writes them: the batch has its CRC already.
		c.lz4 = lz4.NewWriter(nil)
		if err := c.lz4.Apply(lz4.BlockSizeOption(lz4.Block64Kb), lz4.ChecksumOption(false)); err != nil {
			return nil, err
		}
	case sarama.CompressionGZIP:
		c.gzip = gzip.NewWriter(nil)
	case sarama.CompressionZSTD:
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithZeroFrames(true))
		if err != nil {
			return nil, err
		}
		c.zstd = enc
	case sarama.CompressionSnappy:
	default:
		return nil, fmt.Errorf("compression codec %d", codec)
	}
	return c, nil
}

// compress appends to dst batchHeaderLen bytes of room for the header,
// then records compressed.
func (c *compressor) compress(dst, records []byte) ([]byte, error) {
	var room [batchHeaderLen]byte
	c.out.b = append(dst, room[:]...)
	defer func() { c.out.b = nil }()
	var w io.WriteCloser
	switch c.codec {
	case sarama.CompressionSnappy:
		// Kafka reads snappy in xerial's framing, whose header Encode
		// writes only into an empty buffer.
		c.snap = snappy.Encode(c.snap[:0], records)
		c.out.b = append(c.out.b, c.snap...)
		return c.out.b, nil
	case sarama.CompressionZSTD:
		c.out.b = c.zstd.EncodeAll(records, c.out.b)
		return c.out.b, nil
	case sarama.CompressionLZ4:
		c.lz4.Reset(&c.out)
		w = c.lz4
	case sarama.CompressionGZIP:
		c.gzip.Reset(&c.out)
		w = c.gzip
	}
	if _, err := w.Write(records); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return c.out.b, nil
}

// sliceWriter appends what is written to b.
type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// varintLen is the size of v as a zig-zag varint.
func varintLen(v int64) int {
	u := uint64(v<<1) ^ uint64(v>>63)
	n := 1
	for u >= 0x80 {
		u >>= 7
		n++
	}
	return n
}
