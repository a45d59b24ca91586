// Package suite defines what `make bench` measures: each group runs one
// package's Go benchmark (ours and its peer side by side in the same run)
// and turns the metrics it reports into rows of the results table.
package suite

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/pano-observability/pano/bench/gobench"
)

// Runner runs benchmarks from the module root, one at a time.
type Runner struct {
	Root  string // module root: packages are relative to it
	Go    string // the go command
	Quick bool   // smaller inputs and shorter runs
	Log   *slog.Logger
	// Echo, when set, receives the benchmarks' output as it comes.
	Echo io.Writer
}

// GoBench is one `go test -bench` run.
type GoBench struct {
	Pkg       string // "./agent/"
	Bench     string // -bench regular expression
	Benchtime string // -benchtime
	Timeout   time.Duration
	Env       []string // added to the environment
}

// Args are go test's arguments. -v makes testing print skip and failure
// messages and each result on a line of its own.
func (g GoBench) Args() []string {
	return []string{"test", "-run", "^$", "-bench", g.Bench, "-benchtime", g.Benchtime, "-count", "1",
		"-timeout", g.Timeout.String(), "-v", g.Pkg}
}

// Command is the shell command that reproduces the run.
func (g GoBench) Command() string {
	var parts []string
	parts = append(parts, g.Env...)
	parts = append(parts, "go")
	for _, a := range g.Args() {
		if strings.ContainsAny(a, "^$|()* ") {
			a = "'" + a + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// Run runs the benchmark and parses what it printed. The report is
// returned even when go test fails (the results before the failure and
// the failure messages are in it); the error then says how it failed.
func (r *Runner) Run(ctx context.Context, g GoBench) (*gobench.Report, error) {
	cmd := exec.CommandContext(ctx, r.Go, g.Args()...)
	cmd.Dir = r.Root
	cmd.Env = append(os.Environ(), g.Env...)
	// On cancellation let go test and the benchmark clean up (network
	// namespaces, brokers) as on Ctrl-C; kill only if that takes long.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = time.Minute
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if r.Echo != nil {
		cmd.Stdout, cmd.Stderr = io.MultiWriter(&stdout, r.Echo), io.MultiWriter(&stderr, r.Echo)
	}
	r.Log.Info("running", "cmd", g.Command(), "timeout", g.Timeout)
	start := time.Now()
	runErr := cmd.Run()
	r.Log.Info("finished", "pkg", g.Pkg, "took", time.Since(start).Round(time.Second), "err", runErr)
	rep, err := gobench.Parse(&stdout)
	if err != nil {
		return rep, fmt.Errorf("go test %s: %w", g.Pkg, err)
	}
	if runErr != nil {
		return rep, fmt.Errorf("go test %s: %w%s", g.Pkg, runErr, lastLines(stderr.String()+stdout.String(), 3))
	}
	return rep, nil
}

// lastLines returns the last n non-empty lines that are not go test's
// closing "FAIL"/"exit status" lines, as ": a / b / c".
func lastLines(out string, n int) string {
	var keep []string
	lines := strings.Split(out, "\n")
	// A panic (a -timeout one too) is followed by goroutine stacks: its
	// first line is the one that says what happened.
	for _, l := range lines {
		if strings.HasPrefix(l, "panic: ") {
			return ": " + strings.TrimSpace(l)
		}
	}
	for i := len(lines) - 1; i >= 0 && len(keep) < n; i-- {
		l := strings.TrimSpace(lines[i])
		if l == "" || l == "FAIL" || strings.HasPrefix(l, "FAIL\t") || strings.HasPrefix(l, "exit status") || strings.HasPrefix(l, "ok ") {
			continue
		}
		keep = append([]string{l}, keep...)
	}
	if len(keep) == 0 {
		return ""
	}
	return ": " + strings.Join(keep, " / ")
}
