// Package agent assembles the capture agent: the eBPF classifier, its
// attachment to the selected interfaces, the ring-buffer reader, the
// PCAP-over-TCP servers (one per stream) and the metrics endpoint.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

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
	servers []*pcapovertcp.Server // one per stream
	metrics net.Listener          // nil: no endpoint
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

	// Each stream is a server of its own, with its own clients, queues
	// and counters: a Zeek worker reads one stream, and a slow worker
	// loses packets of its stream only.
	addrs := cfg.StreamAddrs()
	sinks := make([]capture.Sink, len(addrs))
	for i, addr := range addrs {
		srvLog := log
		if len(addrs) > 1 {
			srvLog = log.With("stream", i)
		}
		srv, err := pcapovertcp.NewServer(pcapovertcp.ServerConfig{
			Addr:       addr,
			MaxClients: cfg.MaxClients,
			QueueBytes: cfg.ClientQueue,
			SnapLen:    cfg.SnapLen,
			Nanosecond: cfg.Nanosecond,
			Allow:      cfg.Allow,
			Logger:     srvLog,
			LinkType:   pcapovertcp.LinkTypeEthernet,
		})
		if err != nil {
			// The server's error already says what holds the port.
			if len(addrs) > 1 {
				return fmt.Errorf("PCAP-over-TCP server of stream %d (PCA_SERVER_ADDR, PCA_SERVER_PORT+%d, PCA_STREAMS): %w", i, i, err)
			}
			return fmt.Errorf("PCAP-over-TCP server (PCA_SERVER_ADDR, PCA_SERVER_PORT): %w", err)
		}
		a.servers = append(a.servers, srv)
		sinks[i] = srv
	}
	if cfg.MetricsAddr != "" {
		a.metrics, err = net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return listenError(fmt.Errorf("metrics endpoint: %w", err), "METRICS_ADDR")
		}
	}

	a.cls, err = bpf.Load(bpf.Options{SnapLen: cfg.SnapLen, RingBufferSize: cfg.RingBufferSize, Rules: cfg.Filter, Streams: len(a.servers)})
	if err != nil {
		return err
	}
	a.tracer = tracer.New(cfg.AttachMode, a.cls.Ingress(), a.cls.Egress(), log)
	a.reader, err = capture.NewReader(capture.Config{
		RingBuffer:  a.cls.RingBuffer(),
		Sinks:       sinks,
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
		metrics.NewCollector(metrics.Sources{
			Kernel:   a.Counters, // final values once the maps are freed
			Reader:   a.reader.Stats,
			Fill:     a.reader.Fill,
			Attached: a.tracer.Attached,
			ClientQueueFull: func() []uint64 {
				out := make([]uint64, len(a.servers))
				for i, srv := range a.servers {
					out[i] = srv.Stats().DroppedQueueFull
				}
				return out
			},
			Logger: log,
		}),
		captureEnabled(1),
	)
	for i, srv := range a.servers {
		a.reg.MustRegister(prometheus.WrapCollectorWith(prometheus.Labels{metrics.StreamLabel: strconv.Itoa(i)},
			pcapovertcp.NewCollector(srv, metrics.Namespace)))
	}
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

// PCAPAddrs are the listeners' addresses, indexed by stream.
func (a *Agent) PCAPAddrs() []net.Addr {
	out := make([]net.Addr, len(a.servers))
	for i, srv := range a.servers {
		out[i] = srv.Addr()
	}
	return out
}

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

// ServerStats are the PCAP-over-TCP servers' counters, summed over the
// streams (Clients lists the clients of every stream).
func (a *Agent) ServerStats() pcapovertcp.ServerStats {
	var sum pcapovertcp.ServerStats
	for _, srv := range a.servers {
		st := srv.Stats()
		sum.WrittenPackets += st.WrittenPackets
		sum.WrittenBytes += st.WrittenBytes
		sum.TruncatedPackets += st.TruncatedPackets
		sum.SentPackets += st.SentPackets
		sum.SentBytes += st.SentBytes
		sum.SocketWrites += st.SocketWrites
		sum.DroppedQueueFull += st.DroppedQueueFull
		sum.DroppedDisconnected += st.DroppedDisconnected
		sum.Accepted += st.Accepted
		sum.RejectedNotAllowed += st.RejectedNotAllowed
		sum.RejectedMaxClients += st.RejectedMaxClients
		sum.Clients = append(sum.Clients, st.Clients...)
	}
	return sum
}

// StreamStats are the counters of one stream's PCAP-over-TCP server.
func (a *Agent) StreamStats(stream int) pcapovertcp.ServerStats { return a.servers[stream].Stats() }

// Run captures until ctx is done, then detaches from every interface,
// delivers the packets still in flight to connected clients (for up to
// a few seconds), and releases everything.
func (a *Agent) Run(ctx context.Context) error {
	defer a.Close()
	var wg sync.WaitGroup
	errc := make(chan error, 2+len(a.servers))

	srvCtx, stopServer := context.WithCancel(context.Background())
	defer stopServer()
	for _, srv := range a.servers {
		wg.Go(func() {
			if err := srv.Serve(srvCtx); err != nil {
				errc <- err
			}
		})
	}

	var httpSrv *http.Server
	if a.metrics != nil {
		httpSrv = metricsServer(a.reg)
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
	// The streams flush in parallel, within one deadline.
	flushCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	var flushWG sync.WaitGroup
	for i, srv := range a.servers {
		flushWG.Go(func() {
			if err := srv.Flush(flushCtx); err != nil {
				a.log.Warn("clients not fully flushed at shutdown", "stream", i, "error", err)
			}
		})
	}
	flushWG.Wait()
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
	for _, srv := range a.servers {
		_ = srv.Close()
	}
	if a.metrics != nil {
		_ = a.metrics.Close()
	}
}
