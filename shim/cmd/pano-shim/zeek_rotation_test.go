package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	pcapovertcp "github.com/pano-observability/pano/pcap-over-tcp"
	"github.com/pano-observability/pano/shim/follow"

	"github.com/pano-observability/pano/internal/testenv"
)

// TestZeekRotationToKafka: real Zeek (the image's entrypoint, two
// workers, logs rotated every 2 s) reads a real DNS capture replayed by
// the real PCAP-over-TCP server; the real shim forwards worker-*/dns.log
// to a real broker, is SIGKILLed and stays down over several rotations,
// then comes back. Every line Zeek wrote is in Kafka exactly once, byte
// for byte, and the rotated files are gone.
func TestZeekRotationToKafka(t *testing.T) {
	img := testenv.CachedZeekImage(t)
	k := testenv.StartKafka(t)
	k.CreateTopic(t, "zr-dns", 2)
	const workers = 2
	trace := readCapture(t, filepath.Join(testenv.RepoRoot(t), "zeek-package", "testdata", "dnsperf-unbound.pcap.gz"))

	srvs, port := consecutiveServers(t, workers)
	logDir := t.TempDir()
	z := testenv.StartZeek(t, img, testenv.ZeekOptions{Port: port, Workers: workers, LogDir: logDir,
		Env: []string{"ZEEK_ROTATION_INTERVAL=2secs"}})
	for i, srv := range srvs {
		deadline := time.Now().Add(60 * time.Second)
		for len(srv.Stats().Clients) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("zeek worker %d did not connect; its output:\n%s", i, readTail(z.Output))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	keep := keepFiles(t, filepath.Join(logDir, "worker-*", "dns*.log"))

	state := t.TempDir()
	pattern := filepath.Join(logDir, "worker-*", "dns.log")
	args := []string{"-shim-topic-prefix", "zr-", "-shim-checkpoint-interval", "200ms"}
	p := startShim(t, pattern, k.Bootstrap, state, args...)

	// A third of the capture over 4 s, with the shim reading; then the
	// shim dies and a third more arrives over 6 s (three rotations
	// without it); then it is back for the rest.
	third := len(trace) / 3
	replay(t, srvs, trace[:third], 4*time.Second)
	waitMetric(t, p, "pano_shim_records_produced_total", 1, time.Minute)
	p.kill()
	replay(t, srvs, trace[third:2*third], 6*time.Second)
	down := rotatedNow(t, logDir)
	p = startShim(t, pattern, k.Bootstrap, state, args...)
	replay(t, srvs, trace[2*third:], 4*time.Second)

	// Then the streams go quiet: Zeek rotates the last dns.log and starts
	// no new one until its next record. The shim deletes that last
	// rotated file too, once it is in Kafka.
	deadline := time.Now().Add(20 * time.Second)
	for {
		left, _ := filepath.Glob(filepath.Join(logDir, "worker-*", "dns*.log"))
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("quiet streams: still %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Zeek's SIGTERM writes the queries still unanswered to a new
	// dns.log: all of it is Zeek's output.
	if _, err := z.Stop(30 * time.Second); err != nil {
		t.Fatalf("zeek stop: %v", err)
	}
	files := keep.stop()
	want := map[string]int{}
	total := 0
	for _, f := range files {
		for _, l := range fileLines(t, f) {
			want[l]++
			total++
		}
	}
	// The capture holds 20,000 transactions (and a few queries retried
	// or unanswered).
	if total < 20000 {
		t.Fatalf("zeek wrote %d records in %d files, want at least the capture's 20000", total, len(files))
	}
	t.Logf("zeek wrote %d records in %d files (%d rotated files waited for the shim while it was down)", total, len(files), down)
	if len(files) < 2*workers+4 || down < 2*workers {
		t.Fatalf("only %d files, %d rotated while the shim was down: not enough rotations to test", len(files), down)
	}

	waitRecords(t, k.Bootstrap, "zr-dns", int64(total), time.Minute)
	// The finished rotated files are deleted; the last dns.log, live,
	// stays.
	deadline = time.Now().Add(20 * time.Second)
	for {
		left, _ := filepath.Glob(filepath.Join(logDir, "worker-*", "dns.*-*.log"))
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rotated files not deleted: %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
	deleted := p.metric(t, "pano_shim_rotated_files_deleted_total")
	p.stop(t)

	got := consumeAll(t, k.Bootstrap, "zr-dns")
	var missing, dup, extra int
	seen := map[string]int{}
	for _, m := range got {
		seen[string(m.Value)]++
	}
	for l, n := range want {
		switch c := seen[l]; {
		case c < n:
			missing += n - c
		case c > n:
			dup += c - n
		}
		delete(seen, l)
	}
	for _, n := range seen {
		extra += n
	}
	if missing+dup+extra > 0 || len(got) != total {
		t.Fatalf("kafka holds %d records for %d lines of zeek: %d missing, %d duplicated, %d not zeek's lines", len(got), total, missing, dup, extra)
	}
	t.Logf("kafka holds each of zeek's %d lines once, unchanged; the restarted shim deleted %v rotated files", total, deleted)
}

// keeper hard-links every file matching a pattern, as soon as it
// appears, so that the test still has Zeek's output after the shim
// deleted it.
type keeper struct {
	dir   string
	done  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	files map[[2]uint64]string
}

func keepFiles(t *testing.T, pattern string) *keeper {
	k := &keeper{dir: t.TempDir(), done: make(chan struct{}), files: map[[2]uint64]string{}}
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		for {
			k.scan(pattern)
			select {
			case <-k.done:
				k.scan(pattern)
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { k.stop() })
	return k
}

func (k *keeper) scan(pattern string) {
	names, _ := filepath.Glob(pattern)
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, name := range names {
		fi, err := os.Stat(name)
		if err != nil {
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		key := [2]uint64{uint64(st.Dev), st.Ino}
		if _, ok := k.files[key]; ok {
			continue
		}
		dst := filepath.Join(k.dir, fmt.Sprintf("%d-%d", st.Dev, st.Ino))
		if err := os.Link(name, dst); err == nil {
			k.files[key] = dst
		}
	}
}

// stop returns the kept files.
func (k *keeper) stop() []string {
	select {
	case <-k.done:
	default:
		close(k.done)
	}
	k.wg.Wait()
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for _, f := range k.files {
		out = append(out, f)
	}
	return out
}

// rotatedNow counts the rotated dns logs in the workers' folders.
func rotatedNow(t *testing.T, logDir string) int {
	t.Helper()
	n := 0
	dirs, _ := filepath.Glob(filepath.Join(logDir, "worker-*"))
	for _, d := range dirs {
		r, err := follow.Rotated(filepath.Join(d, "dns.log"))
		if err != nil {
			t.Fatal(err)
		}
		n += len(r)
	}
	return n
}

func fileLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

type capturedPacket struct {
	length int
	data   []byte
}

// readCapture reads every packet of a gzipped pcap file.
func readCapture(t *testing.T, path string) []capturedPacket {
	t.Helper()
	rd, err := pcapovertcp.NewReader(testenv.OpenTestdata(t, path))
	if err != nil {
		t.Fatal(err)
	}
	var out []capturedPacket
	for {
		ci, data, err := rd.ReadPacket()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("reading %s: %v", path, err)
		}
		out = append(out, capturedPacket{length: ci.Length, data: append([]byte(nil), data...)})
	}
}

// flowOf spreads packets over n streams by UDP/TCP ports, both
// directions of a conversation to the same stream, as the agent does.
func flowOf(data []byte, n int) int {
	if len(data) < 14+20 || binary.BigEndian.Uint16(data[12:14]) != 0x0800 {
		return 0
	}
	ihl := int(data[14]&0x0f) * 4
	if len(data) < 14+ihl+4 {
		return 0
	}
	ports := data[14+ihl:]
	return int(binary.BigEndian.Uint16(ports[0:2])+binary.BigEndian.Uint16(ports[2:4])) % n
}

// replay sends pkts, stamped with the time they are sent (Zeek rotates
// on its network time), spread evenly over d.
func replay(t *testing.T, srvs []*pcapovertcp.Server, pkts []capturedPacket, d time.Duration) {
	t.Helper()
	const chunk = 200
	step := d / time.Duration((len(pkts)+chunk-1)/chunk)
	start := time.Now()
	for i := 0; i < len(pkts); i += chunk {
		for _, p := range pkts[i:min(i+chunk, len(pkts))] {
			srvs[flowOf(p.data, len(srvs))].WritePacket(pcapovertcp.CaptureInfo{
				Timestamp: time.Now(), CaptureLength: len(p.data), Length: p.length,
			}, p.data)
		}
		time.Sleep(time.Until(start.Add(time.Duration(i/chunk+1) * step)))
	}
	for i, srv := range srvs {
		if s := srv.Stats(); s.DroppedQueueFull+s.DroppedDisconnected > 0 {
			t.Fatalf("stream %d dropped packets: %+v", i, s)
		}
	}
}

// consecutiveServers starts n PCAP-over-TCP servers on consecutive
// loopback ports, as the entrypoint's workers expect.
func consecutiveServers(t *testing.T, n int) ([]*pcapovertcp.Server, int) {
	t.Helper()
	for attempt := 0; attempt < 50; attempt++ {
		port := testenv.FreePort(t)
		var srvs []*pcapovertcp.Server
		for i := 0; i < n; i++ {
			srv, err := pcapovertcp.NewServer(pcapovertcp.ServerConfig{Addr: net.JoinHostPort("127.0.0.1", fmt.Sprint(port+i))})
			if err != nil {
				break
			}
			srvs = append(srvs, srv)
		}
		if len(srvs) < n {
			for _, s := range srvs {
				s.Close()
			}
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, srv := range srvs {
			wg.Add(1)
			go func() { defer wg.Done(); srv.Serve(ctx) }()
		}
		t.Cleanup(func() { cancel(); wg.Wait() })
		return srvs, port
	}
	t.Fatalf("no %d consecutive free ports", n)
	return nil, 0
}

func readTail(path string) string {
	b, _ := os.ReadFile(path)
	s := string(b)
	if len(s) > 4000 {
		s = s[len(s)-4000:]
	}
	return strings.TrimSpace(s)
}
