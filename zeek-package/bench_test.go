package zeekpackage_test

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pano-observability/pano/internal/testenv"
	pcapovertcp "github.com/pano-observability/pano/pcap-over-tcp"
)

var (
	benchOnce sync.Once
	benchDir  string
	benchErr  error
)

// optimizedClient builds potclient without sanitizers, -O2, for timing.
func optimizedClient(b *testing.B) string {
	b.Helper()
	testenv.RequireProgram(b, "g++", "g++")
	benchOnce.Do(func() {
		benchDir, benchErr = os.MkdirTemp("", "pano-zeek-bench-")
		if benchErr != nil {
			return
		}
		out, err := exec.Command("make", "-C", "core", "OUT="+benchDir, "SANITIZE=0", "CXXFLAGS=-O2", benchDir+"/potclient").CombinedOutput()
		if err != nil {
			benchErr = err
			b.Logf("%s", out)
		}
	})
	if benchErr != nil {
		b.Fatalf("building potclient: %v", benchErr)
	}
	return filepath.Join(benchDir, "potclient")
}

// benchStream is a pre-encoded stream of n real DNS packets (the fixture
// capture, repeated), so that the server side costs little.
func benchStream(b *testing.B, n int) []byte {
	b.Helper()
	trace := tracePackets(b, 5000)
	var pk []pkt
	for len(pk) < n {
		pk = append(pk, trace...)
	}
	return encodeStream(false, false, 65535, 1, asResolution(pk[:n], false))
}

func serveOnce(b *testing.B, stream []byte) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		defer ln.Close()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = c.Write(stream)
		_, _ = bufio.NewReader(c).ReadByte() // until the client closes
	}()
	return ln.Addr().String()
}

// Side by side: the C++ core (what Zeek runs) and the Go reader of the
// pcap-over-tcp package, each reading the same 200,000-packet stream from
// a local socket. Compare their packets/s.
func BenchmarkStreamReaders(b *testing.B) {
	const n = 200_000
	stream := benchStream(b, n)
	b.Run("core-cpp", func(b *testing.B) {
		bin := optimizedClient(b)
		b.SetBytes(int64(len(stream)))
		for i := 0; i < b.N; i++ {
			addr := serveOnce(b, stream)
			out, err := exec.Command(bin, "-addr", addr, "-count", strconv.Itoa(n), "-quiet", "1", "-timeout", "60").CombinedOutput()
			if err != nil || !bytes.Contains(out, []byte("packets="+strconv.Itoa(n))) {
				b.Fatalf("potclient: %v\n%s", err, out)
			}
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "pkts/s")
	})
	b.Run("go-reader", func(b *testing.B) {
		b.SetBytes(int64(len(stream)))
		for i := 0; i < b.N; i++ {
			addr := serveOnce(b, stream)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			rd, conn, err := pcapovertcp.Dial(ctx, addr)
			if err != nil {
				b.Fatal(err)
			}
			for j := 0; j < n; j++ {
				if _, _, err := rd.ReadPacket(); err != nil {
					b.Fatalf("packet %d: %v", j, err)
				}
			}
			conn.Close()
			cancel()
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "pkts/s")
	})
}
