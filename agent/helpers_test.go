package agent_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/pano-observability/pano/agent"
	"github.com/pano-observability/pano/agent/config"
	"github.com/pano-observability/pano/agent/tracer"
	pcapovertcp "github.com/pano-observability/pano/pcap-over-tcp"
)

// runningAgent is an in-process agent with one PCAP-over-TCP client per
// stream collecting everything it streams.
type runningAgent struct {
	*agent.Agent
	cancel  context.CancelFunc
	done    chan error
	stopped bool

	mu      sync.Mutex
	streams [][]packet // by stream
	header  pcapovertcp.FileHeader
	readErr error
	readEnd sync.WaitGroup
}

type packet struct {
	ci   pcapovertcp.CaptureInfo
	data []byte
}

// startAgent runs the agent with settings given as environment variables
// (on top of test defaults: free port, no metrics endpoint) and connects a
// client. It returns once every interface in wantIfaces is attached.
func startAgent(t *testing.T, env map[string]string, wantIfaces ...string) *runningAgent {
	t.Helper()
	t.Setenv("PCA_SERVER_PORT", "0")
	t.Setenv("METRICS_ADDR", "off")
	for k, v := range env {
		t.Setenv(k, v)
	}
	cfg, err := config.Load(nil, io.Discard)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := agent.New(cfg, log)
	if err != nil {
		t.Fatalf("agent: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{Agent: a, cancel: cancel, done: make(chan error, 1)}
	go func() { ra.done <- a.Run(ctx) }()
	t.Cleanup(func() { ra.stop(t) })

	deadline := time.Now().Add(10 * time.Second)
	for !attached(a.Attached(), wantIfaces) {
		if time.Now().After(deadline) {
			t.Fatalf("interfaces %v not attached after 10s; attached: %v", wantIfaces, a.Attached())
		}
		time.Sleep(10 * time.Millisecond)
	}

	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer dcancel()
	addrs := a.PCAPAddrs()
	ra.streams = make([][]packet, len(addrs))
	for i, addr := range addrs {
		rd, conn, err := pcapovertcp.Dial(dctx, addr.String())
		if err != nil {
			t.Fatalf("connect to the agent's stream %d: %v", i, err)
		}
		if i == 0 {
			ra.header = rd.Header()
		} else if rd.Header() != ra.header {
			t.Errorf("stream %d header %+v, stream 0's %+v", i, rd.Header(), ra.header)
		}
		ra.readEnd.Go(func() {
			defer conn.Close()
			for {
				ci, data, err := rd.ReadPacket()
				if err != nil {
					ra.mu.Lock()
					if !errors.Is(err, io.EOF) {
						ra.readErr = err
					}
					ra.mu.Unlock()
					return
				}
				ra.mu.Lock()
				ra.streams[i] = append(ra.streams[i], packet{ci, slices.Clone(data)})
				ra.mu.Unlock()
			}
		})
	}
	// The servers admit clients asynchronously: wait until they count.
	for len(a.ServerStats().Clients) < len(addrs) {
		if time.Now().After(deadline) {
			t.Fatal("the agent did not register the client")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return ra
}

func attached(have []tracer.Interface, want []string) bool {
	for _, w := range want {
		if !slices.ContainsFunc(have, func(i tracer.Interface) bool { return i.Name == w }) {
			return false
		}
	}
	return true
}

// stop shuts the agent down (which flushes and closes the streams) and
// returns what the clients received, every stream's packets together.
func (ra *runningAgent) stop(t *testing.T) []packet {
	t.Helper()
	var all []packet
	for _, s := range ra.stopStreams(t) {
		all = append(all, s...)
	}
	return all
}

// stopStreams is stop, with the packets by stream.
func (ra *runningAgent) stopStreams(t *testing.T) [][]packet {
	t.Helper()
	if !ra.stopped {
		ra.stopped = true
		ra.cancel()
		select {
		case err := <-ra.done:
			if err != nil {
				t.Errorf("agent: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("agent did not stop within 30s")
		}
		ended := make(chan struct{})
		go func() { ra.readEnd.Wait(); close(ended) }()
		select {
		case <-ended:
		case <-time.After(10 * time.Second):
			t.Fatal("the streams did not end after the agent stopped")
		}
	}
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if ra.readErr != nil {
		t.Errorf("reading the stream: %v", ra.readErr)
	}
	return ra.streams
}

// readPcap reads a pcap file (tcpdump's) with the same reader.
func readPcap(t *testing.T, path string) []packet {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := pcapovertcp.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []packet
	for {
		ci, data, err := rd.ReadPacket()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, packet{ci, slices.Clone(data)})
	}
}

// comparison is how two captures differ.
type comparison struct {
	onlyA, onlyB     []packet
	lengthMismatch   int
	maxSkew, sumSkew time.Duration
	matched          int
}

// compareCaptures pairs packets with identical bytes (in time order among
// equals) and reports the unpaired ones and the timestamp differences.
func compareCaptures(a, b []packet) comparison {
	var c comparison
	byData := map[string][]packet{}
	for _, p := range b {
		byData[string(p.data)] = append(byData[string(p.data)], p)
	}
	for k := range byData {
		l := byData[k]
		sort.SliceStable(l, func(i, j int) bool { return l[i].ci.Timestamp.Before(l[j].ci.Timestamp) })
	}
	sorted := slices.Clone(a)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].ci.Timestamp.Before(sorted[j].ci.Timestamp) })
	for _, p := range sorted {
		l := byData[string(p.data)]
		if len(l) == 0 {
			c.onlyA = append(c.onlyA, p)
			continue
		}
		q := l[0]
		byData[string(p.data)] = l[1:]
		c.matched++
		if p.ci.Length != q.ci.Length || p.ci.CaptureLength != q.ci.CaptureLength {
			c.lengthMismatch++
		}
		d := p.ci.Timestamp.Sub(q.ci.Timestamp)
		if d < 0 {
			d = -d
		}
		c.sumSkew += d
		c.maxSkew = max(c.maxSkew, d)
	}
	for _, l := range byData {
		c.onlyB = append(c.onlyB, l...)
	}
	return c
}

func (c comparison) meanSkew() time.Duration {
	if c.matched == 0 {
		return 0
	}
	return c.sumSkew / time.Duration(c.matched)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}
