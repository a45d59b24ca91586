// Package agent assembles the capture agent: the eBPF classifier, its
// attachment to the selected interfaces, the ring-buffer reader, the
// PCAP-over-TCP server and the metrics endpoint.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pano-observability/pano/agent/bpf"
	"github.com/pano-observability/pano/agent/capture"
	"github.com/pano-observability/pano/agent/config"
	"github.com/pano-observability/pano/agent/ifaces"
	"github.com/pano-observability/pano/agent/metrics"
	"github.com/pano-observability/pano/agent/tracer"
	pcapovertcp "github.com/pano-observability/pano/pcap-over-tcp"
)

// Agent is a configured agent, listening but not yet capturing.
type Agent struct {
	cfg     *config.Config
	log     *slog.Logger
	sel     ifaces.Selector
	cls     *bpf.Classifier
	tracer  *tracer.Tracer
	reader  *capture.Reader
	server  *pcapovertcp.Server
	metrics net.Listener // nil: no endpoint
	reg     *prometheus.Registry

	closeOnce sync.Once
	final     atomic.Pointer[bpf.Counters] // kernel counters when the maps were freed
}

// New checks the configuration against the machine, binds the listeners
// and loads the classifier. Close it if Run is not called.
func New(cfg *config.Config, log *slog.Logger) (*Agent, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Agent{cfg: cfg, log: log, sel: ifaces.Selector{Include: cfg.Interfaces, Exclude: cfg.Exclude}}
	if err := a.setup(); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

func (a *Agent) setup() (err error) {
	cfg, log := a.cfg, a.log

	existing, err := ifaces.Existing()
	if err != nil {
		return err
	}
	if err := a.sel.Validate(existing); err != nil {
		return err
	}

	a.server, err = pcapovertcp.NewServer(pcapovertcp.ServerConfig{
		Addr:       cfg.ServerAddr,
		MaxClients: cfg.MaxClients,
		QueueBytes: cfg.ClientQueue,
		SnapLen:    cfg.SnapLen,
		Nanosecond: cfg.Nanosecond,
		Allow:      cfg.Allow,
		Logger:     log,
		LinkType:   pcapovertcp.LinkTypeEthernet,
	})
	if err != nil {
		// The server's error already says what holds the port.
		return fmt.Errorf("PCAP-over-TCP server (PCA_SERVER_ADDR, PCA_SERVER_PORT): %w", err)
	}
	if cfg.MetricsAddr != "" {
		a.metrics, err = net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return listenError(fmt.Errorf("metrics endpoint: %w", err), "METRICS_ADDR")
		}
	}

	a.cls, err = bpf.Load(bpf.Options{SnapLen: cfg.SnapLen, RingBufferSize: cfg.RingBufferSize, Rules: cfg.Filter})
	if err != nil {
		return err
	}
	a.tracer = tracer.New(cfg.AttachMode, a.cls.Ingress(), a.cls.Egress(), log)
	a.reader, err = capture.NewReader(capture.Config{
		RingBuffer:  a.cls.RingBuffer(),
		Sink:        a.server,
		DedupWindow: cfg.DedupWindow,
		Logger:      log,
	})
	if err != nil {
		return err
	}

	a.reg = prometheus.NewRegistry()
	a.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		pcapovertcp.NewCollector(a.server, metrics.Namespace),
		metrics.NewCollector(metrics.Sources{
			Kernel:          a.cls.Counters,
			Reader:          a.reader.Stats,
			Fill:            a.reader.Fill,
			Attached:        a.tracer.Attached,
			ClientQueueFull: func() uint64 { return a.server.Stats().DroppedQueueFull },
			Logger:          log,
		}),
	)
	return nil
}

func listenError(err error, setting string) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%w: the port is in use (another agent running?); stop it or choose another with %s", err, setting)
	}
	if errors.Is(err, syscall.EADDRNOTAVAIL) {
		return fmt.Errorf("%w: no interface has that address; fix %s", err, setting)
	}
	return err
}

// PCAPAddr is the PCAP-over-TCP listener's address.
func (a *Agent) PCAPAddr() net.Addr { return a.server.Addr() }

// MetricsAddr is the metrics listener's address, or nil.
func (a *Agent) MetricsAddr() net.Addr {
	if a.metrics == nil {
		return nil
	}
	return a.metrics.Addr()
}

// Registry holds the agent's metrics.
func (a *Agent) Registry() *prometheus.Registry { return a.reg }

// Attached lists the interfaces the classifier is attached to.
func (a *Agent) Attached() []tracer.Interface { return a.tracer.Attached() }

// Counters are the classifier's counters (after Run, their final values).
func (a *Agent) Counters() (bpf.Counters, error) {
	if c := a.final.Load(); c != nil {
		return *c, nil
	}
	return a.cls.Counters()
}

// ReaderStats are the ring-buffer reader's counters.
func (a *Agent) ReaderStats() capture.Stats { return a.reader.Stats() }

// ServerStats are the PCAP-over-TCP server's counters.
func (a *Agent) ServerStats() pcapovertcp.ServerStats { return a.server.Stats() }

// Run captures until ctx is done, then detaches from every interface,
// delivers the packets still in flight to connected clients (for up to
// a few seconds), and releases everything.
func (a *Agent) Run(ctx context.Context) error {
	defer a.Close()
	var wg sync.WaitGroup
	errc := make(chan error, 4)

	srvCtx, stopServer := context.WithCancel(context.Background())
	defer stopServer()
	wg.Go(func() {
		if err := a.server.Serve(srvCtx); err != nil {
			errc <- err
		}
	})

	var httpSrv *http.Server
	if a.metrics != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
		httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		wg.Go(func() {
			if err := httpSrv.Serve(a.metrics); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("metrics endpoint: %w", err)
			}
		})
	}

	readCtx, stopReading := context.WithCancel(context.Background())
	defer stopReading()
	readDone := make(chan error, 1)
	go func() { readDone <- a.reader.Run(readCtx) }()

	watchCtx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	events := make(chan ifaces.Event, 16)
	watchDone := make(chan error, 1)
	go func() { watchDone <- ifaces.Watch(watchCtx, a.sel, a.log, events) }()

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-errc:
			runErr = err
			break loop
		case err := <-readDone:
			readDone <- err
			runErr = fmt.Errorf("capture stopped: %w", err)
			break loop
		case err := <-watchDone:
			if err != nil {
				runErr = err
				break loop
			}
		case e := <-events:
			if e.Added {
				if err := a.tracer.Attach(e.Index, e.Name); err != nil {
					if errors.Is(err, os.ErrPermission) {
						runErr = err
						break loop
					}
					a.log.Warn("interface not captured", "interface", e.Name, "error", err)
				}
			} else if err := a.tracer.Detach(e.Index); err != nil {
				a.log.Warn("detach", "interface", e.Name, "error", err)
			}
			a.reader.SetInterfaces(len(a.tracer.Attached()))
		}
	}

	// Stop capturing first, then drain: every packet the classifier
	// queued reaches the clients.
	stopWatching()
	if err := a.tracer.Close(); err != nil {
		a.log.Error("detach", "error", err)
		runErr = errors.Join(runErr, err)
	}
	stopReading()
	if err := <-readDone; err != nil && runErr == nil {
		runErr = err
	}
	flushCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := a.server.Flush(flushCtx); err != nil {
		a.log.Warn("clients not fully flushed at shutdown", "error", err)
	}
	cancel()
	stopServer()
	if httpSrv != nil {
		shutCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = httpSrv.Shutdown(shutCtx)
		cancel()
	}
	wg.Wait()
	return runErr
}

// Close releases what New acquired. Run calls it.
func (a *Agent) Close() { a.closeOnce.Do(a.release) }

func (a *Agent) release() {
	if a.tracer != nil {
		_ = a.tracer.Close()
	}
	if a.reader != nil {
		_ = a.reader.Close()
	}
	if a.cls != nil {
		if c, err := a.cls.Counters(); err == nil {
			a.final.Store(&c)
		}
		_ = a.cls.Close()
	}
	if a.server != nil {
		_ = a.server.Close()
	}
	if a.metrics != nil {
		_ = a.metrics.Close()
	}
}
