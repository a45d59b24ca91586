package pcapovertcp

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// benchPackets are real DNS packets (traces and built ones, 64 to
// 1,000+ bytes, average about 150).
func benchPackets(b *testing.B) []testPacket {
	return append(fixturePackets(b), builtPackets(b, 64)...)
}

func avgRecord(pkts []testPacket) int64 {
	total := 0
	for _, p := range pkts {
		total += RecordHeaderLen + len(p.data)
	}
	return int64(total / len(pkts))
}

// produce writes n packets, waiting while a client's queue is more than
// half full: throughput is what the clients take, without drops.
func produce(s *Server, pkts []testPacket, n, queueBytes int) {
	for i := 0; i < n; i++ {
		p := pkts[i%len(pkts)]
		s.WritePacket(p.ci, p.data)
		if i%256 == 255 {
			for s.Backlog() > queueBytes/2 {
				time.Sleep(20 * time.Microsecond)
			}
		}
	}
}

// BenchmarkServer: one op is one packet fanned out to every client over
// loopback. Clients read into a buffer and count bytes. Reports records/s
// and MB/s per client and allocations per packet.
func BenchmarkServer(b *testing.B) {
	for _, clients := range []int{1, 4} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			pkts := benchPackets(b)
			const queueBytes = 8 << 20
			s := startServer(b, ServerConfig{QueueBytes: queueBytes})
			var received atomic.Int64
			var wg sync.WaitGroup
			for range clients {
				c, err := net.Dial("tcp", s.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				wg.Add(1)
				go func() {
					defer wg.Done()
					buf := make([]byte, 256<<10)
					for {
						n, err := c.Read(buf)
						received.Add(int64(n))
						if err != nil {
							return
						}
					}
				}()
			}
			waitClients(b, s, clients)
			produce(s, pkts, 20000, queueBytes) // warm up: queues and socket buffers at working size
			if err := s.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
			before := s.Stats()
			b.SetBytes(avgRecord(pkts))
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			produce(s, pkts, b.N, queueBytes)
			if err := s.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			st := s.Stats()
			sent := st.SentPackets - before.SentPackets
			if dropped := st.DroppedQueueFull - before.DroppedQueueFull; dropped != 0 || sent != uint64(clients*b.N) {
				b.Fatalf("sent %d, dropped %d, want %d and 0", sent, dropped, clients*b.N)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s/client")
			b.ReportMetric(float64(st.SentBytes-before.SentBytes)/elapsed.Seconds()/1e6, "MB/s-total")
			b.ReportMetric(float64(sent)/float64(st.SocketWrites-before.SocketWrites), "records/write")
			s.Close()
			wg.Wait()
		})
	}
}

// BenchmarkConsumer compares this package's Reader with tcpdump as the
// consumer of the same server stream: one op is one packet delivered and
// parsed.
func BenchmarkConsumer(b *testing.B) {
	for _, consumer := range []string{"reader", "pcapgo", "tcpdump"} {
		b.Run(consumer, func(b *testing.B) {
			pkts := benchPackets(b)
			const queueBytes = 8 << 20
			s, err := NewServer(ServerConfig{Addr: "127.0.0.1:0", QueueBytes: queueBytes})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			served := make(chan error, 1)
			go func() { served <- s.Serve(ctx) }()
			conn, err := net.Dial("tcp", s.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			done := make(chan int, 1)
			switch consumer {
			case "reader":
				go func() {
					n := 0
					r, err := NewReader(conn)
					for err == nil {
						if _, _, err = r.ReadPacket(); err == nil {
							n++
						}
					}
					done <- n
				}()
			case "pcapgo":
				go func() {
					n := 0
					r, err := pcapgo.NewReader(conn)
					for err == nil {
						if _, _, err = r.ZeroCopyReadPacketData(); err == nil {
							n++
						}
					}
					done <- n
				}()
			case "tcpdump":
				if _, err := exec.LookPath("tcpdump"); err != nil {
					b.Skip("tcpdump not installed")
				}
				f, err := conn.(*net.TCPConn).File()
				if err != nil {
					b.Fatal(err)
				}
				cmd := exec.Command("tcpdump", "-r", "-", "-w", "/dev/null")
				var stderr bytes.Buffer
				cmd.Stdin, cmd.Stderr = f, &stderr
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				f.Close()
				go func() {
					if err := cmd.Wait(); err != nil {
						b.Errorf("tcpdump: %v: %s", err, stderr.String())
					}
					done <- -1
				}()
			}
			defer conn.Close()
			waitClients(b, s, 1)
			b.SetBytes(avgRecord(pkts))
			b.ResetTimer()
			start := time.Now()
			produce(s, pkts, b.N, queueBytes)
			if err := s.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
			cancel() // closes the stream: the consumer reads to its end
			n := <-done
			elapsed := time.Since(start)
			b.StopTimer()
			<-served
			if n >= 0 && n != b.N {
				b.Fatalf("consumer read %d packets, want %d", n, b.N)
			}
			if st := s.Stats(); st.SentPackets != uint64(b.N) {
				b.Fatalf("sent %d, want %d", st.SentPackets, b.N)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
		})
	}
}

// BenchmarkWriter compares the Writer with pcapgo's on the same packets,
// in memory.
func BenchmarkWriter(b *testing.B) {
	pkts := benchPackets(b)
	b.Run("pcapovertcp", func(b *testing.B) {
		w, _ := NewWriter(io.Discard, 65535, LinkTypeEthernet, false)
		b.SetBytes(avgRecord(pkts))
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			p := pkts[i%len(pkts)]
			_ = w.WritePacket(p.ci, p.data)
		}
	})
	b.Run("pcapgo", func(b *testing.B) {
		w := pcapgo.NewWriter(io.Discard)
		_ = w.WriteFileHeader(65535, layers.LinkTypeEthernet)
		cis := make([]gopacket.CaptureInfo, len(pkts))
		for i, p := range pkts {
			cis[i] = gopacket.CaptureInfo{Timestamp: p.ci.Timestamp, CaptureLength: len(p.data), Length: len(p.data)}
		}
		b.SetBytes(avgRecord(pkts))
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			_ = w.WritePacket(cis[i%len(pkts)], pkts[i%len(pkts)].data)
		}
	})
}

// BenchmarkReader compares the Reader with pcapgo's on the same stream,
// in memory.
func BenchmarkReader(b *testing.B) {
	pkts := benchPackets(b)
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, 65535, LinkTypeEthernet, false)
	for i := 0; buf.Len() < 8<<20; i++ {
		p := pkts[i%len(pkts)]
		_ = w.WritePacket(p.ci, p.data)
	}
	stream := buf.Bytes()
	run := func(b *testing.B, next func(io.Reader) func() error) {
		b.SetBytes(avgRecord(pkts))
		b.ReportAllocs()
		read := next(bytes.NewReader(stream))
		for b.Loop() {
			if err := read(); err == io.EOF {
				read = next(bytes.NewReader(stream))
			} else if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("pcapovertcp", func(b *testing.B) {
		run(b, func(r io.Reader) func() error {
			rd, err := NewReader(r)
			if err != nil {
				b.Fatal(err)
			}
			return func() error { _, _, err := rd.ReadPacket(); return err }
		})
	})
	b.Run("pcapgo", func(b *testing.B) {
		run(b, func(r io.Reader) func() error {
			rd, err := pcapgo.NewReader(r)
			if err != nil {
				b.Fatal(err)
			}
			return func() error { _, _, err := rd.ZeroCopyReadPacketData(); return err }
		})
	})
}

// BenchmarkServerAt150kpps paces the producer at 150,000 packets/s (the
// capture rate the agent is built for) to one client, and reports how
// well writes batch and the process CPU time per packet (server and the
// reading client together). Run it with -benchtime 150000x (one second).
func BenchmarkServerAt150kpps(b *testing.B) {
	pkts := benchPackets(b)
	s := startServer(b, ServerConfig{})
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	go io.Copy(io.Discard, c)
	waitClients(b, s, 1)
	b.ReportAllocs()
	cpu0 := processCPU(b)
	start := time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%150 == 0 {
			// 150 packets per millisecond.
			if d := time.Until(start.Add(time.Duration(i/150) * time.Millisecond)); d > 0 {
				time.Sleep(d)
			}
		}
		p := pkts[i%len(pkts)]
		s.WritePacket(p.ci, p.data)
	}
	if err := s.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	elapsed := time.Since(start)
	st := s.Stats()
	if st.DroppedQueueFull != 0 || st.SentPackets != uint64(b.N) {
		b.Fatalf("sent %d, dropped %d", st.SentPackets, st.DroppedQueueFull)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(st.SentPackets)/float64(st.SocketWrites), "records/write")
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/record")
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
