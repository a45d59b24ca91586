package pcapovertcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pano-observability/pano/internal/lograte"
)

// Defaults of ServerConfig.
const (
	DefaultAddr         = "127.0.0.1:57012"
	DefaultMaxClients   = 16
	DefaultQueueBytes   = 8 << 20
	DefaultWriteTimeout = 10 * time.Second
)

// writeChunk bounds one socket write, so that the write deadline measures
// progress (a slow reader that keeps reading is not dropped) and not the
// time to drain a whole queue.
const writeChunk = 256 << 10

// ServerConfig configures a Server. Zero values mean the defaults.
type ServerConfig struct {
	Addr         string // default "127.0.0.1:57012"
	MaxClients   int    // default 16
	QueueBytes   int    // per-client queue, default 8 MiB
	SnapLen      uint32 // default 65535
	Nanosecond   bool   // default false (microsecond magic 0xa1b2c3d4)
	LinkType     uint32 // default 1 (EN10MB)
	Allow        []netip.Prefix
	WriteTimeout time.Duration // a client that accepts no byte for this long is dropped; default 10s
	Logger       *slog.Logger
}

// Drop and rejection reasons, as used in Stats and metric labels.
const (
	DropQueueFull    = "queue_full"   // the client's queue had no room for the packet
	DropDisconnected = "disconnected" // packets still queued when the client went away
	RejectNotAllowed = "not_allowed"  // the client's address is outside Allow
	RejectMaxClients = "max_clients"  // MaxClients clients were already connected
)

// Server fans packets out to every connected client. WritePacket never
// blocks: each client has its own bounded queue, and a packet that does
// not fit is dropped for that client only.
type Server struct {
	cfg    ServerConfig
	log    *slog.Logger
	ln     net.Listener
	header []byte

	mu      sync.Mutex // guards changes to clients and closed
	clients atomic.Pointer[[]*client]
	closed  bool
	nextID  uint64
	wg      sync.WaitGroup // client goroutines

	closeOnce sync.Once

	written, writtenBytes, truncated         atomic.Uint64
	sentPackets, sentBytes, socketWrites     atomic.Uint64
	dropQueueFull, dropDisconnected          atomic.Uint64
	accepted, rejectNotAllowed, rejectMaxCli atomic.Uint64

	// A scanner or a reconnect loop can knock thousands of times a
	// second: the counters count every rejection, the log says it once
	// per reason every 10 s.
	rejectLog *lograte.Limiter
}

type client struct {
	id     uint64
	conn   net.Conn
	remote string
	since  time.Time

	mu      sync.Mutex
	q       ring
	closed  bool
	dropped uint64 // queue_full, guarded by mu

	wake chan struct{} // capacity 1: the queue became non-empty
	done chan struct{} // closed when the client is closed

	sentPackets, sentBytes atomic.Uint64
}

// NewServer validates cfg and binds the listener, so that a port already
// in use is reported here and not later in Serve.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = DefaultMaxClients
	}
	if cfg.QueueBytes <= 0 {
		cfg.QueueBytes = DefaultQueueBytes
	}
	if cfg.SnapLen == 0 {
		cfg.SnapLen = DefaultSnapLen
	}
	if cfg.LinkType == 0 {
		cfg.LinkType = LinkTypeEthernet
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.SnapLen > MaxSnapLen {
		return nil, fmt.Errorf("pcap-over-tcp: snap length %d exceeds %d", cfg.SnapLen, MaxSnapLen)
	}
	if min := RecordHeaderLen + int(cfg.SnapLen); cfg.QueueBytes < min {
		return nil, fmt.Errorf("pcap-over-tcp: queue of %d bytes cannot hold one %d-byte record", cfg.QueueBytes, min)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("pcap-over-tcp: listen on %s: address already in use: stop the program holding it (ss -ltnp 'sport = %s') or choose another address/port: %w", cfg.Addr, portOf(cfg.Addr), err)
		}
		return nil, fmt.Errorf("pcap-over-tcp: listen on %s: %w", cfg.Addr, err)
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		ln:        ln,
		rejectLog: lograte.New(10 * time.Second),
		header:    appendFileHeader(nil, cfg.SnapLen, cfg.LinkType, cfg.Nanosecond),
	}
	s.clients.Store(&[]*client{})
	return s, nil
}

func portOf(addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return ":" + p
}

// Addr returns the listener's address (useful with port 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve accepts clients until ctx is done, then closes the listener and
// every client and waits for their goroutines. It returns nil after a
// shutdown through ctx or Close.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	s.log.Info("pcap-over-tcp serving", "addr", s.ln.Addr().String(), "snaplen", s.cfg.SnapLen,
		"nanosecond", s.cfg.Nanosecond, "max_clients", s.cfg.MaxClients, "queue_bytes", s.cfg.QueueBytes)
	var backoff time.Duration
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if s.isClosed() {
				s.Close()
				s.wg.Wait()
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
				errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) {
				// Out of descriptors or a transient error: wait, keep serving the
				// clients already connected.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("pcap-over-tcp accept failed; retrying", "err", err, "in", backoff)
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
				}
				continue
			}
			s.Close()
			s.wg.Wait()
			return fmt.Errorf("pcap-over-tcp: accept: %w", err)
		}
		backoff = 0
		s.admit(conn)
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close stops accepting and closes every client. Serve then returns.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		err = s.ln.Close()
		for _, c := range *s.clients.Load() {
			s.closeClient(c, nil)
		}
	})
	return err
}

func (s *Server) admit(conn net.Conn) {
	remote := conn.RemoteAddr().String()
	if len(s.cfg.Allow) > 0 && !s.allowed(conn.RemoteAddr()) {
		s.rejectNotAllowed.Add(1)
		if ok, quiet := s.rejectLog.Allow(RejectNotAllowed); ok {
			s.log.Warn("pcap-over-tcp client rejected: address not allowed", "remote", remote, "similar_not_logged", quiet)
		}
		conn.Close()
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		conn.Close()
		return
	}
	cur := *s.clients.Load()
	if len(cur) >= s.cfg.MaxClients {
		s.mu.Unlock()
		s.rejectMaxCli.Add(1)
		if ok, quiet := s.rejectLog.Allow(RejectMaxClients); ok {
			s.log.Warn("pcap-over-tcp client rejected: too many clients", "remote", remote, "max_clients", s.cfg.MaxClients, "similar_not_logged", quiet)
		}
		conn.Close()
		return
	}
	s.nextID++
	c := &client{
		id:     s.nextID,
		conn:   conn,
		remote: remote,
		since:  time.Now(),
		q:      newRing(s.cfg.QueueBytes),
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	next := make([]*client, 0, len(cur)+1)
	next = append(append(next, cur...), c)
	s.clients.Store(&next)
	s.wg.Add(2)
	s.mu.Unlock()

	if tc, ok := conn.(*net.TCPConn); ok {
		// Keepalive notices a peer that vanished while no packet flows.
		_ = tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 3})
	}
	s.accepted.Add(1)
	s.log.Info("pcap-over-tcp client connected", "client", c.id, "remote", remote)
	go s.send(c)
	go s.watch(c)
}

func (s *Server) allowed(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip := ta.AddrPort().Addr().Unmap()
	for _, p := range s.cfg.Allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// WritePacket queues a copy of data (truncated to the snap length) for
// every connected client. It never blocks on a client: when a client's
// queue is full the packet is dropped for that client and counted. It is
// safe for concurrent use, but one producer goroutine keeps record order.
func (s *Server) WritePacket(ci CaptureInfo, data []byte) {
	var h [RecordHeaderLen]byte
	n := putRecordHeader(&h, ci, len(data), s.cfg.SnapLen, s.cfg.Nanosecond)
	s.written.Add(1)
	s.writtenBytes.Add(uint64(n))
	if n < len(data) {
		s.truncated.Add(1)
	}
	for _, c := range *s.clients.Load() {
		s.enqueue(c, h[:], data[:n])
	}
}

func (s *Server) enqueue(c *client, h, data []byte) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	wasEmpty := c.q.n == 0
	if !c.q.push(h, data) {
		c.dropped++
		c.mu.Unlock()
		s.dropQueueFull.Add(1)
		return
	}
	c.mu.Unlock()
	if wasEmpty {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// send writes the global header, then drains the client's queue, one
// batch per write, for as long as the client lives.
func (s *Server) send(c *client) {
	defer s.wg.Done()
	var err error
	defer func() { s.closeClient(c, err) }()
	if err = c.conn.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout)); err != nil {
		return
	}
	if _, err = c.conn.Write(s.header); err != nil {
		return
	}
	var cur recordCursor
	for {
		c.mu.Lock()
		a, b := c.q.peek(writeChunk)
		c.mu.Unlock()
		if len(a) == 0 {
			select {
			case <-c.wake:
				continue
			case <-c.done:
				return
			}
		}
		if err = s.sendChunk(c, &cur, a); err != nil {
			return
		}
		if len(b) > 0 {
			if err = s.sendChunk(c, &cur, b); err != nil {
				return
			}
		}
	}
}

func (s *Server) sendChunk(c *client, cur *recordCursor, p []byte) error {
	if err := c.conn.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout)); err != nil {
		return err
	}
	n, err := c.conn.Write(p)
	s.socketWrites.Add(1)
	records := cur.advance(p[:n])
	c.mu.Lock()
	if !c.closed {
		c.q.release(n, records)
	}
	c.mu.Unlock()
	c.sentPackets.Add(uint64(records))
	c.sentBytes.Add(uint64(n))
	s.sentPackets.Add(uint64(records))
	s.sentBytes.Add(uint64(n))
	return err
}

// watch reads from the client, which should send nothing, to notice at
// once when it closes or resets the connection even if no packet flows.
func (s *Server) watch(c *client) {
	defer s.wg.Done()
	var buf [512]byte
	for {
		_, err := c.conn.Read(buf[:])
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			s.closeClient(c, err)
			return
		}
	}
}

// closeClient closes c once and removes it from the fan-out list. The
// packets still queued are counted as dropped (disconnected).
func (s *Server) closeClient(c *client, cause error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	lost := c.q.packets
	c.q = ring{}
	c.mu.Unlock()
	close(c.done)
	c.conn.Close()
	s.dropDisconnected.Add(uint64(lost))

	s.mu.Lock()
	cur := *s.clients.Load()
	next := make([]*client, 0, len(cur))
	for _, o := range cur {
		if o != c {
			next = append(next, o)
		}
	}
	s.clients.Store(&next)
	s.mu.Unlock()

	attrs := []any{"client", c.id, "remote", c.remote, "sent_packets", c.sentPackets.Load(),
		"sent_bytes", c.sentBytes.Load(), "dropped_queue_full", c.droppedQueueFull(), "dropped_disconnected", lost}
	if cause != nil && !errors.Is(cause, net.ErrClosed) {
		attrs = append(attrs, "err", cause)
	}
	s.log.Info("pcap-over-tcp client disconnected", attrs...)
}

func (c *client) droppedQueueFull() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped
}

// Flush waits until every connected client's queue has been written to
// its socket, or ctx is done.
func (s *Server) Flush(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		pending := 0
		for _, c := range *s.clients.Load() {
			c.mu.Lock()
			pending += c.q.n
			c.mu.Unlock()
		}
		if pending == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pcap-over-tcp: flush: %d bytes still queued: %w", pending, ctx.Err())
		case <-t.C:
		}
	}
}

// Backlog returns the largest number of bytes queued for any one client.
// A replaying producer can wait on it to avoid drops; live capture never
// should.
func (s *Server) Backlog() int {
	most := 0
	for _, c := range *s.clients.Load() {
		c.mu.Lock()
		most = max(most, c.q.n)
		c.mu.Unlock()
	}
	return most
}

// ClientStats describes one connected client.
type ClientStats struct {
	ID                 uint64
	Remote             string
	Since              time.Time
	SentPackets        uint64
	SentBytes          uint64
	DroppedQueueFull   uint64
	QueuedPackets      int
	QueuedBytes        int
	QueueCapacityBytes int // currently allocated; grows up to QueueBytes
}

// ServerStats are totals since NewServer, and the connected clients.
type ServerStats struct {
	WrittenPackets      uint64 // WritePacket calls
	WrittenBytes        uint64 // captured bytes after truncation
	TruncatedPackets    uint64 // packets longer than the snap length
	SentPackets         uint64 // records written to sockets, all clients
	SentBytes           uint64 // bytes written to sockets, all clients (without global headers)
	SocketWrites        uint64 // write calls for records; SentPackets/SocketWrites is the batching achieved
	DroppedQueueFull    uint64
	DroppedDisconnected uint64
	Accepted            uint64
	RejectedNotAllowed  uint64
	RejectedMaxClients  uint64
	Clients             []ClientStats
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() ServerStats {
	st := ServerStats{
		WrittenPackets:      s.written.Load(),
		WrittenBytes:        s.writtenBytes.Load(),
		TruncatedPackets:    s.truncated.Load(),
		SentPackets:         s.sentPackets.Load(),
		SentBytes:           s.sentBytes.Load(),
		SocketWrites:        s.socketWrites.Load(),
		DroppedQueueFull:    s.dropQueueFull.Load(),
		DroppedDisconnected: s.dropDisconnected.Load(),
		Accepted:            s.accepted.Load(),
		RejectedNotAllowed:  s.rejectNotAllowed.Load(),
		RejectedMaxClients:  s.rejectMaxCli.Load(),
	}
	for _, c := range *s.clients.Load() {
		c.mu.Lock()
		cs := ClientStats{
			ID: c.id, Remote: c.remote, Since: c.since,
			DroppedQueueFull:   c.dropped,
			QueuedPackets:      c.q.packets,
			QueuedBytes:        c.q.n,
			QueueCapacityBytes: len(c.q.buf),
		}
		c.mu.Unlock()
		cs.SentPackets = c.sentPackets.Load()
		cs.SentBytes = c.sentBytes.Load()
		st.Clients = append(st.Clients, cs)
	}
	return st
}
