// Command pano-shim follows Zeek logs and produces every record to Kafka,
// once, as a flat JSON object keyed by the record's uid.
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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	gometrics "github.com/rcrowley/go-metrics"

	"github.com/pano-observability/pano/shim/forward"
	"github.com/pano-observability/pano/shim/produce"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "pano-shim:", err)
		os.Exit(1)
	}
}

// env lets every flag default to an environment variable.
type env struct{ fs *flag.FlagSet }

func (e env) str(p *string, name, envName, def, usage string) {
	if v, ok := os.LookupEnv(envName); ok {
		def = v
	}
	e.fs.StringVar(p, name, def, usage+" ($"+envName+")")
}

func (e env) int(p *int, name, envName string, def int, usage string) {
	if v, ok := os.LookupEnv(envName); ok {
		if n, err := strconv.Atoi(v); err == nil {
			def = n
		}
	}
	e.fs.IntVar(p, name, def, usage+" ($"+envName+")")
}

func (e env) dur(p *time.Duration, name, envName string, def time.Duration, usage string) {
	if v, ok := os.LookupEnv(envName); ok {
		if d, err := time.ParseDuration(v); err == nil {
			def = d
		}
	}
	e.fs.DurationVar(p, name, def, usage+" ($"+envName+")")
}

func (e env) boolean(p *bool, name, envName string, def bool, usage string) {
	if v, ok := os.LookupEnv(envName); ok {
		if b, err := strconv.ParseBool(v); err == nil {
			def = b
		}
	}
	e.fs.BoolVar(p, name, def, usage+" ($"+envName+")")
}

func run(args []string) error {
	fs := flag.NewFlagSet("pano-shim", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `pano-shim follows Zeek logs and produces each record to Kafka, keyed by uid:
a JSON line as Zeek wrote it, a TSV line as Zeek's JSON writer would have
written it. It saves its position only after Kafka acknowledged everything
before it, and never drops a record: when Kafka is away it waits. It reads
rotated files (dns.YYYY-MM-DD-HH-MM-SS.log) to their end, oldest first,
and deletes each once all of it is in Kafka.

Every flag can also be set by the environment variable named in its help.

`)
		fs.PrintDefaults()
	}
	var (
		logs, brokers, prefix, topic, stateDir, metricsAddr, logLevel, cpuProfile string
		kc                                                                        produce.Config
		poll, checkpoint                                                          time.Duration
		maxLine                                                                   int
		deleteRotated                                                             bool
	)
	e := env{fs}
	e.str(&logs, "logs", "SHIM_LOGS", "/zeek/logs/dns.log", "comma-separated Zeek log paths or glob patterns")
	e.str(&brokers, "brokers", "KAFKA_BROKERS", "127.0.0.1:9092", "comma-separated Kafka bootstrap brokers")
	e.str(&prefix, "topic-prefix", "SHIM_TOPIC_PREFIX", "", "topic = prefix + log name (dns for dns.log)")
	e.str(&topic, "topic", "SHIM_TOPIC", "", "send every log to this topic instead")
	e.str(&stateDir, "state-dir", "SHIM_STATE_DIR", "/var/lib/pano-shim", "directory of the saved positions")
	e.str(&metricsAddr, "metrics-addr", "SHIM_METRICS_ADDR", "127.0.0.1:9104", "Prometheus /metrics listen address (empty: off)")
	e.str(&logLevel, "log-level", "LOG_LEVEL", "info", "debug, info, warn or error")
	e.dur(&poll, "poll-interval", "SHIM_POLL_INTERVAL", 200*time.Millisecond, "how often to look for new data, rotation and truncation")
	e.dur(&checkpoint, "checkpoint-interval", "SHIM_CHECKPOINT_INTERVAL", time.Second, "how often to save positions")
	e.boolean(&deleteRotated, "delete-rotated", "SHIM_DELETE_ROTATED", true, "delete a rotated log (dns.YYYY-MM-DD-HH-MM-SS.log) once all its lines are in Kafka and the position is saved past it")
	e.int(&maxLine, "max-line-bytes", "SHIM_MAX_LINE_BYTES", 1<<20, "longer lines are skipped and counted")
	e.str(&kc.ClientID, "client-id", "KAFKA_CLIENT_ID", "pano-shim", "Kafka client id")
	e.str(&kc.Version, "kafka-version", "KAFKA_VERSION", "3.6.0", "Kafka protocol version to speak (brokers 4.x need 3.x or later)")
	e.str(&kc.Compression, "compression", "KAFKA_COMPRESSION", "lz4", "none, gzip, snappy, lz4 or zstd")
	e.int(&kc.FlushBytes, "batch-bytes", "KAFKA_BATCH_BYTES", 512<<10, "send a batch once it holds this many bytes (at most the topic's max.message.bytes)")
	e.dur(&kc.FlushLinger, "linger", "KAFKA_LINGER", 5*time.Millisecond, "longest wait to fill a batch")
	e.int(&kc.RetryMax, "retry-max", "KAFKA_RETRY_MAX", 10, "retries of a batch before the session restarts (nothing is dropped either way)")
	e.dur(&kc.RetryBackoff, "retry-backoff", "KAFKA_RETRY_BACKOFF", 250*time.Millisecond, "first retry delay, doubling up to 10x")
	e.int(&kc.MaxInFlight, "max-in-flight", "SHIM_MAX_IN_FLIGHT", 50000, "records sent and not yet acknowledged; reading pauses beyond")
	e.boolean(&kc.TLS.Enable, "tls", "KAFKA_TLS", false, "use TLS to the brokers")
	e.str(&kc.TLS.CAFile, "tls-ca", "KAFKA_TLS_CA", "", "PEM CA bundle (default: system roots)")
	e.str(&kc.TLS.CertFile, "tls-cert", "KAFKA_TLS_CERT", "", "PEM client certificate")
	e.str(&kc.TLS.KeyFile, "tls-key", "KAFKA_TLS_KEY", "", "PEM client key")
	e.str(&kc.TLS.ServerName, "tls-server-name", "KAFKA_TLS_SERVER_NAME", "", "server name to verify")
	e.boolean(&kc.TLS.InsecureSkipVerify, "tls-insecure-skip-verify", "KAFKA_TLS_INSECURE_SKIP_VERIFY", false, "do not verify the broker certificate")
	e.str(&kc.SASL.Mechanism, "sasl-mechanism", "KAFKA_SASL_MECHANISM", "", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (empty: no SASL)")
	e.str(&kc.SASL.User, "sasl-user", "KAFKA_SASL_USER", "", "SASL user")
	e.str(&kc.SASL.Password, "sasl-password", "KAFKA_SASL_PASSWORD", "", "SASL password (prefer the environment variable)")
	e.str(&cpuProfile, "cpuprofile", "SHIM_CPUPROFILE", "", "write a Go CPU profile to this file until exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("log level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	// sarama's own go-metrics registry costs CPU per message and is not
	// exported anywhere: turn it off.
	gometrics.UseNilMetrics = true
	if _, ok := os.LookupEnv("GOGC"); !ok {
		// Memory is bounded by -max-in-flight; trade some of it for
		// less garbage collection per record.
		debug.SetGCPercent(200)
	}

	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	kc.Brokers = splitList(brokers)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	fwd, err := forward.New(forward.Config{
		Logs: splitList(logs), Topic: topic, TopicPrefix: prefix, StateDir: stateDir,
		PollInterval: poll, CheckpointInterval: checkpoint, MaxLineBytes: maxLine, DeleteRotated: deleteRotated,
		Kafka: kc, Logger: logger, Registerer: reg,
	})
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if metricsAddr != "" {
		ln, err := net.Listen("tcp", metricsAddr)
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln) //nolint:errcheck // ends with Shutdown
		defer srv.Shutdown(context.Background())
		logger.Info("metrics listening", "addr", ln.Addr().String())
	}
	logger.Info("starting", "logs", logs, "brokers", kc.Brokers, "state_dir", stateDir)
	err = fwd.Run(ctx)
	logger.Info("stopped")
	return err
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
