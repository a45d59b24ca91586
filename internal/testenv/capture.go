package testenv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Tcpdump is a running tcpdump writing a pcap file.
type Tcpdump struct {
	Path  string // the pcap file
	iface string
	cmd   *exec.Cmd
	done  chan struct{}
	info  chan CaptureStats // answers to SIGUSR1

	mu      sync.Mutex
	stderr  bytes.Buffer
	stopped bool
	waitErr error
}

// CaptureStats are tcpdump's closing counters.
type CaptureStats struct {
	Captured, ReceivedByFilter, DroppedByKernel int
}

// StartTcpdump captures on iface (inside ns, or the root namespace if ns
// is nil) into a file, until Stop or the end of the test. filter is a
// pcap filter expression ("" for everything). It returns once tcpdump
// says it is listening, so nothing sent afterwards is missed.
func StartTcpdump(t testing.TB, ns *Netns, iface, filter string) *Tcpdump {
	t.Helper()
	bin := RequireProgram(t, "tcpdump", "tcpdump")
	c := &Tcpdump{
		Path:  filepath.Join(t.TempDir(), iface+".pcap"),
		iface: iface,
		done:  make(chan struct{}),
		info:  make(chan CaptureStats, 1),
	}
	// -U flushes the file after every packet, -s 0 keeps whole packets,
	// -B 32768 gives the kernel ring 32 MiB, -Z root stops tcpdump from
	// switching to a user that cannot write into the test's directory, -n
	// avoids DNS lookups of its own. No --immediate-mode: it makes libpcap
	// use TPACKET_V2, whose fixed slots are snaplen-sized (256 KiB with
	// -s 0 on a veth with offloads), so the ring holds only ~128 packets
	// and drops at DNS load. Stop instead waits until the ring is drained.
	args := []string{"-i", iface, "-w", c.Path, "-U", "-s", "0", "-B", "32768", "-n", "-Z", "root"}
	if filter != "" {
		args = append(args, filter)
	}
	if ns != nil {
		c.cmd = ns.Command(context.Background(), bin, args...)
	} else {
		c.cmd = exec.Command(bin, args...)
	}
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		t.Fatalf("tcpdump: %v", err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start tcpdump: %v", err)
	}
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			c.mu.Lock()
			c.stderr.WriteString(line + "\n")
			c.mu.Unlock()
			if strings.Contains(line, "listening on ") {
				once.Do(func() { close(listening) })
			}
			if st, ok := parseTcpdumpInfo(line); ok {
				select {
				case c.info <- st:
				default:
				}
			}
		}
		err := c.cmd.Wait()
		c.mu.Lock()
		c.waitErr = err
		c.mu.Unlock()
		close(c.done)
	}()
	t.Cleanup(func() {
		c.mu.Lock()
		stopped := c.stopped
		c.mu.Unlock()
		if !stopped {
			_ = c.cmd.Process.Signal(syscall.SIGINT)
			c.wait()
		}
		if t.Failed() {
			t.Logf("tcpdump on %s (%s):\n%s", iface, c.Path, c.stderrText())
		}
	})
	select {
	case <-listening:
	case <-c.done:
		t.Fatalf("tcpdump -i %s exited: %v\n%s", iface, c.waitErr, c.stderrText())
	case <-time.After(15 * time.Second):
		t.Fatalf("tcpdump -i %s: not listening after 15s\n%s", iface, c.stderrText())
	}
	return c
}

func (c *Tcpdump) stderrText() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stderr.String()
}

// wait waits for tcpdump to exit, killing it if SIGINT was not enough.
func (c *Tcpdump) wait() {
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// drain waits, for a few seconds at most, until tcpdump has handled
// every packet the kernel had accepted when Stop was called. tcpdump
// answers SIGUSR1 with its counters; libpcap hands packets over in
// blocks, up to a second late, so captured lags received. Once captured
// + dropped reaches the first answer's received, SIGINT will not cut off
// packets sent before Stop (later traffic on a busy interface does not
// keep us waiting).
func (c *Tcpdump) drain() {
	target := -1
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := c.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
			return
		}
		select {
		case st := <-c.info:
			if target < 0 {
				target = st.ReceivedByFilter
			}
			if st.Captured+st.DroppedByKernel >= target {
				return
			}
		case <-c.done:
			return
		case <-time.After(2 * time.Second):
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var tcpdumpInfoRE = regexp.MustCompile(`^tcpdump: (\d+) packets? captured, (\d+) packets? received by filter, (\d+) packets? dropped by kernel`)

// parseTcpdumpInfo reads the one-line counters tcpdump prints on SIGUSR1.
func parseTcpdumpInfo(line string) (CaptureStats, bool) {
	m := tcpdumpInfoRE.FindStringSubmatch(line)
	if m == nil {
		return CaptureStats{}, false
	}
	var n [3]int
	for i := range n {
		v, err := strconv.Atoi(m[i+1])
		if err != nil {
			return CaptureStats{}, false
		}
		n[i] = v
	}
	return CaptureStats{Captured: n[0], ReceivedByFilter: n[1], DroppedByKernel: n[2]}, true
}

// Stop ends the capture with SIGINT, waits for tcpdump to write the end
// of the file and returns the file and tcpdump's closing counters.
func (c *Tcpdump) Stop(t testing.TB) (pcapPath string, stats CaptureStats) {
	t.Helper()
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		t.Fatalf("tcpdump on %s stopped twice", c.iface)
	}
	c.stopped = true
	c.mu.Unlock()
	c.drain()
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	c.wait()
	text := c.stderrText()
	if c.waitErr != nil {
		t.Fatalf("tcpdump -i %s: %v\n%s", c.iface, c.waitErr, text)
	}
	stats, err := parseTcpdumpStats(text)
	if err != nil {
		t.Fatalf("tcpdump -i %s: %v\n%s", c.iface, err, text)
	}
	return c.Path, stats
}

var tcpdumpStatRE = regexp.MustCompile(`(?m)^(\d+) packets? (captured|received by filter|dropped by kernel)$`)

// parseTcpdumpStats reads the three counter lines tcpdump prints to
// stderr when it exits.
func parseTcpdumpStats(stderr string) (CaptureStats, error) {
	var s CaptureStats
	seen := map[string]bool{}
	for _, m := range tcpdumpStatRE.FindAllStringSubmatch(stderr, -1) {
		n, err := strconv.Atoi(m[1])
		if err != nil {
			return s, fmt.Errorf("tcpdump counter %q: %w", m[0], err)
		}
		switch m[2] {
		case "captured":
			s.Captured = n
		case "received by filter":
			s.ReceivedByFilter = n
		case "dropped by kernel":
			s.DroppedByKernel = n
		}
		seen[m[2]] = true
	}
	if !seen["captured"] || !seen["dropped by kernel"] {
		return s, errors.New("no \"packets captured\"/\"dropped by kernel\" lines from tcpdump")
	}
	return s, nil
}

// Tshark runs tshark with args in the root namespace and returns its
// standard output; an exit status other than 0 fails the test with
// tshark's standard error.
func Tshark(t testing.TB, args ...string) string {
	t.Helper()
	bin := RequireProgram(t, "tshark", "tshark")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// tshark reads its preferences from HOME; keep the user's out of tests.
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	if err := cmd.Run(); err != nil {
		t.Fatalf("tshark %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}
