package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pano-observability/pano/internal/testenv"
)

// secureCase is one way for the shim to reach the secured broker.
type secureCase struct {
	name     string
	addr     string
	flags    []string
	password string // for $KAFKA_SASL_PASSWORD; "" sets none
}

// secureCases covers every secured listener and, on the SASL ones, every
// mechanism. The broker is checked against the CA; on MTLS the name
// checked is the certificate's DNS name instead of the address.
func secureCases(k *testenv.SecureKafka) []secureCase {
	verify := []string{"-kafka-tls", "-kafka-tls-ca", k.CAFile}
	cases := []secureCase{
		{name: "TLS", addr: k.SSL, flags: verify},
		{name: "mTLS", addr: k.MTLS, flags: append([]string{"-kafka-tls-cert", k.ClientCertFile, "-kafka-tls-key", k.ClientKeyFile,
			"-kafka-tls-server-name", testenv.KafkaServerName}, verify...)},
	}
	for _, m := range testenv.KafkaSASLMechanisms {
		sasl := []string{"-kafka-sasl-mechanism", m, "-kafka-sasl-user", k.User}
		cases = append(cases,
			secureCase{name: "SASL_PLAINTEXT/" + m, addr: k.SASLPlaintext, flags: sasl, password: k.Password},
			secureCase{name: "SASL_SSL/" + m, addr: k.SASLSSL, flags: append(sasl, verify...), password: k.Password})
	}
	return cases
}

// topicPrefix is a prefix unique to the subtest, valid in a topic name.
func topicPrefix(name string) string {
	return "sec-" + strings.NewReplacer("/", "-", "_", "-").Replace(strings.ToLower(name)) + "-"
}

// startSecureShim writes n JSON records to a fresh dns.log and starts the
// shim on it with the case's settings.
func startSecureShim(t *testing.T, c secureCase, n int) *shimProc {
	t.Helper()
	log := filepath.Join(t.TempDir(), "dns.log")
	lines := make([]string, n)
	for i := range lines {
		lines[i] = jsonRecord(i)
	}
	writeLines(t, log, lines)
	var env []string
	if c.password != "" {
		env = []string{"KAFKA_SASL_PASSWORD=" + c.password}
	}
	flags := append([]string{"-shim-topic-prefix", topicPrefix(t.Name())}, c.flags...)
	return startShimEnv(t, env, log, c.addr, t.TempDir(), flags...)
}

// TestSecureKafka: the shim's TLS and SASL settings work against a real
// broker. Over each secured listener and SASL mechanism every record
// arrives once; a wrong password or an unknown CA is logged as such, and
// the password never appears in the log.
func TestSecureKafka(t *testing.T) {
	k := testenv.StartKafkaSecure(t, testenv.KafkaSecurity{})
	shimBinary(t) // build once, before the parallel subtests start
	const n = 300

	t.Run("delivers", func(t *testing.T) {
		for _, c := range secureCases(k) {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				topic := topicPrefix(t.Name()) + "dns"
				k.CreateTopic(t, topic, 2)
				p := startSecureShim(t, c, n)
				// Checked over PLAINTEXT: an independent path to the same topic.
				waitRecords(t, k.Bootstrap, topic, n, 30*time.Second)
				p.stop(t)
				exactlyOnce(t, k.Bootstrap, topic, n)
				if l := p.logLines(k.Password); len(l) > 0 {
					t.Fatalf("the password is in the shim's log: %q", l[0])
				}
			})
		}
	})

	t.Run("refused", func(t *testing.T) {
		for _, m := range testenv.KafkaSASLMechanisms {
			c := secureCase{name: "wrong password/" + m, addr: k.SASLPlaintext, flags: []string{"-kafka-sasl-mechanism", m, "-kafka-sasl-user", k.User},
				password: "not-" + k.Password}
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				refused(t, k, c, "SASL Authentication failed")
			})
		}
		c := secureCase{name: "unknown CA", addr: k.SSL, flags: []string{"-kafka-tls"}}
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			refused(t, k, c, "certificate signed by unknown authority")
		})
	})
}

// refused runs the shim with settings the broker must refuse and waits
// for an error naming the reason in its log: the shim retries Kafka
// sessions, so the log is what tells an operator why nothing arrives.
func refused(t *testing.T, k *testenv.SecureKafka, c secureCase, reason string) {
	t.Helper()
	topic := topicPrefix(t.Name()) + "dns"
	k.CreateTopic(t, topic, 1)
	p := startSecureShim(t, c, 10)
	line := waitErrorLine(t, p, reason, 30*time.Second)
	t.Logf("shim log: %s", line)
	if c.password != "" {
		if l := p.logLines(c.password); len(l) > 0 {
			t.Fatalf("the password is in the shim's log: %q", l[0])
		}
	}
	if got := topicEnd(t, k.Bootstrap, topic); got != 0 {
		t.Fatalf("%d records reached kafka with refused settings", got)
	}
}

// waitErrorLine waits until an error in the shim's log names reason, and
// returns that line: a logged error, or the last words of a shim that
// gave up.
func waitErrorLine(t *testing.T, p *shimProc, reason string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, l := range p.logLines(reason) {
			if strings.Contains(l, "level=ERROR") || strings.HasPrefix(l, "pano-shim:") {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no error naming %q in the shim's log after %v", reason, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
