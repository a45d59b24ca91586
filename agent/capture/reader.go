// Package capture reads packets from the classifier's ring buffer, gives
// them wall-clock timestamps, restores offloaded VLAN tags, drops
// cross-interface duplicates and hands each to the sink (a PCAP-over-TCP
// server) of the stream the classifier chose for it.
package capture

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/pano-observability/pano/agent/bpf"
	pcapovertcp "github.com/pano-observability/pano/pcap-over-tcp"
)

// Sink receives captured packets. WritePacket must not keep data.
type Sink interface {
	WritePacket(ci pcapovertcp.CaptureInfo, data []byte)
}

// Stats are the reader's totals.
type Stats struct {
	Packets    uint64 // handed to the sinks
	Bytes      uint64 // their original lengths
	Duplicates uint64 // dropped by the deduplication window
	Malformed  uint64 // records too short to hold their metadata, or for no stream
	// Streams splits Packets and Bytes by stream (one entry per sink).
	Streams []StreamStats
}

// StreamStats are one stream's totals.
type StreamStats struct {
	Packets, Bytes uint64
}

// Config configures a Reader.
type Config struct {
	RingBuffer *ebpf.Map
	// Sinks are the streams, indexed by the stream number the classifier
	// writes into each record's metadata (one sink: every packet).
	Sinks       []Sink
	DedupWindow time.Duration // 0 disables deduplication
	Logger      *slog.Logger
}

// PollInterval is how often the reader drains the ring buffer. The
// classifier does not wake the reader for each packet (that costs more
// than the copy); it wakes it only when the ring is a quarter full.
const PollInterval = 20 * time.Millisecond

// Reader drains the ring buffer into a Sink.
type Reader struct {
	rd    *ringbuf.Reader
	sinks []Sink
	clock *Clock
	dedup *Dedup
	log   *slog.Logger

	mu     sync.Mutex // guards rd against use after Close in Fill
	closed bool

	// interfaces is how many interfaces are captured: with one, no
	// packet can be seen twice, and deduplication is skipped.
	interfaces atomic.Int32

	duplicates, malformed atomic.Uint64
	streams               []streamCounters // one per sink
}

type streamCounters struct {
	packets, bytes atomic.Uint64
	_              [48]byte // own cache line: the scrape reads while the reader writes
}

// NewReader opens the ring buffer.
func NewReader(cfg Config) (*Reader, error) {
	if len(cfg.Sinks) == 0 || len(cfg.Sinks) > bpf.MaxStreams {
		return nil, fmt.Errorf("%d sinks: want 1..%d", len(cfg.Sinks), bpf.MaxStreams)
	}
	rd, err := ringbuf.NewReader(cfg.RingBuffer)
	if err != nil {
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reader{
		rd: rd, sinks: cfg.Sinks, streams: make([]streamCounters, len(cfg.Sinks)),
		clock: NewClock(), dedup: NewDedup(cfg.DedupWindow), log: log,
	}, nil
}

// Run reads until ctx is done, then delivers what is still in the ring
// buffer and returns nil. It must be called once.
func (r *Reader) Run(ctx context.Context) error {
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				// Unblock the read; records still in the ring come
				// out before ErrFlushed.
				if err := r.rd.Flush(); err != nil {
					r.log.Warn("flush ring buffer", "error", err)
				}
				return
			case <-stop:
				return
			case <-tick.C:
				r.clock.Update()
			}
		}
	}()

	var rec ringbuf.Record
	var frame []byte
	r.rd.SetDeadline(time.Now().Add(PollInterval))
	for {
		err := r.rd.ReadInto(&rec)
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			// Everything that was in the ring has been read.
			r.rd.SetDeadline(time.Now().Add(PollInterval))
			continue
		case errors.Is(err, ringbuf.ErrFlushed):
			if ctx.Err() != nil {
				return nil
			}
			continue
		case errors.Is(err, os.ErrClosed):
			return nil
		default:
			return fmt.Errorf("read ring buffer: %w", err)
		}
		frame = r.handle(rec.RawSample, frame)
	}
}

// handle decodes one record; buf is reused for VLAN re-insertion.
func (r *Reader) handle(raw, buf []byte) []byte {
	if len(raw) < bpf.MetaSize {
		r.malformed.Add(1)
		return buf
	}
	ts := binary.NativeEndian.Uint64(raw[0:])
	ifindex := binary.NativeEndian.Uint32(raw[8:])
	origLen := int(binary.NativeEndian.Uint32(raw[12:]))
	capLen := int(binary.NativeEndian.Uint32(raw[16:]))
	vlanTCI := binary.NativeEndian.Uint16(raw[20:])
	vlanProto := binary.NativeEndian.Uint16(raw[22:])
	vlanPresent := raw[25] != 0
	stream := int(raw[bpf.MetaStreamOffset])
	data := raw[bpf.MetaSize:]
	if capLen > len(data) || capLen < 14 && vlanPresent || stream >= len(r.sinks) {
		r.malformed.Add(1)
		return buf
	}
	data = data[:capLen]

	// The outer VLAN tag was offloaded into the skb's metadata (as a NIC
	// or the 8021q driver does); put it back where a packet socket (and
	// so tcpdump) shows it.
	if vlanPresent {
		buf = append(buf[:0], data[:12]...)
		buf = binary.BigEndian.AppendUint16(buf, vlanProto)
		buf = binary.BigEndian.AppendUint16(buf, vlanTCI)
		buf = append(buf, data[12:]...)
		data = buf
		origLen += 4
	}

	at := r.clock.Time(ts)
	if r.interfaces.Load() > 1 && r.dedup.Duplicate(at, ifindex, data) {
		r.duplicates.Add(1)
		return buf
	}
	sc := &r.streams[stream]
	sc.packets.Add(1)
	sc.bytes.Add(uint64(origLen))
	r.sinks[stream].WritePacket(pcapovertcp.CaptureInfo{
		Timestamp:      at,
		CaptureLength:  len(data),
		Length:         origLen,
		InterfaceIndex: int(ifindex),
	}, data)
	return buf
}

// SetInterfaces tells the reader how many interfaces are captured.
func (r *Reader) SetInterfaces(n int) { r.interfaces.Store(int32(n)) }

// Stats returns the totals so far.
func (r *Reader) Stats() Stats {
	st := Stats{
		Duplicates: r.duplicates.Load(),
		Malformed:  r.malformed.Load(),
		Streams:    make([]StreamStats, len(r.streams)),
	}
	for i := range r.streams {
		s := StreamStats{Packets: r.streams[i].packets.Load(), Bytes: r.streams[i].bytes.Load()}
		st.Streams[i] = s
		st.Packets += s.Packets
		st.Bytes += s.Bytes
	}
	return st
}

// Fill returns the bytes waiting in the ring buffer and its size.
func (r *Reader) Fill() (used, size int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, r.rd.BufferSize()
	}
	return r.rd.AvailableBytes(), r.rd.BufferSize()
}

// Close releases the ring buffer; call it after Run returned.
func (r *Reader) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	return r.rd.Close()
}
