package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/pano-observability/pano/internal/envflag"
	pcapovertcp "github.com/pano-observability/pano/pcap-over-tcp"
)

type dumpOptions struct {
	addr      string
	out       string
	count     int
	duration  time.Duration
	reconnect bool
	progress  time.Duration
}

// errDone ends a dump that reached its packet count.
var errDone = errors.New("count reached")

func dump(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("dump", "dump [-addr A] -o out.pcap [flags]", stderr)
	var o dumpOptions
	var logs logSettings
	addr := hostPort(pcapovertcp.DefaultAddr)
	fs.TextVar(&addr, "addr", addr, "server to read from, HOST:PORT")
	fs.StringVar(&o.out, "o", "-", `pcap file to write ("-": standard output)`)
	fs.IntVar(&o.count, "count", 0, "stop after this many packets (0: no limit)")
	fs.DurationVar(&o.duration, "duration", 0, "stop after this long (0: no limit)")
	fs.BoolVar(&o.reconnect, "reconnect", false, "reconnect with backoff when the stream ends or fails, instead of stopping")
	fs.DurationVar(&o.progress, "progress", 5*time.Second, "log counters this often (0: never)")
	logs.register(fs)
	if err := envflag.Parse(fs, args, envPrefix); err != nil {
		return fmt.Errorf("dump: %w", err)
	}
	if o.count < 0 || o.duration < 0 {
		return fmt.Errorf("dump: -count (%s) and -duration (%s) must not be negative",
			envflag.Var(envPrefix, "count"), envflag.Var(envPrefix, "duration"))
	}
	o.addr = string(addr)
	log := logs.logger(stderr)
	var out io.Writer = stdout
	if o.out != "-" {
		f, err := os.Create(o.out)
		if err != nil {
			return fmt.Errorf("dump: %w", err)
		}
		defer f.Close()
		out = f
	}
	n, err := runDump(ctx, o, out, log)
	log.Info("dumped", "packets", n, "out", o.out)
	if err != nil {
		return err
	}
	if f, ok := out.(*os.File); ok && o.out != "-" {
		return f.Close()
	}
	return nil
}

// runDump copies records from the server into out, rewritten in the
// stream's own snap length, link type and timestamp resolution.
func runDump(ctx context.Context, o dumpOptions, out io.Writer, log *slog.Logger) (int, error) {
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	bw := bufio.NewWriterSize(out, 1<<20)
	var (
		w        *pcapovertcp.Writer
		first    pcapovertcp.FileHeader
		n, bytes atomic.Int64
	)
	begin := func(h pcapovertcp.FileHeader) error {
		if w == nil {
			var err error
			if w, err = pcapovertcp.NewWriter(bw, h.SnapLen, h.LinkType, h.Nanosecond); err != nil {
				return err
			}
			first = h
		} else if h.LinkType != first.LinkType || h.Nanosecond != first.Nanosecond || h.SnapLen != first.SnapLen {
			return fmt.Errorf("dump: the server's stream changed (link type %d→%d, snap length %d→%d, nanosecond %v→%v); one pcap file cannot hold both",
				first.LinkType, h.LinkType, first.SnapLen, h.SnapLen, first.Nanosecond, h.Nanosecond)
		}
		return nil
	}
	handle := func(h pcapovertcp.FileHeader, ci pcapovertcp.CaptureInfo, data []byte) error {
		if err := begin(h); err != nil {
			return err
		}
		if err := w.WritePacket(ci, data); err != nil {
			return err
		}
		bytes.Add(int64(len(data)))
		if c := n.Add(1); o.count > 0 && c >= int64(o.count) {
			return errDone
		}
		return nil
	}
	if o.progress > 0 {
		t := time.NewTicker(o.progress)
		defer t.Stop()
		pctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			for {
				select {
				case <-pctx.Done():
					return
				case <-t.C:
					log.Info("progress", "packets", n.Load(), "bytes", bytes.Load())
				}
			}
		}()
	}
	var err error
	if o.reconnect {
		c := pcapovertcp.NewClient(pcapovertcp.ClientConfig{Addr: o.addr, Logger: log})
		err = c.Run(ctx, handle)
	} else {
		err = dumpOnce(ctx, o.addr, begin, handle)
	}
	if errors.Is(err, errDone) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		err = nil
	}
	if w == nil && err == nil {
		// Nothing arrived: still leave a valid, empty pcap file.
		_, err = pcapovertcp.NewWriter(bw, pcapovertcp.DefaultSnapLen, pcapovertcp.LinkTypeEthernet, false)
	}
	if ferr := bw.Flush(); err == nil && ferr != nil {
		err = fmt.Errorf("dump: write: %w", ferr)
	}
	return int(n.Load()), err
}

// dumpOnce reads one connection until the server ends the stream.
func dumpOnce(ctx context.Context, addr string, begin func(pcapovertcp.FileHeader) error, fn pcapovertcp.Handler) error {
	r, conn, err := pcapovertcp.Dial(ctx, addr)
	if err != nil {
		return fmt.Errorf("dump: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	h := r.Header()
	if err := begin(h); err != nil {
		return err
	}
	for {
		ci, data, err := r.ReadPacket()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("dump: %w", err)
		}
		if err := fn(h, ci, data); err != nil {
			return err
		}
	}
}
