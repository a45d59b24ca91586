// Package forward ties the shim together: it follows each configured Zeek
// log, checks or converts its lines, produces them to Kafka and saves the
// position once Kafka has settled everything before it.
package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pano-observability/pano/internal/lograte"
	"github.com/pano-observability/pano/shim/follow"
	"github.com/pano-observability/pano/shim/kafka"
	"github.com/pano-observability/pano/shim/metrics"
	"github.com/pano-observability/pano/shim/position"
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
	// StopGrace bounds the flush to Kafka at stop; what is not
	// acknowledged by then is sent again after the restart.
	StopGrace time.Duration
	// HealthTimeout: Healthy fails once records have waited this long
	// without any acknowledgement.
	HealthTimeout time.Duration
	Kafka         kafka.Config
	Logger        *slog.Logger
	Registerer    prometheus.Registerer
}

// Forwarder runs the shim.
type Forwarder struct {
	cfg        Config
	log        *slog.Logger
	store      *position.Store
	metrics    *metrics.Metrics
	clientOpts []kgo.Opt // connection settings: the read-back's consumer too
	prodOpts   []kgo.Opt
	limits     *kafka.BatchLimits
	limit      *lograte.Limiter
	progress   progress

	mu     sync.Mutex
	client *kgo.Client // while Run runs
}

// New checks cfg, so that a setting that cannot work fails at start, and
// registers the metrics.
func New(cfg Config) (*Forwarder, error) {
	if len(cfg.Logs) == 0 {
		return nil, errors.New("SHIM_LOGS: no log to follow")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PollInterval <= 0 {
		return nil, errors.New("SHIM_POLL_INTERVAL must be positive")
	}
	if cfg.CheckpointInterval <= 0 {
		return nil, errors.New("SHIM_CHECKPOINT_INTERVAL must be positive")
	}
	if cfg.MaxLineBytes <= 0 {
		return nil, errors.New("SHIM_MAX_LINE_BYTES must be positive")
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = 10 * time.Second
	}
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = time.Minute
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	for _, p := range cfg.Logs {
		if _, err := filepath.Match(p, ""); err != nil {
			return nil, fmt.Errorf("SHIM_LOGS: pattern %q: %w", p, err)
		}
	}
	clientOpts, err := cfg.Kafka.ClientOpts(cfg.Logger)
	if err != nil {
		return nil, err
	}
	limits := kafka.NewBatchLimits(cfg.Kafka.BatchBytes)
	prodOpts, err := cfg.Kafka.ProducerOpts(limits)
	if err != nil {
		return nil, err
	}
	store, err := position.Open(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("SHIM_STATE_DIR: %w", err)
	}
	f := &Forwarder{cfg: cfg, log: cfg.Logger, store: store, clientOpts: clientOpts, prodOpts: prodOpts, limits: limits,
		limit: lograte.New(10 * time.Second)}
	f.metrics = metrics.New(cfg.Registerer, func() float64 {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.client == nil {
			return 0
		}
		return float64(f.client.BufferedProduceRecords())
	}, f.progress.lastSettled)
	return f, nil
}

// Healthy reports whether the shim makes progress: nothing waits for
// Kafka, or Kafka answered within the health timeout.
func (f *Forwarder) Healthy() error { return f.progress.healthy(time.Now(), f.cfg.HealthTimeout) }

// Run forwards until ctx is done, then flushes what it sent, saves the
// positions and returns. A broker that is away only delays the records:
// the client retries until it is back, and reading pauses while the
// records in flight are at their bound.
func (f *Forwarder) Run(ctx context.Context) error {
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), f.clientOpts...), f.prodOpts...)...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	f.mu.Lock()
	f.client = cl
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.client = nil
		f.mu.Unlock()
		cl.Close()
	}()

	// Records are produced under prodCtx, which outlives ctx by the stop
	// grace: franz-go fails a buffered batch whose context ends.
	prodCtx, stopProducing := context.WithCancel(context.Background())
	defer stopProducing()
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()

	var (
		wg   sync.WaitGroup
		logs = map[string]*logRun{}
	)
	discover := func() {
		for _, path := range f.expand() {
			if _, ok := logs[path]; ok {
				continue
			}
			lr := f.newLogRun(cl, path)
			logs[path] = lr
			wg.Add(1)
			go func() {
				defer wg.Done()
				lr.loop(readCtx, prodCtx)
			}()
		}
	}
	f.log.Info("forwarding", "brokers", f.cfg.Kafka.Brokers)
	discover()
	tick := time.NewTicker(max(5*f.cfg.PollInterval, time.Second))
	defer tick.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-tick.C:
			discover()
		}
	}
	f.log.Info("stopping: flushing to kafka and saving positions", "grace", f.cfg.StopGrace)
	stopReading()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	grace, cancel := context.WithTimeout(context.Background(), f.cfg.StopGrace)
	defer cancel()
	select {
	case <-done:
	case <-grace.Done():
	}
	if err := cl.Flush(grace); err != nil {
		f.log.Warn("not everything was acknowledged before the stop grace; it is sent again after the restart", "buffered", cl.BufferedProduceRecords(), "err", err)
	}
	stopProducing() // frees a reader blocked on a full buffer
	<-done
	for _, lr := range logs {
		if err := lr.saveIfChanged(); err != nil {
			f.log.Error("save position", "log", lr.path, "err", err)
		}
	}
	return nil
}

// expand returns the absolute paths the configured patterns name now.
// A plain path is returned even when the file does not exist yet.
func (f *Forwarder) expand() []string {
	var out []string
	for _, p := range f.cfg.Logs {
		if strings.ContainsAny(p, "*?[") {
			m, _ := filepath.Glob(p) // patterns were checked by New
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
