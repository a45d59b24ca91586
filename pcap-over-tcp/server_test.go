package pcapovertcp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pano-observability/pano/internal/testenv"
)

// seqPackets returns n packets of the same size, each a real DNS query
// followed by its sequence number in the last 4 bytes, so that a reader
// can tell exactly which ones it got.
func seqPackets(t testing.TB, n int) []testPacket {
	t.Helper()
	tmpl := builtPackets(t, 1)[0]
	pkts := make([]testPacket, n)
	for i := range pkts {
		data := binary.BigEndian.AppendUint32(append([]byte(nil), tmpl.data...), uint32(i))
		pkts[i] = testPacket{ci: CaptureInfo{Timestamp: tmpl.ci.Timestamp.Add(time.Duration(i) * time.Microsecond), Length: len(data)}, data: data}
	}
	return pkts
}

func seqOf(data []byte) uint32 { return binary.BigEndian.Uint32(data[len(data)-4:]) }

// dialSmallWindow connects with a 4 KiB receive buffer, so that a client
// that does not read stalls the server after a few kilobytes.
func dialSmallWindow(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// A client that never reads must not slow a second client, which gets
// every packet; the stalled client's queue stays within its bound, and
// its drop count is exactly what it missed.
func TestStalledClientDoesNotSlowOthers(t *testing.T) {
	const queueBytes = 256 << 10
	tmpl := builtPackets(t, 1)[0]
	packet := func(i int) testPacket { // a real DNS query, its sequence number in the last 4 bytes
		data := binary.BigEndian.AppendUint32(append([]byte(nil), tmpl.data...), uint32(i))
		return testPacket{ci: CaptureInfo{Timestamp: tmpl.ci.Timestamp.Add(time.Duration(i) * time.Microsecond), Length: len(data)}, data: data}
	}
	s := startServer(t, ServerConfig{QueueBytes: queueBytes, WriteTimeout: 5 * time.Minute})

	stalled := dialSmallWindow(t, s.Addr().String())
	waitClients(t, s, 1)
	stalledRemote := stalled.LocalAddr().String()

	fastConn, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer fastConn.Close()
	fastRemote := fastConn.LocalAddr().String()
	// The fast client checks every packet as it comes: bytes, lengths and
	// timestamp of packet number k.
	type fastResult struct {
		n   int
		err error
	}
	fastc, fastDone := make(chan fastResult, 1), make(chan struct{})
	go func() {
		defer close(fastDone)
		n := 0
		r, err := NewReader(fastConn)
		for err == nil {
			var ci CaptureInfo
			var data []byte
			if ci, data, err = r.ReadPacket(); err == nil {
				want := packet(n)
				if !bytes.Equal(data, want.data) || ci.Length != len(want.data) || !ci.Timestamp.Equal(want.ci.Timestamp.Truncate(time.Microsecond)) {
					err = fmt.Errorf("fast client: packet %d differs: %+v %x", n, ci, data)
					break
				}
				n++
			}
		}
		if errors.Is(err, io.EOF) {
			err = nil
		}
		fastc <- fastResult{n, err}
	}()
	waitClients(t, s, 2)

	// Bursts of 1,000 packets, each after the fast client has taken the
	// previous one: the fast client never overflows. Go on until the
	// stalled client's socket buffers and queue are full and it has
	// dropped for a while (at least 100,000 packets in all).
	n := 0
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for n < 100_000 || clientDropped(s, stalledRemote) < 10_000 {
			if n >= 2_000_000 {
				return
			}
			for range 1000 {
				p := packet(n)
				s.WritePacket(p.ci, p.data)
				n++
			}
			for clientQueued(s, fastRemote) > 0 {
				select {
				case <-fastDone:
					return // it failed; reported below
				case <-time.After(100 * time.Microsecond):
				}
			}
		}
	}()
	select {
	case <-produced:
	case <-time.After(120 * time.Second):
		t.Fatal("producer blocked: WritePacket waited for a client")
	}
	select {
	case <-fastDone:
		res := <-fastc
		t.Fatalf("fast client stopped after %d packets: %v", res.n, res.err)
	default:
	}
	if n >= 2_000_000 {
		t.Fatalf("%d packets and the stalled client dropped none", n)
	}
	eventually(t, "the fast client's queue to drain", func() bool { return clientQueued(s, fastRemote) == 0 })

	st := clientStats(t, s, stalledRemote)
	if st.QueuedBytes > queueBytes || st.QueueCapacityBytes > queueBytes {
		t.Fatalf("stalled client's queue exceeds its bound of %d bytes: %+v", queueBytes, st)
	}
	if fast := clientStats(t, s, fastRemote); fast.DroppedQueueFull != 0 || fast.SentPackets != uint64(n) {
		t.Fatalf("fast client: %+v, want %d sent and nothing dropped", fast, n)
	}

	// Now the stalled client reads everything it was sent.
	stalledc := make(chan []uint32, 1)
	go func() {
		var seqs []uint32
		r, err := NewReader(stalled)
		for err == nil {
			var data []byte
			if _, data, err = r.ReadPacket(); err == nil {
				seqs = append(seqs, seqOf(data))
			}
		}
		stalledc <- seqs
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close()

	if res := <-fastc; res.err != nil || res.n != n {
		t.Fatalf("fast client received %d of %d packets: %v", res.n, n, res.err)
	}
	seqs := <-stalledc
	if uint64(len(seqs))+st.DroppedQueueFull != uint64(n) {
		t.Fatalf("stalled client: received %d + dropped %d = %d, want %d", len(seqs), st.DroppedQueueFull, uint64(len(seqs))+st.DroppedQueueFull, n)
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("stalled client: packet %d has sequence %d after %d", i, seqs[i], seqs[i-1])
		}
	}
	if seqs[0] != 0 {
		t.Fatalf("stalled client: first packet %d, want 0 (the newest packets are the ones dropped)", seqs[0])
	}
	t.Logf("stalled client received %d, dropped %d; fast client received %d", len(seqs), st.DroppedQueueFull, n)
}

func clientDropped(s *Server, remote string) uint64 {
	for _, c := range s.Stats().Clients {
		if c.Remote == remote {
			return c.DroppedQueueFull
		}
	}
	return 0
}

func clientQueued(s *Server, remote string) int {
	for _, c := range s.Stats().Clients {
		if c.Remote == remote {
			return c.QueuedBytes
		}
	}
	return 0
}

func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// Clients that connect and vanish mid-record, 1,000 times, leave no
// goroutine and no file descriptor behind, and the server keeps serving.
func TestVanishingClientsLeaveNothingBehind(t *testing.T) {
	const clients = 1000
	// No garbage collection: a socket the server forgot to close must show
	// up as an open descriptor, not be closed by a finalizer.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	pkts := builtPackets(t, 64)
	s := startServer(t, ServerConfig{MaxClients: clients, QueueBytes: 128 << 10, WriteTimeout: 10 * time.Second})

	stop := make(chan struct{})
	var producer sync.WaitGroup
	producer.Add(1)
	go func() {
		defer producer.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			p := pkts[i%len(pkts)]
			s.WritePacket(p.ci, p.data)
			if i%50 == 0 {
				time.Sleep(100 * time.Microsecond)
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	baseGoroutines, baseFDs := runtime.NumGoroutine(), openFDs(t)

	rng := rand.New(rand.NewPCG(1, 2))
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for wave := 0; wave < clients/50; wave++ {
		for i := 0; i < 50; i++ {
			// Stop after 0..119 bytes: before, inside or after the global
			// header, mostly inside a record.
			cut := rng.IntN(120)
			reset := rng.IntN(2) == 0
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.Dial("tcp", s.Addr().String())
				if err != nil {
					errs <- err
					return
				}
				defer c.Close()
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.ReadFull(c, make([]byte, cut)); err != nil {
					errs <- err
					return
				}
				if reset {
					c.(*net.TCPConn).SetLinger(0) // RST instead of FIN
				}
			}()
		}
		wg.Wait()
	}
	close(errs)
	for err := range errs {
		t.Fatalf("client: %v", err)
	}
	eventually(t, "every client to be closed", func() bool { return len(s.Stats().Clients) == 0 })
	if st := s.Stats(); st.Accepted != clients || st.RejectedMaxClients != 0 {
		t.Fatalf("accepted %d, rejected %d; want %d, 0", st.Accepted, st.RejectedMaxClients, clients)
	}
	eventually(t, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= baseGoroutines })
	eventually(t, "file descriptors back to the baseline", func() bool { return openFDs(t) <= baseFDs })

	// Still serving.
	r, conn, err := Dial(context.Background(), s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := r.ReadPacket(); err != nil {
		t.Fatalf("a client after the storm: %v", err)
	}
	close(stop)
	producer.Wait()
	t.Logf("goroutines %d, fds %d after %d clients", runtime.NumGoroutine(), openFDs(t), clients)
}

// expectRejected checks that the server closes a connection without
// sending anything.
func expectRejected(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(make([]byte, 64))
	if n != 0 || (err != io.EOF && !errors.Is(err, syscall.ECONNRESET)) {
		t.Fatalf("rejected client read %d bytes, %v; want the connection closed", n, err)
	}
}

func TestAllowList(t *testing.T) {
	deny := startServer(t, ServerConfig{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}})
	expectRejected(t, deny.Addr().String())
	if st := deny.Stats(); st.RejectedNotAllowed != 1 || st.Accepted != 0 {
		t.Fatalf("stats %+v, want one not_allowed rejection", st)
	}

	allow := startServer(t, ServerConfig{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.0/8")}})
	r, conn, err := Dial(context.Background(), allow.Addr().String())
	if err != nil {
		t.Fatalf("allowed client: %v", err)
	}
	conn.Close()
	if r.Header().SnapLen != DefaultSnapLen {
		t.Fatalf("header %+v", r.Header())
	}
	if st := allow.Stats(); st.RejectedNotAllowed != 0 || st.Accepted != 1 {
		t.Fatalf("stats %+v, want one accepted client", st)
	}
}

func TestMaxClients(t *testing.T) {
	s := startServer(t, ServerConfig{MaxClients: 2})
	var conns []net.Conn
	for range 2 {
		_, c, err := Dial(context.Background(), s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	waitClients(t, s, 2)
	expectRejected(t, s.Addr().String())
	if st := s.Stats(); st.RejectedMaxClients != 1 {
		t.Fatalf("stats %+v, want one max_clients rejection", st)
	}
	conns[0].Close()
	waitClients(t, s, 1)
	_, c, err := Dial(context.Background(), s.Addr().String())
	if err != nil {
		t.Fatalf("after a client left: %v", err)
	}
	c.Close()
	conns[1].Close()
}

// TestRejectionsLoggedOnce: a client retrying in a loop against a full
// server is counted every time but logged once per interval.
func TestRejectionsLoggedOnce(t *testing.T) {
	var buf testenv.SyncBuffer
	s := startServer(t, ServerConfig{MaxClients: 1, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	_, c, err := Dial(context.Background(), s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitClients(t, s, 1)
	const tries = 200
	for range tries {
		expectRejected(t, s.Addr().String())
	}
	if st := s.Stats(); st.RejectedMaxClients != tries {
		t.Fatalf("%d rejections counted, want %d", st.RejectedMaxClients, tries)
	}
	if n := strings.Count(buf.String(), "too many clients"); n != 1 {
		t.Fatalf("%d rejection lines logged for %d rejections, want 1:\n%s", n, tries, buf.String())
	}
}

func TestPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = NewServer(ServerConfig{Addr: ln.Addr().String()})
	if err == nil || !strings.Contains(err.Error(), "already in use") || !strings.Contains(err.Error(), "choose another") {
		t.Fatalf("error %v, want one that says the address is in use and what to do", err)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("error %v does not wrap EADDRINUSE", err)
	}
}

func TestConfigErrors(t *testing.T) {
	if _, err := NewServer(ServerConfig{Addr: "127.0.0.1:0", SnapLen: 1 << 30}); err == nil {
		t.Error("a huge snap length was accepted")
	}
	if _, err := NewServer(ServerConfig{Addr: "127.0.0.1:0", SnapLen: 65535, QueueBytes: 1000}); err == nil {
		t.Error("a queue smaller than one record was accepted")
	}
}

// A peer that accepts no byte for WriteTimeout is dropped, and every
// packet meant for it is accounted for: sent, dropped because the queue
// was full, or dropped at the disconnect.
func TestWriteTimeoutDropsDeadPeer(t *testing.T) {
	s := startServer(t, ServerConfig{QueueBytes: 1 << 20, WriteTimeout: 3 * time.Second})
	dead := dialSmallWindow(t, s.Addr().String())
	defer dead.Close()
	waitClients(t, s, 1)
	// Paced bursts until the peer's socket and then its queue are full (the
	// first queue_full drop), then nothing: the server is left with a
	// blocked write and a full queue.
	pkts := seqPackets(t, 1000)
	written := 0
	for s.Stats().DroppedQueueFull == 0 {
		if written >= 1_000_000 {
			t.Fatalf("80 MB written to a peer that reads nothing, and no drop: %+v", s.Stats())
		}
		for _, p := range pkts {
			s.WritePacket(p.ci, p.data)
		}
		written += len(pkts)
		if len(s.Stats().Clients) == 0 {
			t.Fatal("the peer was dropped while its writes were still progressing")
		}
		time.Sleep(2 * time.Millisecond)
	}
	eventually(t, "the dead peer to be dropped", func() bool { return len(s.Stats().Clients) == 0 })
	st := s.Stats()
	if st.DroppedDisconnected == 0 {
		t.Errorf("nothing counted as dropped at the disconnect: %+v", st)
	}
	if total := st.SentPackets + st.DroppedQueueFull + st.DroppedDisconnected; total != uint64(written) {
		t.Fatalf("sent %d + queue_full %d + disconnected %d = %d, want %d", st.SentPackets, st.DroppedQueueFull, st.DroppedDisconnected, total, written)
	}
}

// Cancelling Serve's context closes every client and returns.
func TestShutdown(t *testing.T) {
	base := runtime.NumGoroutine()
	s, err := NewServer(ServerConfig{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	var readers []*Reader
	for range 3 {
		r, c, err := Dial(context.Background(), s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		readers = append(readers, r)
	}
	waitClients(t, s, 3)
	pkts := builtPackets(t, 10)
	for _, p := range pkts {
		s.WritePacket(p.ci, p.data)
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	for i, r := range readers {
		for j := range pkts {
			if _, _, err := r.ReadPacket(); err != nil {
				t.Fatalf("client %d, packet %d: %v", i, j, err)
			}
		}
		if _, _, err := r.ReadPacket(); err != io.EOF {
			t.Fatalf("client %d after shutdown: %v, want io.EOF", i, err)
		}
	}
	if _, err := net.Dial("tcp", s.Addr().String()); err == nil {
		t.Fatal("listener still accepts after shutdown")
	}
	eventually(t, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= base })
}

// In steady state, WritePacket and the client goroutines that send the
// packets allocate nothing.
func TestServerSteadyStateAllocatesNothing(t *testing.T) {
	s := startServer(t, ServerConfig{})
	for range 2 {
		_, c, err := Dial(context.Background(), s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go io.Copy(io.Discard, c)
	}
	waitClients(t, s, 2)
	pkts := builtPackets(t, 16)
	write := func(k int) {
		for i := range k {
			p := pkts[i%len(pkts)]
			s.WritePacket(p.ci, p.data)
		}
	}
	write(20000) // queues and socket buffers reach their working size
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(20, func() {
		write(1000)
		if err := s.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	// AllocsPerRun counts every goroutine; Flush's ticker costs a few.
	if perPacket := allocs / 1000; perPacket > 0.01 {
		t.Fatalf("%.0f allocations per 1000 packets to 2 clients, want ~0", allocs)
	}
	if st := s.Stats(); st.DroppedQueueFull != 0 || st.SentPackets != 2*st.WrittenPackets {
		t.Fatalf("stats %+v", st)
	}
}
