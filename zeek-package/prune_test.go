package zeekpackage_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pano-observability/pano/internal/testenv"
)

// The entrypoint as Zeek's rotation postprocessor: rotated logs older
// than ZEEK_ROTATED_RETENTION minutes are deleted, each reported as lost
// data; newer ones, live logs and other files stay.
func TestEntrypointPrunesOldRotatedLogs(t *testing.T) {
	testenv.RequireProgram(t, "bash", "bash")
	dir := t.TempDir()
	old := time.Now().Add(-2 * time.Hour)
	files := map[string]bool{ // name: deleted
		"dns.2026-12-03-06-00-00.log":      true,
		"reporter.2026-12-03-06-00-00.log": true,
		"dns.2026-12-03-07-59-00.log":      false, // recent
		"dns.log":                          false, // live, however old
		".shadow.dns.log":                  false,
		"notes.2026.log":                   false,
	}
	for name, gone := range files {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("{}\n{}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if gone || name == "dns.log" || name == "notes.2026.log" {
			if err := os.Chtimes(path, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	self, err := filepath.Abs("docker/entrypoint.sh")
	if err != nil {
		t.Fatal(err)
	}
	// As Zeek runs it: in the log folder, with the rotated file's details.
	cmd := exec.Command(self, "--prune-rotated", "dns.2026-12-03-07-59-00.log", "dns", "26-12-03_07.59.00", "26-12-03_08.00.00", "0", "ascii")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "ZEEK_ROTATED_RETENTION=60")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("--prune-rotated: %v\n%s", err, out)
	}
	for name, gone := range files {
		_, err := os.Stat(filepath.Join(dir, name))
		if gone != os.IsNotExist(err) {
			t.Errorf("%s: deleted=%v, want %v", name, os.IsNotExist(err), gone)
		}
		if gone && !strings.Contains(string(out), "DATA LOSS: deleted rotated log "+filepath.Join(dir, name)+" (2 lines)") {
			t.Errorf("deleting %s was not reported:\n%s", name, out)
		}
	}

	// 0 keeps everything.
	path := filepath.Join(dir, "dns.2026-12-03-05-00-00.log")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(self, "--prune-rotated")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "ZEEK_ROTATED_RETENTION=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("--prune-rotated: %v\n%s", err, out)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("ZEEK_ROTATED_RETENTION=0 deleted %s: %v", path, err)
	}
}
