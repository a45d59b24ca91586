package zeekpackage_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pano-observability/pano/internal/testenv"
)

// fakeZeek records its working directory and arguments, then idles until
// SIGTERM, standing in for zeek so that the entrypoint's process layout
// can be checked where Zeek is not installed.
const fakeZeek = `#!/bin/sh
trap 'exit 0' TERM
printf '%s\n' "$PWD" "$@" >"$FAKE_ZEEK_OUT/$$.tmp"
mv "$FAKE_ZEEK_OUT/$$.tmp" "$FAKE_ZEEK_OUT/$$"
while :; do sleep 0.05; done
`

type zeekRun struct {
	Dir  string
	Args []string
	Pid  string
}

func startEntrypoint(t *testing.T, env ...string) (*exec.Cmd, string, string) {
	t.Helper()
	testenv.RequireProgram(t, "bash", "bash")
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "zeek")
	if err := os.WriteFile(bin, []byte(fakeZeek), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, "runs")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	logs := filepath.Join(tmp, "logs")
	cmd := exec.Command("docker/entrypoint.sh")
	cmd.Env = append(os.Environ(), "ZEEK_BIN="+bin, "FAKE_ZEEK_OUT="+out, "ZEEK_LOG_DIR="+logs)
	cmd.Env = append(cmd.Env, env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		// Leave no fake worker behind, whatever happened.
		for _, r := range readRuns(t, out) {
			if p, err := os.FindProcess(atoi(r.Pid)); err == nil {
				_ = p.Signal(syscall.SIGKILL)
			}
		}
	})
	return cmd, out, logs
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func readRuns(t *testing.T, dir string) []zeekRun {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	var runs []zeekRun
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		runs = append(runs, zeekRun{Dir: lines[0], Args: lines[1:], Pid: e.Name()})
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].Dir < runs[j].Dir })
	return runs
}

func waitRuns(t *testing.T, dir string, n int) []zeekRun {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		runs := readRuns(t, dir)
		if len(runs) >= n {
			return runs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d zeek processes started, want %d", len(runs), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitExit(t *testing.T, cmd *exec.Cmd) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("entrypoint did not exit")
		return nil
	}
}

// TestEntrypointSitePolicy: Zeek's site policy ("local") is loaded only
// when ZEEK_LOAD_SITE=1, before the package, and then HTTP's file
// analysis is on too (TestEntrypointOneWorker: neither by default).
func TestEntrypointSitePolicy(t *testing.T) {
	cmd, out, _ := startEntrypoint(t, "ZEEK_LOAD_SITE=1")
	runs := waitRuns(t, out, 1)
	if got := strings.Join(runs[0].Args, " "); !strings.Contains(got, " local pano Pano::http_file_analysis=T ") {
		t.Errorf("ZEEK_LOAD_SITE=1: zeek ran with %q, want local before pano, and HTTP file analysis (the site policy hashes files)", got)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := waitExit(t, cmd); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}

func TestEntrypointOneWorker(t *testing.T) {
	cmd, out, logs := startEntrypoint(t)
	runs := waitRuns(t, out, 1)
	self, err := filepath.Abs("docker/entrypoint.sh")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"-C", "-i", "pcapovertcp::127.0.0.1:57012", "pano", "Pano::only_forwarded_logs=T",
		"Log::default_rotation_interval=1hr", "Log::default_rotation_postprocessor_cmd=" + self + " --prune-rotated"}
	if runs[0].Dir != logs || strings.Join(runs[0].Args, " ") != strings.Join(want, " ") {
		t.Fatalf("zeek ran in %s with %q, want %s with %q", runs[0].Dir, runs[0].Args, logs, want)
	}
	// exec: zeek is the entrypoint's own process, so signals reach it.
	if runs[0].Pid != itoa(cmd.Process.Pid) {
		t.Fatalf("zeek pid %s, entrypoint pid %d: not exec'd", runs[0].Pid, cmd.Process.Pid)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := waitExit(t, cmd); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestEntrypointNWorkers(t *testing.T) {
	cmd, out, logs := startEntrypoint(t, "ZEEK_WORKERS=3", "PCA_SERVER_ADDR=::1", "PCA_SERVER_PORT=6000", "ZEEK_ARGS=Site::local_nets+={10.0.0.0/8}")
	runs := waitRuns(t, out, 3)
	for i, r := range runs {
		wantDir := filepath.Join(logs, "worker-"+itoa(i))
		wantSrc := "pcapovertcp::[::1]:" + itoa(6000+i)
		if r.Dir != wantDir || len(r.Args) < 3 || r.Args[2] != wantSrc || r.Args[len(r.Args)-1] != "Site::local_nets+={10.0.0.0/8}" {
			t.Fatalf("worker %d ran in %s with %q; want %s and %s", i, r.Dir, r.Args, wantDir, wantSrc)
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := waitExit(t, cmd); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	for _, r := range runs {
		if err := syscall.Kill(atoi(r.Pid), 0); err == nil {
			t.Fatalf("worker %s still running after the entrypoint stopped", r.Pid)
		}
	}
}

// One worker dying takes the others down and fails the container, so
// that a restart policy brings all streams back together.
func TestEntrypointWorkerFailure(t *testing.T) {
	cmd, out, _ := startEntrypoint(t, "ZEEK_WORKERS=2")
	runs := waitRuns(t, out, 2)
	_ = syscall.Kill(atoi(runs[1].Pid), syscall.SIGKILL)
	if err := waitExit(t, cmd); err == nil {
		t.Fatal("entrypoint exited 0 after a worker died")
	}
	if err := syscall.Kill(atoi(runs[0].Pid), 0); err == nil {
		t.Fatal("the surviving worker was left running")
	}
}

func TestEntrypointRejectsBadSettings(t *testing.T) {
	for _, env := range [][]string{{"ZEEK_WORKERS=0"}, {"ZEEK_WORKERS=two"}, {"ZEEK_WORKERS=4", "PCA_SERVER_PORT=65533"},
		{"ZEEK_ROTATION_INTERVAL=1hr;id"}, {"ZEEK_ROTATION_INTERVAL=hourly"}, {"ZEEK_ROTATED_RETENTION=2h"}} {
		cmd, _, _ := startEntrypoint(t, env...)
		err := waitExit(t, cmd)
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 64 {
			t.Fatalf("%v: exit %v, want 64", env, err)
		}
	}
}
