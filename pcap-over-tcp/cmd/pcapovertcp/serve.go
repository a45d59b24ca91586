package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pano-observability/pano/internal/envflag"
	pcapovertcp "github.com/pano-observability/pano/pcap-over-tcp"
)

type serveOptions struct {
	file         string
	addr         string
	speed        float64 // 0 = as fast as possible
	loops        int     // 0 = forever
	nsec         bool
	retime       bool
	waitClients  int
	maxClients   int
	queueBytes   int
	snaplen      uint
	allow        []netip.Prefix
	writeTimeout time.Duration
	drainTimeout time.Duration
	progress     time.Duration
	metricsAddr  string
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("serve", "serve -file F [flags]", stderr)
	var o serveOptions
	var speed playSpeed
	var loops loopCount
	var allow prefixList
	addr := hostPort(pcapovertcp.DefaultAddr)
	var logs logSettings
	fs.StringVar(&o.file, "file", "", "pcap file to play (required)")
	fs.TextVar(&addr, "addr", addr, "listen address; port 0 picks a free port (logged)")
	fs.TextVar(&speed, "speed", playSpeed(0), `"max" (as fast as the slowest client takes it, without drops), "realtime" (recorded spacing), or a factor of realtime such as 2`)
	fs.TextVar(&loops, "loop", loopCount(1), `times to play the file, or "forever"`)
	fs.BoolVar(&o.nsec, "nsec", false, "nanosecond timestamps (magic 0xa1b23c4d) instead of microseconds")
	fs.BoolVar(&o.retime, "retime", false, "stamp packets with the time they are sent instead of the recorded time")
	fs.IntVar(&o.waitClients, "wait-clients", 1, "start playing once this many clients are connected (0: at once)")
	fs.IntVar(&o.maxClients, "max-clients", pcapovertcp.DefaultMaxClients, "clients served at once")
	fs.IntVar(&o.queueBytes, "queue-bytes", pcapovertcp.DefaultQueueBytes, "per-client queue; a packet that does not fit is dropped for that client")
	fs.UintVar(&o.snaplen, "snaplen", 0, "snap length of the stream (0: the file's)")
	fs.TextVar(&allow, "allow", prefixList(nil), "comma-separated client networks allowed to connect (empty: any), e.g. 127.0.0.0/8,::1/128")
	fs.DurationVar(&o.writeTimeout, "write-timeout", pcapovertcp.DefaultWriteTimeout, "drop a client that accepts no data for this long")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 30*time.Second, "after the last loop, wait this long for clients to receive their queues")
	fs.DurationVar(&o.progress, "progress", 5*time.Second, "log counters this often (0: never)")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "serve Prometheus metrics on this address (empty: off)")
	logs.register(fs)
	if err := envflag.Parse(fs, args, envPrefix); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if o.file == "" {
		return fmt.Errorf("serve: -file (%s) is required", envflag.Var(envPrefix, "file"))
	}
	o.addr, o.speed, o.loops, o.allow = string(addr), float64(speed), int(loops), allow
	return runServe(ctx, o, logs.logger(stderr))
}

// playSpeed is -speed: 0 is "max", 1 "realtime", else a factor of
// realtime.
type playSpeed float64

func (s *playSpeed) UnmarshalText(b []byte) error {
	switch string(b) {
	case "max":
		*s = 0
	case "realtime":
		*s = 1
	default:
		f, err := strconv.ParseFloat(string(b), 64)
		if err != nil || !(f > 0) || math.IsInf(f, 1) {
			return errors.New("want max, realtime or a positive factor")
		}
		*s = playSpeed(f)
	}
	return nil
}

func (s playSpeed) MarshalText() ([]byte, error) {
	switch s {
	case 0:
		return []byte("max"), nil
	case 1:
		return []byte("realtime"), nil
	}
	return strconv.AppendFloat(nil, float64(s), 'g', -1, 64), nil
}

// loopCount is -loop: a positive count, or 0 for "forever".
type loopCount int

func (l *loopCount) UnmarshalText(b []byte) error {
	if string(b) == "forever" {
		*l = 0
		return nil
	}
	n, err := strconv.Atoi(string(b))
	if err != nil || n < 1 {
		return errors.New("want a positive count or forever")
	}
	*l = loopCount(n)
	return nil
}

func (l loopCount) MarshalText() ([]byte, error) {
	if l == 0 {
		return []byte("forever"), nil
	}
	return strconv.AppendInt(nil, int64(l), 10), nil
}

// prefixList is -allow: comma-separated networks.
type prefixList []netip.Prefix

func (p *prefixList) UnmarshalText(b []byte) error {
	var out prefixList
	for _, s := range strings.Split(string(b), ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return err
		}
		out = append(out, pfx)
	}
	*p = out
	return nil
}

func (p prefixList) MarshalText() ([]byte, error) {
	s := make([]string, len(p))
	for i, pfx := range p {
		s[i] = pfx.String()
	}
	return []byte(strings.Join(s, ",")), nil
}

func runServe(ctx context.Context, o serveOptions, log *slog.Logger) error {
	// Read the header first: the stream takes the file's link type and
	// snap length, and a bad file is reported before anyone connects.
	f, err := os.Open(o.file)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	r, err := pcapovertcp.NewReader(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("serve: %s: %w", o.file, err)
	}
	h := r.Header()
	snaplen := h.SnapLen
	if o.snaplen != 0 {
		snaplen = uint32(o.snaplen)
	}
	srv, err := pcapovertcp.NewServer(pcapovertcp.ServerConfig{
		Addr:         o.addr,
		MaxClients:   o.maxClients,
		QueueBytes:   max(o.queueBytes, pcapovertcp.RecordHeaderLen+int(snaplen)),
		SnapLen:      snaplen,
		Nanosecond:   o.nsec,
		LinkType:     h.LinkType,
		Allow:        o.allow,
		WriteTimeout: o.writeTimeout,
		Logger:       log,
	})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("listening", "addr", srv.Addr().String(), "file", o.file, "linktype", h.LinkType, "snaplen", snaplen)

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(sctx) }()

	if o.metricsAddr != "" {
		stopMetrics, err := startMetrics(o.metricsAddr, srv, log)
		if err != nil {
			cancel()
			<-serveErr
			return err
		}
		defer stopMetrics()
	}
	if o.progress > 0 {
		go logProgress(sctx, srv, o.progress, log)
	}

	playErr := play(sctx, srv, o, log)
	if playErr == nil {
		dctx, dcancel := context.WithTimeout(ctx, o.drainTimeout)
		if err := srv.Flush(dctx); err != nil {
			log.Warn("clients did not receive everything before the drain timeout", "err", err)
		}
		dcancel()
	}
	st := srv.Stats()
	cancel()
	err = <-serveErr
	log.Info("done", "packets", st.WrittenPackets, "sent_packets", st.SentPackets, "sent_bytes", st.SentBytes,
		"dropped_queue_full", st.DroppedQueueFull, "clients_accepted", st.Accepted)
	if playErr != nil && !errors.Is(playErr, context.Canceled) {
		return playErr
	}
	return err
}

// play waits for the clients, then writes the file's packets into the
// server o.loops times (forever when 0), paced by o.speed.
func play(ctx context.Context, srv *pcapovertcp.Server, o serveOptions, log *slog.Logger) error {
	if o.waitClients > 0 {
		log.Info("waiting for clients", "want", o.waitClients)
		t := time.NewTicker(10 * time.Millisecond)
		for len(srv.Stats().Clients) < o.waitClients {
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		t.Stop()
	}
	start := time.Now()
	var offset time.Duration // recorded time played by the previous loops
	for i := 0; o.loops == 0 || i < o.loops; i++ {
		played, err := playOnce(ctx, srv, o, start, offset)
		if err != nil {
			return err
		}
		// The next loop continues the timeline where this one ended.
		offset += played + time.Millisecond
	}
	return nil
}

func scale(d time.Duration, speed float64) time.Duration {
	if speed <= 0 {
		return 0
	}
	return time.Duration(float64(d) / speed)
}

// playOnce plays the file once, each packet due at start + (offset +
// its time since the file's first packet) / speed, and returns the
// recorded duration of the file.
func playOnce(ctx context.Context, srv *pcapovertcp.Server, o serveOptions, start time.Time, offset time.Duration) (time.Duration, error) {
	f, err := os.Open(o.file)
	if err != nil {
		return 0, fmt.Errorf("serve: %w", err)
	}
	defer f.Close()
	r, err := pcapovertcp.NewReader(f)
	if err != nil {
		return 0, fmt.Errorf("serve: %s: %w", o.file, err)
	}
	var first, last time.Time
	for n := 0; ; n++ {
		ci, data, err := r.ReadPacket()
		if errors.Is(err, io.EOF) {
			return last.Sub(first), nil
		}
		if err != nil {
			return 0, fmt.Errorf("serve: %s: %w", o.file, err)
		}
		if n == 0 {
			first = ci.Timestamp
		}
		last = ci.Timestamp
		if o.speed > 0 {
			due := start.Add(scale(offset+ci.Timestamp.Sub(first), o.speed))
			if d := time.Until(due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
					return 0, ctx.Err()
				case <-t.C:
				}
			}
		} else if n%16 == 0 {
			// As fast as the slowest client takes it: a replay has no
			// reason to lose packets.
			if err := waitBacklog(ctx, srv, o.queueBytes/2); err != nil {
				return 0, err
			}
		}
		if o.retime {
			ci.Timestamp = time.Now()
		}
		srv.WritePacket(ci, data)
	}
}

func waitBacklog(ctx context.Context, srv *pcapovertcp.Server, limit int) error {
	for srv.Backlog() > limit {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return ctx.Err()
}

func logProgress(ctx context.Context, srv *pcapovertcp.Server, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			st := srv.Stats()
			log.Info("progress", "packets", st.WrittenPackets, "clients", len(st.Clients), "sent_packets", st.SentPackets,
				"sent_bytes", st.SentBytes, "dropped_queue_full", st.DroppedQueueFull, "dropped_disconnected", st.DroppedDisconnected)
		}
	}
}

func startMetrics(addr string, srv *pcapovertcp.Server, log *slog.Logger) (func(), error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(pcapovertcp.NewCollector(srv, "pano"))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	hs := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("serve: metrics: %w", err)
	}
	log.Info("metrics", "addr", ln.Addr().String())
	go func() { _ = hs.Serve(ln) }()
	return func() { _ = hs.Close() }, nil
}
