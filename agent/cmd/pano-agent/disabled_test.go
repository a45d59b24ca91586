package main

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pano-observability/pano/internal/testenv"
)

// With ENABLE_PCA=false the agent stays up serving its metrics (capture
// enabled 0) until SIGTERM, then exits 0: exiting at once made compose's
// restart policy start it over and over.
func TestCaptureDisabledStaysUp(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "pano-agent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cmd := exec.Command(bin)
	cmd.Env = []string{"ENABLE_PCA=false", "METRICS_ADDR=" + addr}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	var body string
	deadline := time.Now().Add(10 * time.Second)
	for body == "" {
		select {
		case err := <-done:
			t.Fatalf("the agent exited (%v) with capture disabled:\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no metrics on %s:\n%s", addr, out.String())
		}
		if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				body = string(b)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(body, "pano_agent_capture_enabled 0") {
		t.Errorf("metrics lack pano_agent_capture_enabled 0:\n%s", body)
	}
	select {
	case err := <-done:
		t.Fatalf("the agent exited (%v) with capture disabled:\n%s", err, out.String())
	case <-time.After(2 * time.Second):
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, out.String())
		}
	case <-time.After(5 * time.Second):
		t.Errorf("no exit within 5 s of SIGTERM:\n%s", out.String())
	}
}
