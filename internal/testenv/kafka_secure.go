package testenv

// A broker with TLS and SASL listeners, for tests of clients' security
// settings. The certificates are made here at test time: nothing secret
// is checked in and nothing expires in the repository.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// KafkaSASLMechanisms are the SASL mechanisms the secured listeners accept.
var KafkaSASLMechanisms = []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}

// KafkaServerName is a DNS name in the broker's certificate besides the
// IP address 127.0.0.1, for clients that set the name to verify.
const KafkaServerName = "kafka.pano.test"

// KafkaSecurity chooses the credentials of StartKafkaSecure's SASL
// listeners. Both may contain only letters, digits, '.', '_' and '-': they
// go unquoted into the storage tool's SCRAM syntax.
type KafkaSecurity struct {
	User     string // default "pano"
	Password string // default: random
}

// SecureKafka is a broker with secured listeners next to its PLAINTEXT
// one (Bootstrap), which stays open so that tests can create and read
// topics without credentials. The inter-broker and controller listeners
// are PLAINTEXT.
type SecureKafka struct {
	*Kafka

	SASLPlaintext string // SASL_PLAINTEXT, every mechanism of KafkaSASLMechanisms
	SSL           string // SSL; the broker is authenticated, the client is not
	SASLSSL       string // SASL_SSL, every mechanism of KafkaSASLMechanisms
	MTLS          string // SSL requiring a client certificate signed by the CA

	CAFile         string // PEM of the CA that signed the broker's and the client's certificates
	ClientCertFile string // PEM client certificate, for MTLS
	ClientKeyFile  string // PEM key of ClientCertFile (PKCS #8)

	User, Password string
}

var kafkaCredentialRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// StartKafkaSecure starts a broker like StartKafka with four more
// listeners: SASL_PLAINTEXT, SSL, SASL_SSL and SSL with client
// certificates. SCRAM credentials for the user are created when the
// storage is formatted; PLAIN users are listed in the listeners' JAAS
// settings.
func StartKafkaSecure(t testing.TB, sec KafkaSecurity) *SecureKafka {
	t.Helper()
	if sec.User == "" {
		sec.User = "pano"
	}
	if sec.Password == "" {
		sec.Password = randomHex(t, 12)
	}
	if !kafkaCredentialRE.MatchString(sec.User) || !kafkaCredentialRE.MatchString(sec.Password) {
		t.Fatalf("kafka: user and password may contain only letters, digits, '.', '_' and '-'")
	}
	dir := t.TempDir()
	pki, err := newKafkaPKI()
	if err != nil {
		t.Fatalf("kafka certificates: %v", err)
	}
	s := &SecureKafka{
		CAFile:         filepath.Join(dir, "ca.pem"),
		ClientCertFile: filepath.Join(dir, "client.pem"),
		ClientKeyFile:  filepath.Join(dir, "client-key.pem"),
		User:           sec.User,
		Password:       sec.Password,
	}
	if err := pki.write(s.CAFile, s.ClientCertFile, s.ClientKeyFile); err != nil {
		t.Fatalf("kafka certificates: %v", err)
	}
	s.Kafka = startKafka(t, func() kafkaExtra { return secureExtra(t, pki, sec) })
	for _, l := range s.Kafka.extra.listeners {
		addr := net4(l.port)
		switch l.name {
		case "SASL_PLAINTEXT":
			s.SASLPlaintext = addr
		case "SSL":
			s.SSL = addr
		case "SASL_SSL":
			s.SASLSSL = addr
		case "MTLS":
			s.MTLS = addr
		}
	}
	t.Logf("kafka secured listeners: SASL_PLAINTEXT %s, SSL %s, SASL_SSL %s, MTLS %s", s.SASLPlaintext, s.SSL, s.SASLSSL, s.MTLS)
	return s
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random: %v", err)
	}
	return hex.EncodeToString(b)
}

// secureExtra is the configuration of the secured listeners, on fresh
// ports.
func secureExtra(t testing.TB, pki *kafkaPKI, sec KafkaSecurity) kafkaExtra {
	x := kafkaExtra{
		listeners: []kafkaListener{
			{name: "SASL_PLAINTEXT", protocol: "SASL_PLAINTEXT", port: FreePort(t)},
			{name: "SSL", protocol: "SSL", port: FreePort(t)},
			{name: "SASL_SSL", protocol: "SASL_SSL", port: FreePort(t)},
			{name: "MTLS", protocol: "SSL", port: FreePort(t)},
		},
		props: []string{
			// The default is GSSAPI, which would need Kerberos.
			"sasl.enabled.mechanisms=" + strings.Join(KafkaSASLMechanisms, ","),
			// One certificate for every TLS listener, inline PEM
			// (KIP-651): no keystore files, no keytool.
			"ssl.keystore.type=PEM",
			"ssl.keystore.certificate.chain=" + propertyValue(pki.serverCert),
			"ssl.keystore.key=" + propertyValue(pki.serverKey),
			"listener.name.mtls.ssl.client.auth=required",
			"listener.name.mtls.ssl.truststore.type=PEM",
			"listener.name.mtls.ssl.truststore.certificates=" + propertyValue(pki.caCert),
		},
	}
	for _, l := range []string{"sasl_plaintext", "sasl_ssl"} {
		x.props = append(x.props, saslJAAS(l, sec)...)
	}
	for _, m := range []string{"SCRAM-SHA-256", "SCRAM-SHA-512"} {
		x.formatArgs = append(x.formatArgs, "--add-scram", fmt.Sprintf("%s=[name=%s,password=%s]", m, sec.User, sec.Password))
	}
	return x
}

// saslJAAS is the broker's side of each mechanism on a listener. PLAIN
// takes its users from user_<name> entries; SCRAM reads the credentials
// stored in the cluster metadata.
func saslJAAS(listener string, sec KafkaSecurity) []string {
	p := "listener.name." + listener + "."
	return []string{
		p + fmt.Sprintf(`plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_%s="%s";`, sec.User, sec.Password),
		p + "scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;",
		p + "scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;",
	}
}

// propertyValue puts a multi-line PEM on one server.properties line:
// java.util.Properties reads "\n" back as a newline.
func propertyValue(pemText []byte) string {
	return strings.ReplaceAll(strings.TrimSpace(string(pemText)), "\n", `\n`)
}

// kafkaPKI is a throwaway CA with a server certificate for 127.0.0.1 and
// a client certificate, all PEM.
type kafkaPKI struct {
	caCert                []byte
	serverCert, serverKey []byte
	clientCert, clientKey []byte
}

func newKafkaPKI() (*kafkaPKI, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	caTmpl := certTemplate("pano test CA")
	caTmpl.IsCA = true
	caTmpl.BasicConstraintsValid = true
	caTmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	p := &kafkaPKI{caCert: pemBlock("CERTIFICATE", caDER)}

	server := certTemplate("pano test kafka")
	server.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	server.DNSNames = []string{KafkaServerName}
	server.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	if p.serverCert, p.serverKey, err = issue(server, ca, caKey); err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	client := certTemplate("pano test client")
	client.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if p.clientCert, p.clientKey, err = issue(client, ca, caKey); err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	return p, nil
}

// certTemplate is valid from an hour ago (clock skew) for a day.
func certTemplate(cn string) *x509.Certificate {
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
}

// issue makes a key and a certificate from tmpl signed by the CA; the key
// is PKCS #8, the form Kafka's PEM key store reads.
func issue(tmpl, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", pkcs8), nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// write saves what clients need: the CA, and the client certificate and
// key.
func (p *kafkaPKI) write(caFile, certFile, keyFile string) error {
	for _, f := range []struct {
		path string
		data []byte
	}{{caFile, p.caCert}, {certFile, p.clientCert}, {keyFile, p.clientKey}} {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			return err
		}
	}
	return nil
}
