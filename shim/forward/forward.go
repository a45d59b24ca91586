// Package forward ties the pieces together: it follows each configured
// Zeek log, converts its lines, produces them to Kafka and saves the
// position once Kafka has acknowledged everything before it.
package forward

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pano-observability/pano/internal/lograte"
	"github.com/pano-observability/pano/shim/follow"
	"github.com/pano-observability/pano/shim/metrics"
	"github.com/pano-observability/pano/shim/position"
	"github.com/pano-observability/pano/shim/produce"
)

// Config is the whole shim configuration.
type Config struct {
	Logs               []string // paths or glob patterns
	Topic              string   // if set, every log goes to this topic
	TopicPrefix        string   // else topic = prefix + log name ("dns" for dns.log)
	StateDir           string
	PollInterval       time.Duration
	CheckpointInterval time.Duration
	MaxLineBytes       int
	// DeleteRotated deletes a rotated log file once the saved position
	// is past it (every line in Kafka).
	DeleteRotated bool
	Kafka         produce.Config
	Logger        *slog.Logger
	Registerer    prometheus.Registerer
}

// Forwarder runs the shim.
type Forwarder struct {
	cfg     Config
	log     *slog.Logger
	store   *position.Store
	metrics *metrics.Metrics
	prod    atomic.Pointer[produce.Producer]
	// Batches resent by the producers of ended sessions; under resentMu
	// with the swap of prod at a session's end, so the counter never
	// seems to go back.
	resentMu sync.Mutex
	resent   int64
	limit    *lograte.Limiter
}

// New checks cfg and registers the metrics.
func New(cfg Config) (*Forwarder, error) {
	if len(cfg.Logs) == 0 {
		return nil, errors.New("no log to follow")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 200 * time.Millisecond
	}
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = time.Second
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if _, err := produce.SaramaConfig(cfg.Kafka); err != nil {
		return nil, err
	}
	store, err := position.Open(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	f := &Forwarder{cfg: cfg, log: cfg.Logger, store: store, limit: lograte.New(10 * time.Second)}
	f.metrics = metrics.New(cfg.Registerer, func() float64 {
		if p := f.prod.Load(); p != nil {
			return float64(p.InFlight())
		}
		return 0
	}, func() float64 {
		f.resentMu.Lock()
		defer f.resentMu.Unlock()
		n := f.resent
		if p := f.prod.Load(); p != nil {
			n += p.Resent()
		}
		return float64(n)
	})
	return f, nil
}

// Run forwards until ctx is done, then flushes and saves positions. A
// Kafka failure ends a session; the next one starts from the saved
// positions after reading back what Kafka already has.
func (f *Forwarder) Run(ctx context.Context) error {
	backoff := 500 * time.Millisecond
	for {
		start := time.Now()
		err := f.session(ctx)
		if ctx.Err() != nil {
			return err
		}
		if time.Since(start) > time.Minute {
			backoff = 500 * time.Millisecond
		}
		f.log.Error("kafka session ended; starting a new one", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

func (f *Forwarder) session(ctx context.Context) (err error) {
	sc, err := produce.SaramaConfig(f.cfg.Kafka)
	if err != nil {
		return err
	}
	client, err := sarama.NewClient(f.cfg.Kafka.Brokers, sc)
	if err != nil {
		return fmt.Errorf("connect to kafka %v: %w", f.cfg.Kafka.Brokers, err)
	}
	defer client.Close()
	prod, err := produce.NewProducer(client, f.cfg.Kafka)
	if err != nil {
		return err
	}
	f.prod.Store(prod)
	f.metrics.Sessions.Inc()
	f.log.Info("kafka session started", "brokers", f.cfg.Kafka.Brokers)

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		logs = map[string]*logRun{}
		errc = make(chan error, 1)
	)
	discover := func() {
		for _, path := range f.expand() {
			if _, ok := logs[path]; ok {
				continue
			}
			lr, err := f.openLog(sctx, client, prod, path)
			if err != nil {
				select {
				case errc <- err:
				default:
				}
				return
			}
			logs[path] = lr
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := lr.run(sctx); err != nil && sctx.Err() == nil {
					select {
					case errc <- err:
					default:
					}
				}
			}()
		}
	}
	discover()
	tick := time.NewTicker(max(5*f.cfg.PollInterval, time.Second))
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			f.log.Info("stopping: flushing to kafka and saving positions")
			break loop
		case <-prod.Failed():
			err = prod.Err()
			break loop
		case err = <-errc:
			break loop
		case <-tick.C:
			discover()
		}
	}
	cancel()
	wg.Wait()
	if cerr := prod.Close(); cerr != nil && err == nil && ctx.Err() == nil {
		err = cerr
	}
	// The next session's producer counts from zero: keep this one's.
	f.resentMu.Lock()
	f.resent += prod.Resent()
	f.prod.Store(nil)
	f.resentMu.Unlock()
	if err != nil {
		f.metrics.Errors.WithLabelValues("", "produce").Inc()
	}
	for _, lr := range logs {
		if serr := lr.save(); serr != nil {
			f.log.Error("save position", "log", lr.path, "err", serr)
		}
	}
	return err
}

// expand returns the absolute paths the configured patterns name now.
// A plain path is returned even when the file does not exist yet.
func (f *Forwarder) expand() []string {
	var out []string
	for _, p := range f.cfg.Logs {
		if strings.ContainsAny(p, "*?[") {
			m, err := filepath.Glob(p)
			if err != nil {
				f.log.Error("bad log pattern", "pattern", p, "err", err)
			}
			for _, x := range m {
				// Rotated files are read as part of their live log.
				if !strings.HasSuffix(x, ".gz") && !follow.IsRotatedName(filepath.Base(x)) {
					out = append(out, x)
				}
			}
			continue
		}
		out = append(out, p)
	}
	for i, p := range out {
		if a, err := filepath.Abs(p); err == nil {
			out[i] = a
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TopicFor returns the topic of a log path: the prefix and the log's name
// (the file name up to its first dot: "dns" for dns.log).
func TopicFor(prefix, path string) string {
	name, _, _ := strings.Cut(filepath.Base(path), ".")
	return prefix + name
}

// sourceID names one file of one log in the origin header.
func sourceID(path string, id follow.Identity) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\x00%d\x00%d", path, id.Dev, id.Ino)
	return h.Sum64()
}
