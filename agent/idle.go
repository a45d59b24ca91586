package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Idle is the agent with capture turned off (ENABLE_PCA=false): it loads
// nothing into the kernel and serves only its metrics, with
// pano_agent_capture_enabled 0, until ctx is done. Staying up, rather than
// exiting, keeps a container restart policy from starting it over and
// over, and its health check (the metrics endpoint) meaningful.
func Idle(ctx context.Context, metricsAddr string, log *slog.Logger) error {
	if metricsAddr == "" {
		<-ctx.Done()
		return nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(captureEnabled(0))
	ln, err := net.Listen("tcp", metricsAddr)
	if err != nil {
		return fmt.Errorf("metrics endpoint: %w", err)
	}
	srv := metricsServer(reg)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("capture disabled (ENABLE_PCA=false): serving metrics only", "metrics", ln.Addr().String())
	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("metrics endpoint: %w", err)
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics endpoint: %w", err)
	}
	return nil
}

// metricsServer serves reg on /metrics, capturing or not.
func metricsServer(reg *prometheus.Registry) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
}

// captureEnabled says whether this agent captures: a dashboard can tell a
// quiet network from a disabled agent.
func captureEnabled(v float64) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "pano_agent_capture_enabled",
		Help: "1 while the agent captures packets, 0 when ENABLE_PCA=false.",
	})
	g.Set(v)
	return g
}
