package testenv

// Ports and processes: what every service helper needs to run a real
// program on loopback and stop it afterwards.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// FreePort returns a TCP port on 127.0.0.1 that nothing listened on a
// moment ago. Another process may take it before the caller binds it; the
// helpers that start services retry on "address already in use".
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// svcStartAttempts bounds the retries when a port picked by FreePort was
// taken by someone else before the service bound it.
const svcStartAttempts = 3

// svcProc is one run of a service program, its output appended to a file.
type svcProc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	err     error         // exit status, valid once done is closed
}

// svcStart starts cmd with stdout and stderr appended to logPath.
func svcStart(name, logPath string, cmd *exec.Cmd) (*svcProc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	fmt.Fprintf(f, "=== %s: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(cmd.Args, " "))
	cmd.Stdout, cmd.Stderr = f, f
	// Own process group, so that a signal meant for the test binary does
	// not stop the service behind the helper's back; Pdeathsig so that a
	// test binary killed by -timeout does not leave the service running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &svcProc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *svcProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process to end (SIGTERM), then kills its process group
// after grace. It returns once the process is gone.
func (p *svcProc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	p.kill()
}

// kill kills the process group with SIGKILL, as a crash ends a service,
// and returns once the process is gone.
func (p *svcProc) kill() {
	if p.exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// svcLogTail returns the last n lines of a log file.
func svcLogTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	ring := make([]string, 0, n)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if len(ring) == n {
			ring = ring[1:]
		}
		ring = append(ring, sc.Text())
	}
	return strings.Join(ring, "\n")
}

// svcLogOnFailure prints the tail of a service's log if the test failed,
// or always when PANO_TEST_LOGS is set.
func svcLogOnFailure(t testing.TB, name, path string, lines int) {
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("PANO_TEST_LOGS") != "" {
			t.Logf("--- last %d lines of the %s log (%s):\n%s", lines, name, path, svcLogTail(path, lines))
		}
	})
}

// svcPortInUse reports whether a log says that a listen failed because
// the port was taken.
func svcPortInUse(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	s := strings.ToLower(string(b))
	return strings.Contains(s, "address already in use")
}

// svcWait polls ready every interval until it returns nil, the process
// exits, or timeout passes.
func svcWait(p *svcProc, timeout time.Duration, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		attempt, acancel := context.WithTimeout(ctx, 5*time.Second)
		last = ready(attempt)
		acancel()
		if last == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready (%v): %w", p.name, p.err, last)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %v: %w", p.name, timeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// svcHTTPOK returns nil when url answers 200.
func svcHTTPOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(url + ": " + resp.Status)
	}
	return nil
}
