package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestParseSClient reads outputs of the real `openssl s_client -brief`
// (OpenSSL 3.0), recorded in testdata/sclient (its README says how).
func TestParseSClient(t *testing.T) {
	for _, tc := range []struct {
		file   string
		exitOK bool
		want   TLSHandshake
	}{
		{"tls12-verified.txt", true, TLSHandshake{Established: true, Version: "TLSv1.2", Cipher: "ECDHE-ECDSA-AES256-GCM-SHA384",
			PeerSubject: "O = PANO demo2, CN = expiring.pano.test", Verified: true}},
		{"tls13-unverified.txt", true, TLSHandshake{Established: true, Version: "TLSv1.3", Cipher: "TLS_AES_256_GCM_SHA384",
			PeerSubject: "O = PANO demo2, CN = www.pano.test"}},
		{"tls11-refused.txt", false, TLSHandshake{Alert: "protocol version"}},
		{"tls13-wrong-ca.txt", false, TLSHandshake{}},
	} {
		b, err := os.ReadFile(filepath.Join("testdata", "sclient", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		got := ParseSClient(string(b), tc.exitOK)
		if got.Output != string(b) {
			t.Errorf("%s: Output is not s_client's output", tc.file)
		}
		got.Output = ""
		if got != tc.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.file, got, tc.want)
		}
	}
	// A failed exit overrides an "established" line (closed at once after).
	b, _ := os.ReadFile(filepath.Join("testdata", "sclient", "tls12-verified.txt"))
	if h := ParseSClient(string(b), false); h.Established || h.Version != "" {
		t.Errorf("exit 1 parsed as established: %+v", h)
	}
}

func TestSClientArgs(t *testing.T) {
	args, err := sclientArgs(TLSHandshakeOptions{Addr: netip.MustParseAddrPort("198.18.0.2:443"), ServerName: "www.pano.test", Version: "1.1", CAFile: "/ca.crt"})
	want := "s_client -connect 198.18.0.2:443 -tls1_1 -brief -servername www.pano.test -cipher DEFAULT:@SECLEVEL=0 -CAfile /ca.crt -verify_return_error"
	if err != nil || strings.Join(args, " ") != want {
		t.Errorf("args\n %s (%v)\nwant\n %s", strings.Join(args, " "), err, want)
	}
	args, err = sclientArgs(TLSHandshakeOptions{Addr: netip.MustParseAddrPort("[fd00::2]:443"), Version: "1.3"})
	if err != nil || strings.Join(args, " ") != "s_client -connect [fd00::2]:443 -tls1_3 -brief -noservername" {
		t.Errorf("args %v %v", args, err)
	}
	for _, o := range []TLSHandshakeOptions{{Version: "1.2"}, {Addr: netip.MustParseAddrPort("198.18.0.2:443"), Version: "1.4"}} {
		if _, err := sclientArgs(o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

// TestOpenSSLHandshake makes real handshakes with demo2's nginx: each
// version it allows, with each name, verified against its CA; TLS 1.1
// refused by the server's alert.
func TestOpenSSLHandshake(t *testing.T) {
	ns := NewNetns(t)
	n := StartNginx(t, ns, NginxOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, version := range []string{"1.2", "1.3"} {
		for _, name := range []string{NginxName, NginxExpiringName} {
			h := OpenSSLHandshake(ctx, t, TLSHandshakeOptions{Addr: n.HTTPS, ServerName: name, Version: version, CAFile: n.CAFile})
			if !h.Established || h.Version != "TLSv"+version || !h.Verified || !strings.HasSuffix(h.PeerSubject, "CN = "+name) {
				t.Errorf("TLS %s to %s: %+v", version, name, h)
			}
		}
	}
	h := OpenSSLHandshake(ctx, t, TLSHandshakeOptions{Addr: n.HTTPS, ServerName: NginxName, Version: "1.1"})
	if h.Established || h.Alert != "protocol version" {
		t.Errorf("TLS 1.1: %+v, want refused with the alert protocol version", h)
	}
	// Another CA: the chain does not verify, so the handshake fails.
	other := writeSelfSignedCA(t)
	if h := OpenSSLHandshake(ctx, t, TLSHandshakeOptions{Addr: n.HTTPS, ServerName: NginxName, Version: "1.3", CAFile: other}); h.Established || h.Verified {
		t.Errorf("verified against a foreign CA: %+v", h)
	}
}

// writeSelfSignedCA writes a CA certificate of its own and returns its path.
func writeSelfSignedCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "not the demo's CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
