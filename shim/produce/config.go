// Package produce sends records to Kafka as idempotent record batches
// that it encodes and sends itself (batch.go, wire.go), bounds how many
// records are in flight, and reads back what a previous run already
// wrote so that nothing is sent twice.
package produce

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash"
	"os"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"
)

// Config is what the command line sets about Kafka.
type Config struct {
	Brokers      []string
	ClientID     string
	Version      string // Kafka protocol version, e.g. "3.6.0"
	Compression  string // none, gzip, snappy, lz4, zstd
	FlushBytes   int
	FlushLinger  time.Duration
	RetryMax     int
	RetryBackoff time.Duration // first retry; doubles up to 10x
	MaxInFlight  int           // records handed to the producer and not yet acknowledged

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

// SaramaConfig builds the client settings: the connections, metadata and
// read-back consumer. Producing (acks from all in-sync replicas,
// idempotence, batching, compression, retries) is the Producer's own
// work; the settings it takes from here are the version, the request
// timeout and how to connect (timeouts, TLS, SASL), which its own
// connections use too.
func SaramaConfig(c Config) (*sarama.Config, error) {
	sc := sarama.NewConfig()
	sc.ClientID = c.ClientID
	if sc.ClientID == "" {
		sc.ClientID = "pano-shim"
	}
	v := c.Version
	if v == "" {
		v = "3.6.0"
	}
	ver, err := sarama.ParseKafkaVersion(v)
	if err != nil {
		return nil, fmt.Errorf("kafka version %q: %w", v, err)
	}
	if !ver.IsAtLeast(sarama.V0_11_0_0) {
		return nil, fmt.Errorf("kafka version %q: the shim needs 0.11 or later (idempotent record batches)", v)
	}
	sc.Version = ver
	sc.Net.MaxOpenRequests = 5
	if c.FlushBytes < 0 || c.MaxInFlight < 0 || c.RetryMax < 0 {
		return nil, errors.New("batch bytes, max in flight and retries must not be negative")
	}
	backoff := retryBackoff(c.RetryBackoff)
	sc.Metadata.Retry.BackoffFunc = func(retries, _ int) time.Duration { return backoff(retries) }
	// Reading back after a restart stops at the end of each partition:
	// do not let the broker hold an empty fetch for long.
	sc.Consumer.MaxWaitTime = 50 * time.Millisecond
	sc.Consumer.Return.Errors = true
	if _, err := compressionCodec(c.Compression); err != nil {
		return nil, err
	}
	if c.TLS.Enable {
		tc, err := tlsConfig(c.TLS)
		if err != nil {
			return nil, err
		}
		sc.Net.TLS.Enable = true
		sc.Net.TLS.Config = tc
	}
	if c.SASL.Mechanism != "" {
		sc.Net.SASL.Enable = true
		sc.Net.SASL.User = c.SASL.User
		sc.Net.SASL.Password = c.SASL.Password
		switch strings.ToUpper(c.SASL.Mechanism) {
		case "PLAIN":
			sc.Net.SASL.Mechanism = sarama.SASLTypePlaintext
		case "SCRAM-SHA-256":
			sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
			sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: sha256.New} }
		case "SCRAM-SHA-512":
			sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
			sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: sha512.New} }
		default:
			return nil, fmt.Errorf("SASL mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.SASL.Mechanism)
		}
	}
	if err := sc.Validate(); err != nil {
		return nil, fmt.Errorf("kafka settings: %w", err)
	}
	return sc, nil
}

// compressionCodec maps a compression name to sarama's codec.
func compressionCodec(name string) (sarama.CompressionCodec, error) {
	switch strings.ToLower(name) {
	case "", "none":
		return sarama.CompressionNone, nil
	case "gzip":
		return sarama.CompressionGZIP, nil
	case "snappy":
		return sarama.CompressionSnappy, nil
	case "lz4":
		return sarama.CompressionLZ4, nil
	case "zstd":
		return sarama.CompressionZSTD, nil
	}
	return sarama.CompressionNone, fmt.Errorf("compression %q: want none, gzip, snappy, lz4 or zstd", name)
}

func tlsConfig(c TLSConfig) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify} //nolint:gosec // opt-in flag
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read TLS CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS CA %s: no PEM certificate", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" || c.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load TLS client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// scramClient adapts xdg-go/scram to sarama's SCRAMClient.
type scramClient struct {
	hash func() hash.Hash
	conv *scram.ClientConversation
}

func (s *scramClient) Begin(user, password, authzID string) error {
	c, err := scram.HashGeneratorFcn(s.hash).NewClient(user, password, authzID)
	if err != nil {
		return err
	}
	s.conv = c.NewConversation()
	return nil
}

func (s *scramClient) Step(challenge string) (string, error) { return s.conv.Step(challenge) }
func (s *scramClient) Done() bool                            { return s.conv.Done() }
