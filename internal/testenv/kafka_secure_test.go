package testenv

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"hash"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"
)

// secureTestClient connects to addr with TLS (verifying the broker by the
// CA) when tlsOn, with the client certificate when clientCert, and with
// SASL when mechanism is not empty.
func secureTestClient(t *testing.T, s *SecureKafka, addr string, tlsOn, clientCert bool, mechanism, password string) kafkaTestClient {
	t.Helper()
	var tc *tls.Config
	if tlsOn {
		tc = secureTestTLS(t, s, clientCert)
	}
	return kafkaTestClient{addr: addr, config: func() *sarama.Config {
		cfg := KafkaSaramaConfig()
		cfg.Net.DialTimeout = 5 * time.Second
		cfg.Metadata.Retry.Max = 0
		if tc != nil {
			cfg.Net.TLS.Enable = true
			cfg.Net.TLS.Config = tc
		}
		if mechanism != "" {
			cfg.Net.SASL.Enable = true
			cfg.Net.SASL.User = s.User
			cfg.Net.SASL.Password = password
			cfg.Net.SASL.Mechanism = sarama.SASLMechanism(mechanism)
			switch mechanism {
			case "SCRAM-SHA-256":
				cfg.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &testSCRAM{hash: sha256.New} }
			case "SCRAM-SHA-512":
				cfg.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &testSCRAM{hash: sha512.New} }
			}
		}
		return cfg
	}}
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

// testSCRAM adapts xdg-go/scram to sarama, independently of the shim's
// own adapter, so that this test proves the broker and not the shim.
type testSCRAM struct {
	hash func() hash.Hash
	conv *scram.ClientConversation
}

func (s *testSCRAM) Begin(user, password, authzID string) error {
	c, err := scram.HashGeneratorFcn(s.hash).NewClient(user, password, authzID)
	if err != nil {
		return err
	}
	s.conv = c.NewConversation()
	return nil
}

func (s *testSCRAM) Step(challenge string) (string, error) { return s.conv.Step(challenge) }
func (s *testSCRAM) Done() bool                            { return s.conv.Done() }

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
					if !errors.Is(err, sarama.ErrSASLAuthenticationFailed) {
						t.Fatalf("wrong password: got %v, want %v", err, sarama.ErrSASLAuthenticationFailed)
					}
					t.Logf("refused: %v", err)
				})
			}
		}
		t.Run("no SASL on SASL_PLAINTEXT", func(t *testing.T) {
			t.Parallel()
			err := secureTestConnect(kafkaTestClient{s.SASLPlaintext, KafkaSaramaConfig})
			if err == nil {
				t.Fatal("a client without SASL got metadata")
			}
			t.Logf("refused: %v", err)
		})
		t.Run("SSL without the CA", func(t *testing.T) {
			t.Parallel()
			cl := secureTestClient(t, s, s.SSL, true, false, "", "")
			base := cl.config
			cl.config = func() *sarama.Config {
				cfg := base()
				cfg.Net.TLS.Config = &tls.Config{MinVersion: tls.VersionTLS12} // system roots
				return cfg
			}
			err := secureTestConnect(cl)
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
	cl, err := sarama.NewClient([]string{c.addr}, c.config())
	if err != nil {
		return err
	}
	return cl.Close()
}
