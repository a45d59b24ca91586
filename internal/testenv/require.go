// Package testenv starts the real programs that PANO's tests run against:
// network namespaces with veth pairs, unbound, dnsperf, tcpdump, tshark,
// an Apache Kafka broker, flowlogs-pipeline and Prometheus. Everything a
// helper starts is stopped by t.Cleanup, and its logs are printed when the
// test fails.
//
// A test that needs something missing skips with a one-line reason, unless
// the CI environment variable is set: then it fails, so that a CI run can
// never pass by skipping.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// InCI reports whether the tests run under CI, where a missing
// prerequisite is a failure instead of a skip.
func InCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "0" && v != "false"
}

// Missing skips the test with reason, or fails it under CI.
func Missing(t testing.TB, reason string) {
	t.Helper()
	if InCI() {
		t.Fatalf("required under CI: %s", reason)
	}
	t.Skip(reason)
}

// RequireRoot skips (or fails under CI) unless the test runs as root,
// which namespaces, veths and eBPF need.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "needs root (network namespaces, eBPF)")
	}
}

// RequireProgram returns the path of name on PATH, or skips (fails under
// CI) naming the Debian package that provides it.
func RequireProgram(t testing.TB, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name+" not found: apt-get install "+debianPackage)
	}
	return p
}

// RepoRoot returns the directory holding go.mod, found by walking up from
// the test's working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("getwd: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("go.mod not found above the test's directory")
		}
		dir = parent
	}
}

// CacheDir is where make tools puts what the tests run but Debian does not
// ship: the Kafka broker's jars and the flowlogs-pipeline binary.
// PANO_CACHE overrides it.
func CacheDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("PANO_CACHE"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(t), ".cache")
}
