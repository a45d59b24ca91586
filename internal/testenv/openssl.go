package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TLSHandshakeOptions describe one `openssl s_client` handshake.
type TLSHandshakeOptions struct {
	Addr       netip.AddrPort
	ServerName string // SNI; "" sends none
	// Version is the only TLS version offered: "1", "1.1", "1.2" or "1.3".
	Version string
	// CAFile, when set, verifies the server's chain against it, and a
	// chain that does not verify fails the handshake.
	CAFile string
	Netns  *Netns // nil = the root namespace
}

// TLSHandshake is what s_client reported.
type TLSHandshake struct {
	// Established is true when the handshake completed.
	Established bool
	// Version and Cipher are the negotiated ones ("TLSv1.3",
	// "TLS_AES_256_GCM_SHA384"); empty when not established.
	Version, Cipher string
	// PeerSubject is the server certificate's subject, as s_client prints
	// it: "O = PANO demo2, CN = www.pano.test".
	PeerSubject string
	// Verified is true when CAFile was given and the chain verified.
	Verified bool
	// Alert is the TLS alert that ended a failed handshake, e.g.
	// "protocol version" when the server refuses the version offered.
	Alert  string
	Output string
}

// OpenSSLHandshake makes one handshake with `openssl s_client -brief`,
// offering opts.Version only, and closes the connection at once. A
// refused handshake is a result, not a test failure; a missing openssl or
// bad options are.
func OpenSSLHandshake(ctx context.Context, t testing.TB, opts TLSHandshakeOptions) TLSHandshake {
	t.Helper()
	bin := RequireProgram(t, "openssl", "openssl")
	args, err := sclientArgs(opts)
	if err != nil {
		t.Fatalf("openssl s_client: %v", err)
	}
	cmd := commandIn(ctx, opts.Netns, bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// stdin at EOF: s_client closes the connection after the handshake.
	cmd.Stdin = strings.NewReader("")
	err = cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("openssl s_client: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("openssl s_client %s: %v\n%s", opts.Addr, ctx.Err(), out.String())
	}
	h := ParseSClient(out.String(), err == nil)
	if opts.CAFile == "" {
		h.Verified = false
	}
	return h
}

func sclientArgs(o TLSHandshakeOptions) ([]string, error) {
	if !o.Addr.IsValid() {
		return nil, errors.New("no address")
	}
	flag, ok := map[string]string{"1": "-tls1", "1.0": "-tls1", "1.1": "-tls1_1", "1.2": "-tls1_2", "1.3": "-tls1_3"}[o.Version]
	if !ok {
		return nil, fmt.Errorf("TLS version %q: want 1, 1.1, 1.2 or 1.3", o.Version)
	}
	args := []string{"s_client", "-connect", o.Addr.String(), flag, "-brief"}
	if o.ServerName != "" {
		args = append(args, "-servername", o.ServerName)
	} else {
		args = append(args, "-noservername")
	}
	if o.Version == "1" || o.Version == "1.0" || o.Version == "1.1" {
		// OpenSSL 3 offers TLS 1.0 and 1.1 at security level 0 only;
		// without this the ClientHello would never leave.
		args = append(args, "-cipher", "DEFAULT:@SECLEVEL=0")
	}
	if o.CAFile != "" {
		args = append(args, "-CAfile", o.CAFile, "-verify_return_error")
	}
	return args, nil
}

var sclientAlertRE = regexp.MustCompile(`(?:sslv3|tlsv1|tls) alert ([a-z ]+?)(?::|$)`)

// ParseSClient reads `openssl s_client -brief` output; exitOK is whether
// s_client exited 0.
func ParseSClient(out string, exitOK bool) TLSHandshake {
	h := TLSHandshake{Output: out}
	established := false
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		key, val, _ := strings.Cut(l, ":")
		val = strings.TrimSpace(val)
		switch {
		case l == "CONNECTION ESTABLISHED":
			established = true
		case key == "Protocol version":
			h.Version = val
		case key == "Ciphersuite":
			h.Cipher = val
		case key == "Peer certificate":
			h.PeerSubject = val
		case l == "Verification: OK":
			h.Verified = true
		}
		if m := sclientAlertRE.FindStringSubmatch(l); m != nil && h.Alert == "" {
			h.Alert = m[1]
		}
	}
	h.Established = exitOK && established && h.Version != ""
	if !h.Established {
		h.Version, h.Cipher, h.Verified = "", "", false
	}
	return h
}
