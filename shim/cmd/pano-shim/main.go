// Command pano-shim follows Zeek logs and produces every record to Kafka,
// once, keyed by the record's uid.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pano-observability/pano/internal/envflag"
	"github.com/pano-observability/pano/shim/forward"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "pano-shim:", err)
		os.Exit(2)
	}
}

const intro = `pano-shim follows Zeek logs and produces each record to Kafka, keyed by uid:
a JSON line as Zeek wrote it, a TSV line as Zeek's JSON writer would have
written it. It saves its position only past lines Kafka acknowledged (or
refused for good, counted in pano_shim_records_refused_total), and never
drops a record because Kafka is away: it waits. It reads rotated files
(dns.YYYY-MM-DD-HH-MM-SS.log) to their end, oldest first, and deletes each
once all of it is in Kafka. /healthz on the metrics address fails while
records wait for Kafka longer than SHIM_HEALTH_TIMEOUT.
`

func run(args []string) error {
	fs := flag.NewFlagSet("pano-shim", flag.ContinueOnError)
	fs.Usage = envflag.Usage(fs, "", intro)
	var (
		cfg                                        forward.Config
		logs, brokers, metricsAddr, logLevel, prof string
	)
	k := &cfg.Kafka
	fs.StringVar(&logs, "shim-logs", "/zeek/logs/dns.log", "comma-separated Zeek log paths or glob patterns")
	fs.StringVar(&cfg.TopicPrefix, "shim-topic-prefix", "", "topic = prefix + log name (dns for dns.log)")
	fs.StringVar(&cfg.Topic, "shim-topic", "", "send every log to this topic instead")
	fs.StringVar(&cfg.StateDir, "shim-state-dir", "/var/lib/pano-shim", "directory of the saved positions")
	fs.StringVar(&metricsAddr, "shim-metrics-addr", "127.0.0.1:9104", "listen address of /metrics and /healthz (empty: off)")
	fs.DurationVar(&cfg.PollInterval, "shim-poll-interval", 200*time.Millisecond, "how often to look for new data, rotation and truncation")
	fs.DurationVar(&cfg.CheckpointInterval, "shim-checkpoint-interval", time.Second, "how often to save positions")
	fs.DurationVar(&cfg.HealthTimeout, "shim-health-timeout", time.Minute, "/healthz fails once records have waited this long with no answer from Kafka")
	fs.DurationVar(&cfg.StopGrace, "shim-stop-grace", 10*time.Second, "at stop, how long to wait for Kafka to acknowledge what was sent (the rest is sent again after the restart)")
	fs.BoolVar(&cfg.DeleteRotated, "shim-delete-rotated", true, "delete a rotated log (dns.YYYY-MM-DD-HH-MM-SS.log) once all its lines are in Kafka and the position is saved past it")
	fs.IntVar(&cfg.MaxLineBytes, "shim-max-line-bytes", 1<<20, "longer lines are skipped and counted")
	fs.IntVar(&k.MaxBuffered, "shim-max-in-flight", 50000, "records handed to Kafka and not yet acknowledged; reading pauses beyond")
	fs.StringVar(&prof, "shim-cpuprofile", "", "write a Go CPU profile to this file until exit")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&brokers, "kafka-brokers", "127.0.0.1:9092", "comma-separated Kafka bootstrap brokers")
	fs.StringVar(&k.ClientID, "kafka-client-id", "pano-shim", "Kafka client id")
	fs.StringVar(&k.Compression, "kafka-compression", "lz4", "none, gzip, snappy, lz4 or zstd")
	fs.IntVar(&k.BatchBytes, "kafka-batch-bytes", 512<<10, "largest record batch (before compression); capped by each topic's max.message.bytes")
	fs.DurationVar(&k.Linger, "kafka-linger", 5*time.Millisecond, "longest wait to fill a batch")
	fs.StringVar(&k.PartitionBy, "kafka-partition-by", "line", "what picks a record's partition: line (spreads records evenly) or uid (a connection's records in one partition, in order)")
	fs.DurationVar(&k.RetryBackoff, "kafka-retry-backoff", 250*time.Millisecond, "first retry delay, doubling up to 10x; records are retried until acknowledged")
	fs.BoolVar(&k.TLS.Enable, "kafka-tls", false, "use TLS to the brokers")
	fs.StringVar(&k.TLS.CAFile, "kafka-tls-ca", "", "PEM CA bundle (default: system roots)")
	fs.StringVar(&k.TLS.CertFile, "kafka-tls-cert", "", "PEM client certificate")
	fs.StringVar(&k.TLS.KeyFile, "kafka-tls-key", "", "PEM client key")
	fs.StringVar(&k.TLS.ServerName, "kafka-tls-server-name", "", "server name to verify")
	fs.BoolVar(&k.TLS.InsecureSkipVerify, "kafka-tls-insecure-skip-verify", false, "do not verify the broker certificate")
	fs.StringVar(&k.SASL.Mechanism, "kafka-sasl-mechanism", "", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (empty: no SASL)")
	fs.StringVar(&k.SASL.User, "kafka-sasl-user", "", "SASL user")
	fs.StringVar(&k.SASL.Password, "kafka-sasl-password", "", "SASL password (prefer the environment variable)")
	if err := envflag.Parse(fs, args, ""); err != nil {
		return err
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("LOG_LEVEL=%q: want debug, info, warn or error", logLevel)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if _, ok := os.LookupEnv("GOGC"); !ok {
		// Memory is bounded by SHIM_MAX_IN_FLIGHT; trade some of it for
		// less garbage collection per record.
		debug.SetGCPercent(200)
	}
	cfg.Logs = splitList(logs)
	k.Brokers = splitList(brokers)
	cfg.Logger = logger
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Registerer = reg
	fwd, err := forward.New(cfg)
	if err != nil {
		return err
	}
	if prof != "" {
		f, err := os.Create(prof)
		if err != nil {
			return fmt.Errorf("SHIM_CPUPROFILE: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("SHIM_CPUPROFILE: %w", err)
		}
		defer pprof.StopCPUProfile()
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if metricsAddr != "" {
		ln, err := net.Listen("tcp", metricsAddr)
		if err != nil {
			return fmt.Errorf("SHIM_METRICS_ADDR: %w", err)
		}
		srv := &http.Server{Handler: handler(reg, fwd), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
		defer srv.Shutdown(context.Background())
		logger.Info("metrics listening", "addr", ln.Addr().String())
	}
	logger.Info("starting", "logs", cfg.Logs, "brokers", k.Brokers, "state_dir", cfg.StateDir)
	err = fwd.Run(ctx)
	logger.Info("stopped")
	return err
}

// handler serves /metrics and /healthz, which answers 503 with the reason
// while records wait for Kafka too long.
func handler(reg *prometheus.Registry, fwd *forward.Forwarder) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := fwd.Healthy(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
