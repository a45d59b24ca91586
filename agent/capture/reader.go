// Package capture reads packets from the classifier's ring buffer, gives
// them wall-clock timestamps, restores offloaded VLAN tags, drops
// cross-interface duplicates and hands them to a sink (the PCAP-over-TCP
// server).
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
	Packets    uint64 // handed to the sink
	Bytes      uint64 // their original lengths
	Duplicates uint64 // dropped by the deduplication window
	Malformed  uint64 // records too short to hold their metadata
}

// Config configures a Reader.
type Config struct {
	RingBuffer  *ebpf.Map
	Sink        Sink
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
	sink  Sink
	clock *Clock
	dedup *Dedup
	log   *slog.Logger

	mu     sync.Mutex // guards rd against use after Close in Fill
	closed bool

	// interfaces is how many interfaces are captured: with one, no
	// packet can be seen twice, and deduplication is skipped.
	interfaces atomic.Int32

	packets, bytes, duplicates, malformed atomic.Uint64
}

// NewReader opens the ring buffer.
func NewReader(cfg Config) (*Reader, error) {
	rd, err := ringbuf.NewReader(cfg.RingBuffer)
	if err != nil {
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reader{rd: rd, sink: cfg.Sink, clock: NewClock(), dedup: NewDedup(cfg.DedupWindow), log: log}, nil
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
	data := raw[bpf.MetaSize:]
	if capLen > len(data) || capLen < 14 && vlanPresent {
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
	r.packets.Add(1)
	r.bytes.Add(uint64(origLen))
	r.sink.WritePacket(pcapovertcp.CaptureInfo{
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
	return Stats{
		Packets:    r.packets.Load(),
		Bytes:      r.bytes.Load(),
		Duplicates: r.duplicates.Load(),
		Malformed:  r.malformed.Load(),
	}
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
