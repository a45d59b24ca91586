package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// secureTestClient connects to addr with TLS (verifying the broker by the
// CA) when tlsOn, with the client certificate when clientCert, and with
// SASL when mechanism is not empty.
func secureTestClient(t *testing.T, s *SecureKafka, addr string, tlsOn, clientCert bool, mechanism, password string) kafkaTestClient {
	t.Helper()
	c := kafkaTestClient{addr: addr}
	if tlsOn {
		c.opts = append(c.opts, kgo.DialTLSConfig(secureTestTLS(t, s, clientCert)))
	}
	if mechanism != "" {
		var m sasl.Mechanism
		switch mechanism {
		case "PLAIN":
			m = plain.Auth{User: s.User, Pass: password}.AsMechanism()
		case "SCRAM-SHA-256":
			m = scram.Auth{User: s.User, Pass: password}.AsSha256Mechanism()
		case "SCRAM-SHA-512":
			m = scram.Auth{User: s.User, Pass: password}.AsSha512Mechanism()
		default:
			t.Fatalf("no client for SASL mechanism %s", mechanism)
		}
		c.opts = append(c.opts, kgo.SASL(m))
	}
	return c
}

func secureTestTLS(t *testing.T, s *SecureKafka, clientCert bool) *tls.Config {
	t.Helper()
	ca, err := os.ReadFile(s.CAFile)
	if err != nil {
		t.Fatalf("read CA: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatalf("%s: no certificate", s.CAFile)
	}
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if clientCert {
		cert, err := tls.LoadX509KeyPair(s.ClientCertFile, s.ClientKeyFile)
		if err != nil {
			t.Fatalf("client certificate: %v", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc
}

// TestKafkaSecure: each secured listener and SASL mechanism carries
// records both ways; wrong credentials and unverifiable certificates are
// refused.
func TestKafkaSecure(t *testing.T) {
	s := StartKafkaSecure(t, KafkaSecurity{User: "alice"})
	type tcase struct {
		name      string
		addr      string
		tls, cert bool
		mechanism string
	}
	var cases []tcase
	for _, m := range KafkaSASLMechanisms {
		cases = append(cases,
			tcase{name: "SASL_PLAINTEXT/" + m, addr: s.SASLPlaintext, mechanism: m},
			tcase{name: "SASL_SSL/" + m, addr: s.SASLSSL, tls: true, mechanism: m})
	}
	cases = append(cases,
		tcase{name: "SSL", addr: s.SSL, tls: true},
		tcase{name: "MTLS", addr: s.MTLS, tls: true, cert: true})

	t.Run("roundtrip", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				topic := "secure-" + strings.NewReplacer("/", "-", "_", "-").Replace(strings.ToLower(c.name))
				s.CreateTopic(t, topic, 2)
				cl := secureTestClient(t, s, c.addr, c.tls, c.cert, c.mechanism, s.Password)
				parts := kafkaTestProduce(t, cl, topic, 200, 10, 0)
				got := kafkaTestConsume(t, cl, topic, topic+"-group", 200)
				kafkaTestCheck(t, got, parts, 20)
				kafkaTestCheck(t, ReadTopic(t, c.addr, topic, cl.opts...), parts, 20)
			})
		}
	})

	t.Run("refused", func(t *testing.T) {
		for _, m := range KafkaSASLMechanisms {
			for _, l := range []struct {
				name, addr string
				tls        bool
			}{{"SASL_PLAINTEXT", s.SASLPlaintext, false}, {"SASL_SSL", s.SASLSSL, true}} {
				t.Run("wrong password/"+l.name+"/"+m, func(t *testing.T) {
					t.Parallel()
					err := secureTestConnect(secureTestClient(t, s, l.addr, l.tls, false, m, s.Password+"x"))
					if !errors.Is(err, kerr.SaslAuthenticationFailed) {
						t.Fatalf("wrong password: got %v, want %v", err, kerr.SaslAuthenticationFailed)
					}
					t.Logf("refused: %v", err)
				})
			}
		}
		t.Run("no SASL on SASL_PLAINTEXT", func(t *testing.T) {
			t.Parallel()
			err := secureTestConnect(kafkaTestClient{addr: s.SASLPlaintext})
			if err == nil {
				t.Fatal("a client without SASL got metadata")
			}
			t.Logf("refused: %v", err)
		})
		t.Run("SSL without the CA", func(t *testing.T) {
			t.Parallel()
			// System roots, which do not hold the test CA.
			err := secureTestConnect(kafkaTestClient{addr: s.SSL, opts: []kgo.Opt{kgo.DialTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12})}})
			var unknown x509.UnknownAuthorityError
			if !errors.As(err, &unknown) {
				t.Fatalf("got %v, want an unknown authority error", err)
			}
			t.Logf("refused: %v", err)
		})
		t.Run("MTLS without a client certificate", func(t *testing.T) {
			t.Parallel()
			err := secureTestConnect(secureTestClient(t, s, s.MTLS, true, false, "", ""))
			if err == nil {
				t.Fatal("a client without a certificate got metadata")
			}
			t.Logf("refused: %v", err)
		})
	})
}

// secureTestConnect asks the broker for metadata and returns the error.
func secureTestConnect(c kafkaTestClient) error {
	cl, err := newKafkaClient(c.addr, slices.Concat(c.opts, []kgo.Opt{kgo.RequestRetries(1)})...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = kadm.NewClient(cl).BrokerMetadata(ctx)
	return err
}
