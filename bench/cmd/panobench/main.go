// Command panobench runs PANO's benchmarks one after another, each
// comparing ours with a peer in the same run, prints one table and writes
// it, with the machine it ran on, to bench/RESULTS.md.
//
//	go run ./bench/cmd/panobench [-only pcap,shim] [-quick]
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/pano-observability/pano/bench/machine"
	"github.com/pano-observability/pano/bench/results"
	"github.com/pano-observability/pano/bench/suite"
)

const (
	module     = "github.com/pano-observability/pano"
	defaultOut = "bench/RESULTS.md"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); errors.Is(err, flag.ErrHelp) {
		return
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "panobench:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	groups := suite.Groups()
	fs := flag.NewFlagSet("panobench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	only := fs.String("only", env("PANOBENCH_ONLY", ""), "comma-separated groups to run (default all; env PANOBENCH_ONLY)")
	quick := fs.Bool("quick", env("PANOBENCH_QUICK", "") == "1", "smaller inputs and shorter runs, indicative only (env PANOBENCH_QUICK=1)")
	out := fs.String("o", env("PANOBENCH_OUT", ""), "results file, relative to the module root (default "+defaultOut+" when every group runs, none with -only; env PANOBENCH_OUT)")
	root := fs.String("root", env("PANOBENCH_ROOT", ""), "module root (default: found from the working directory; env PANOBENCH_ROOT)")
	goCmd := fs.String("go", env("GO", "go"), "go command (env GO)")
	verbose := fs.Bool("v", env("PANOBENCH_VERBOSE", "") == "1", "copy the benchmarks' output to stderr (env PANOBENCH_VERBOSE=1)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: panobench [flags]\n\nRuns the benchmarks one group at a time (never in parallel), prints one\ntable (row, ours, peer, ratio, notes) on stdout and writes it to the results\nfile. Progress goes to stderr. A group that fails shows its error in its\nrows and the others still run; the exit status is then 1.\n\nGroups, in the order they run:\n")
		for _, g := range groups {
			fmt.Fprintf(stderr, "  %-8s %s\n", g.Key, g.About)
		}
		fmt.Fprintf(stderr, "\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (see -help)", fs.Args())
	}
	selected, err := selectGroups(groups, *only)
	if err != nil {
		return err
	}
	// A partial run does not replace the full table unless asked to.
	if *out == "" && len(selected) == len(groups) {
		*out = defaultOut
	}
	if *root == "" {
		if *root, err = findRoot(); err != nil {
			return err
		}
	}

	log := slog.New(slog.NewTextHandler(stderr, nil))
	r := &suite.Runner{Root: *root, Go: *goCmd, Quick: *quick, Log: log}
	if *verbose {
		r.Echo = stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	start := time.Now()
	var rows []results.Row
	var methods []results.Method
	for i, g := range selected {
		if ctx.Err() != nil {
			rows = append(rows, results.Row{Name: g.Key, NotMeasured: "interrupted"})
			continue
		}
		log.Info("group", "n", fmt.Sprintf("%d/%d", i+1, len(selected)), "name", g.Key, "about", g.About)
		rs, m := g.Run(ctx, r)
		rows = append(rows, rs...)
		methods = append(methods, m)
	}

	if err := results.WriteText(stdout, rows); err != nil {
		return err
	}
	if *out != "" {
		doc := results.Document{Date: start, Machine: machine.Describe(), Quick: *quick, Rows: rows, Methods: methods, Elapsed: time.Since(start)}
		var md bytes.Buffer
		if err := results.WriteMarkdown(&md, doc); err != nil {
			return err
		}
		path := *out
		if !filepath.IsAbs(path) {
			path = filepath.Join(*root, path)
		}
		if err := os.WriteFile(path, md.Bytes(), 0o644); err != nil {
			return fmt.Errorf("write results: %w", err)
		}
		log.Info("results written", "file", *out)
	}
	var failed []string
	for _, row := range rows {
		if row.Err != nil {
			failed = append(failed, row.Name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d rows failed: %s", len(failed), strings.Join(failed, "; "))
	}
	return nil
}

func selectGroups(all []suite.Group, only string) ([]suite.Group, error) {
	if strings.TrimSpace(only) == "" {
		return all, nil
	}
	var keys []string
	for _, g := range all {
		keys = append(keys, g.Key)
	}
	want := map[string]bool{}
	for _, k := range strings.Split(only, ",") {
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		if !slices.Contains(keys, k) {
			return nil, fmt.Errorf("-only: unknown group %q (groups: %s)", k, strings.Join(keys, ", "))
		}
		want[k] = true
	}
	var sel []suite.Group
	for _, g := range all {
		if want[g.Key] {
			sel = append(sel, g)
		}
	}
	if len(sel) == 0 {
		return nil, errors.New("-only: no group named")
	}
	return sel, nil
}

// findRoot walks up from the working directory to this module's go.mod.
func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(data), []byte("module "+module)) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("not inside the %s module: run from the repository or set -root", module)
		}
		dir = parent
	}
}

func env(key, def string) string {
	if v, ok := os.LookupEnv(key); ok {
		return v
	}
	return def
}
