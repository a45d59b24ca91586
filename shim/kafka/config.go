// Package kafka is the shim's side of Kafka, on franz-go: the client
// settings (TLS, SASL, batching, compression), the origin header that
// says which line of which file a record came from, the read-back that
// finds what a run before a crash already wrote, and which broker errors
// refuse a record for good.
package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Config is what the command line sets about Kafka.
type Config struct {
	Brokers      []string
	ClientID     string
	Compression  string // none, gzip, snappy, lz4, zstd
	BatchBytes   int    // largest record batch
	Linger       time.Duration
	RetryBackoff time.Duration // first retry; doubles up to 10x
	// MaxBuffered is the most records between Produce and their
	// acknowledgement: Produce blocks beyond it, so an absent broker
	// stops the reading instead of growing memory.
	MaxBuffered int
	// PartitionBy is what picks a record's partition: "line" (each line
	// by its origin, so that records spread evenly whatever the uids) or
	// "uid" (a connection's records in one partition, in order); empty
	// is "line".
	PartitionBy string

	TLS  TLSConfig
	SASL SASLConfig
}

// TLSConfig enables TLS to the brokers.
type TLSConfig struct {
	Enable             bool
	CAFile             string
	CertFile, KeyFile  string
	ServerName         string
	InsecureSkipVerify bool
}

// SASLConfig enables SASL authentication.
type SASLConfig struct {
	Mechanism string // PLAIN, SCRAM-SHA-256, SCRAM-SHA-512; "" disables
	User      string
	Password  string
}

// ClientOpts returns the options every client of the shim shares: the
// brokers, how to connect (TLS, SASL) and logging. Producing adds
// ProducerOpts.
func (c Config) ClientOpts(log *slog.Logger) ([]kgo.Opt, error) {
	if len(c.Brokers) == 0 {
		return nil, errors.New("KAFKA_BROKERS: no broker")
	}
	id := c.ClientID
	if id == "" {
		id = "pano-shim"
	}
	backoff := c.RetryBackoff
	if backoff <= 0 {
		backoff = 250 * time.Millisecond
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(id),
		kgo.RetryBackoffFn(func(tries int) time.Duration {
			return min(backoff<<min(tries, 4), 10*backoff)
		}),
		// Brokers that auto-create topics do so for the shim's topics.
		kgo.AllowAutoTopicCreation(),
	}
	if log != nil {
		opts = append(opts, kgo.WithLogger(slogLogger{log.With("component", "kafka-client")}))
	}
	if c.TLS.Enable {
		tc, err := tlsConfig(c.TLS)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	} else if c.TLS.CAFile != "" || c.TLS.CertFile != "" || c.TLS.KeyFile != "" {
		return nil, errors.New("KAFKA_TLS_CA, KAFKA_TLS_CERT or KAFKA_TLS_KEY set without KAFKA_TLS=true")
	}
	if c.SASL.Mechanism != "" {
		if c.SASL.User == "" {
			return nil, fmt.Errorf("KAFKA_SASL_MECHANISM=%s needs KAFKA_SASL_USER", c.SASL.Mechanism)
		}
		switch strings.ToUpper(c.SASL.Mechanism) {
		case "PLAIN":
			opts = append(opts, kgo.SASL(plain.Auth{User: c.SASL.User, Pass: c.SASL.Password}.AsMechanism()))
		case "SCRAM-SHA-256":
			opts = append(opts, kgo.SASL(scram.Auth{User: c.SASL.User, Pass: c.SASL.Password}.AsSha256Mechanism()))
		case "SCRAM-SHA-512":
			opts = append(opts, kgo.SASL(scram.Auth{User: c.SASL.User, Pass: c.SASL.Password}.AsSha512Mechanism()))
		default:
			return nil, fmt.Errorf("KAFKA_SASL_MECHANISM=%q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.SASL.Mechanism)
		}
		if !c.TLS.Enable && log != nil {
			log.Warn("SASL without TLS: the password crosses the network in the clear unless KAFKA_TLS=true")
		}
	}
	return opts, nil
}

// ProducerOpts returns the producing options: idempotent (franz-go's
// default; acks from all in-sync replicas), the partition chosen by the
// shim, batching, compression, no retry limit (a record is acknowledged
// or refused for good, never dropped on a timer) and the buffer bound.
// Batches are capped by limits (KAFKA_BATCH_BYTES and each topic's own
// limit).
func (c Config) ProducerOpts(limits *BatchLimits) ([]kgo.Opt, error) {
	codec, err := compression(c.Compression)
	if err != nil {
		return nil, err
	}
	if c.PartitionBy != "" && c.PartitionBy != PartitionByLine && c.PartitionBy != PartitionByUID {
		return nil, fmt.Errorf("KAFKA_PARTITION_BY=%q: want line or uid", c.PartitionBy)
	}
	if c.BatchBytes < 1024 || c.BatchBytes > 1<<30 {
		return nil, fmt.Errorf("KAFKA_BATCH_BYTES=%d: want 1024 to 1073741824", c.BatchBytes)
	}
	if c.MaxBuffered < 1 {
		return nil, fmt.Errorf("SHIM_MAX_IN_FLIGHT=%d: want at least 1", c.MaxBuffered)
	}
	if c.Linger < 0 {
		return nil, fmt.Errorf("KAFKA_LINGER=%v must not be negative", c.Linger)
	}
	opts := []kgo.Opt{
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(codec),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// A topic that vanishes for a moment (a broker restarting) must
		// not fail records: the shim checked at start that it exists.
		kgo.UnknownTopicRetries(-1),
	}
	if limits != nil {
		opts = append(opts, kgo.ProducerBatchMaxBytesFn(limits.Of))
	}
	if c.Linger > 0 {
		opts = append(opts, kgo.ProducerLinger(c.Linger))
	}
	opts = append(opts, kgo.MaxBufferedRecords(c.MaxBuffered))
	return opts, nil
}

func compression(name string) (kgo.CompressionCodec, error) {
	switch strings.ToLower(name) {
	case "", "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("KAFKA_COMPRESSION=%q: want none, gzip, snappy, lz4 or zstd", name)
}

func tlsConfig(c TLSConfig) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify} //nolint:gosec // opt-in flag
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("KAFKA_TLS_CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("KAFKA_TLS_CA %s: no PEM certificate", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" || c.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("KAFKA_TLS_CERT/KAFKA_TLS_KEY: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// slogLogger passes franz-go's log lines to slog.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Level() kgo.LogLevel {
	if s.l.Enabled(context.Background(), slog.LevelDebug) {
		return kgo.LogLevelDebug
	}
	return kgo.LogLevelWarn
}

// Log logs franz-go's errors and warnings as such; its info lines
// (connections, metadata) only at debug level, where they help.
func (s slogLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	l := slog.LevelDebug
	switch level {
	case kgo.LogLevelError:
		l = slog.LevelError
	case kgo.LogLevelWarn:
		l = slog.LevelWarn
	}
	s.l.Log(context.Background(), l, msg, keyvals...)
}
