package pcapovertcp

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// The client connects once the server exists, reads, reconnects after
// the server restarts on the same port, and stops on cancel.
func TestClientReconnects(t *testing.T) {
	// Reserve a port, then release it so that nothing listens at first.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	c := NewClient(ClientConfig{Addr: addr, MinBackoff: 10 * time.Millisecond, MaxBackoff: 80 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := c.Packets(ctx)

	eventually(t, "failed connection attempts", func() bool { return c.Counters().Failures >= 3 })

	pkts := builtPackets(t, 20)
	for round := range 2 {
		s, err := NewServer(ServerConfig{Addr: addr})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		sctx, scancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Serve(sctx) }()
		waitClients(t, s, 1)
		half := pkts[round*10 : round*10+10]
		for _, p := range half {
			s.WritePacket(p.ci, p.data)
		}
		var got []testPacket
		for range half {
			select {
			case p := <-ch:
				got = append(got, testPacket{ci: p.Info, data: p.Data})
			case <-time.After(20 * time.Second):
				t.Fatalf("round %d: no packet", round)
			}
		}
		expectSame(t, got, half, 65535, false)
		scancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if n := c.Counters().Connects; n != 2 {
		t.Fatalf("%d connects, want 2", n)
	}
	cancel()
	select {
	case _, ok := <-ch:
		for ok {
			_, ok = <-ch
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Packets channel not closed after cancel")
	}
}

func TestClientRunReturnsHandlerError(t *testing.T) {
	s := startServer(t, ServerConfig{})
	c := NewClient(ClientConfig{Addr: s.Addr().String()})
	stop := errors.New("enough")
	done := make(chan error, 1)
	go func() {
		done <- c.Run(context.Background(), func(FileHeader, CaptureInfo, []byte) error { return stop })
	}()
	waitClients(t, s, 1)
	p := builtPackets(t, 1)[0]
	s.WritePacket(p.ci, p.data)
	select {
	case err := <-done:
		if err != stop {
			t.Fatalf("Run: %v, want the handler's error", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
	}
}

// A server that speaks something else gives a clear error, and the
// client keeps retrying rather than giving up.
func TestDialRejectsNonPcapServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"))
			c.Close()
		}
	}()
	_, _, err = Dial(context.Background(), ln.Addr().String())
	var fe *FormatError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "bad magic") {
		t.Fatalf("Dial: %v, want a bad magic FormatError", err)
	}
	c := NewClient(ClientConfig{Addr: ln.Addr().String(), MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() {
		for c.Counters().Failures < 3 && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	if err := c.Run(ctx, func(FileHeader, CaptureInfo, []byte) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v, want context.Canceled", err)
	}
	if c.Counters().Connects != 0 {
		t.Fatalf("counted a connect to a non-pcap server")
	}
}

func TestDialHonoursContext(t *testing.T) {
	// A listener that never writes: the header read must end with ctx.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, _, err = Dial(ctx, ln.Addr().String())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial: %v, want context.DeadlineExceeded", err)
	}
}
