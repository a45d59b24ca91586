package pcapovertcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"time"
)

// Dial connects to a PCAP-over-TCP server and reads the stream's global
// header. The caller closes conn; closing it also ends ReadPacket. ctx
// bounds the connect and the header read only.
func Dial(ctx context.Context, addr string) (*Reader, net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("pcap-over-tcp: dial %s: %w", addr, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	r, err := NewReader(conn)
	if !stop() || err != nil {
		conn.Close()
		if err == nil || ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, nil, fmt.Errorf("pcap-over-tcp: %s: %w", addr, err)
	}
	return r, conn, nil
}

// ClientConfig configures a Client. Zero values mean the defaults.
type ClientConfig struct {
	Addr        string
	MinBackoff  time.Duration // first retry delay, default 100ms
	MaxBackoff  time.Duration // default 30s
	DialTimeout time.Duration // connect and global header, default 5s
	Logger      *slog.Logger
}

// Client reads a PCAP-over-TCP stream and reconnects, with exponential
// backoff and jitter, whenever the connection fails or the stream ends.
type Client struct {
	cfg ClientConfig
	log *slog.Logger

	connects, packets, failures atomic.Uint64
}

// NewClient returns a Client; nothing happens until Run or Packets.
func NewClient(cfg ClientConfig) *Client {
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(30*time.Second, cfg.MinBackoff)
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Client{cfg: cfg, log: cfg.Logger}
}

// Handler receives each packet with the header of the stream it came in.
// data is valid only during the call.
type Handler func(h FileHeader, ci CaptureInfo, data []byte) error

// Run connects and calls fn for every packet until ctx is done (it then
// returns ctx.Err()) or fn returns an error (returned as is). Connection
// failures, stream ends and malformed streams lead to a reconnect after a
// backoff that doubles up to MaxBackoff and resets once a stream header
// has been read.
func (c *Client) Run(ctx context.Context, fn Handler) error {
	backoff := c.cfg.MinBackoff
	for {
		fnErr, err := c.session(ctx, fn)
		if fnErr != nil {
			return fnErr
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.failures.Add(1)
		var fe *connectedError
		if errors.As(err, &fe) {
			backoff = c.cfg.MinBackoff
			err = fe.err
		}
		// Jitter (±20%) keeps many clients from reconnecting in lockstep.
		wait := time.Duration(float64(backoff) * (0.8 + 0.4*rand.Float64()))
		c.log.Warn("pcap-over-tcp stream lost; reconnecting", "addr", c.cfg.Addr, "err", err, "in", wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, c.cfg.MaxBackoff)
	}
}

// connectedError marks a failure after the stream header was read, which
// resets the backoff.
type connectedError struct{ err error }

func (e *connectedError) Error() string { return e.err.Error() }
func (e *connectedError) Unwrap() error { return e.err }

func (c *Client) session(ctx context.Context, fn Handler) (fnErr, err error) {
	dctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	r, conn, err := Dial(dctx, c.cfg.Addr)
	cancel()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c.connects.Add(1)
	h := r.Header()
	c.log.Info("pcap-over-tcp stream connected", "addr", c.cfg.Addr, "snaplen", h.SnapLen, "linktype", h.LinkType, "nanosecond", h.Nanosecond)
	for {
		ci, data, err := r.ReadPacket()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("pcap-over-tcp: %s: stream ended at byte offset %d", c.cfg.Addr, r.Offset())
			}
			return nil, &connectedError{err}
		}
		c.packets.Add(1)
		if err := fn(h, ci, data); err != nil {
			return err, nil
		}
	}
}

// Packet is a packet received by Packets; Data is its own copy.
type Packet struct {
	Header FileHeader
	Info   CaptureInfo
	Data   []byte
}

// Packets runs the client in a goroutine and delivers copies of the
// packets on the returned channel, which is closed once ctx is done.
// Delivery blocks the reading side: a consumer that stops receiving stops
// the client (the server then drops for it).
func (c *Client) Packets(ctx context.Context) <-chan Packet {
	ch := make(chan Packet, 256)
	go func() {
		defer close(ch)
		_ = c.Run(ctx, func(h FileHeader, ci CaptureInfo, data []byte) error {
			select {
			case ch <- Packet{Header: h, Info: ci, Data: append([]byte(nil), data...)}:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	return ch
}

// ClientCounters are a Client's totals.
type ClientCounters struct {
	Connects, Packets, Failures uint64
}

// Counters returns the totals so far.
func (c *Client) Counters() ClientCounters {
	return ClientCounters{Connects: c.connects.Load(), Packets: c.packets.Load(), Failures: c.failures.Load()}
}
