package helmtest

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// ChartDir is the chart's folder, relative to the repository root.
const ChartDir = "deploy/helm/pano"

// Copy is a set of repository files the chart carries: every file matching
// Glob (relative to the repository root) is copied into Dir (relative to
// the chart).
type Copy struct {
	Glob, Dir string
}

// ChartCopies are the files the chart reads with .Files: one source each,
// the repository's.
var ChartCopies = []Copy{
	{"prometheus/rules/*.yml", "files/rules"},
	{"prometheus/prometheus.yml", "files"},
	{"grafana/dashboards/*.json", "files/dashboards"},
	{"fl-pipeline-config/flowlogs-pipeline.yaml", "files"},
}

// plan maps each copy's path in the chart to its source, and lists, per
// chart folder, the copies' patterns there (to find stale files).
func plan(root string) (map[string]string, map[string][]string, error) {
	want := map[string]string{}
	patterns := map[string][]string{}
	for _, c := range ChartCopies {
		srcs, err := filepath.Glob(filepath.Join(root, c.Glob))
		if err != nil {
			return nil, nil, fmt.Errorf("glob %s: %w", c.Glob, err)
		}
		if len(srcs) == 0 {
			return nil, nil, fmt.Errorf("%s matches no file", c.Glob)
		}
		for _, s := range srcs {
			want[filepath.Join(root, ChartDir, c.Dir, filepath.Base(s))] = s
		}
		patterns[filepath.Join(root, ChartDir, c.Dir)] = append(patterns[filepath.Join(root, ChartDir, c.Dir)], filepath.Base(c.Glob))
	}
	return want, patterns, nil
}

// stale lists the files in the chart's copy folders that match a copy's
// pattern but have no source any more (a removed rule file, say).
func stale(want map[string]string, patterns map[string][]string) ([]string, error) {
	var out []string
	for dir, pats := range patterns {
		for _, p := range pats {
			got, err := filepath.Glob(filepath.Join(dir, p))
			if err != nil {
				return nil, err
			}
			for _, g := range got {
				if _, ok := want[g]; !ok {
					out = append(out, g)
				}
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// Diff returns, one line each, the chart copies that differ from their
// source, are missing or have no source; nil when all agree.
func Diff(root string) ([]string, error) {
	want, patterns, err := plan(root)
	if err != nil {
		return nil, err
	}
	var out []string
	for dst, src := range want {
		a, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
		b, err := os.ReadFile(dst)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			out = append(out, rel(root, dst)+" is missing (copy of "+rel(root, src)+")")
		case err != nil:
			return nil, fmt.Errorf("chart copy: %w", err)
		case !bytes.Equal(a, b):
			out = append(out, rel(root, dst)+" differs from "+rel(root, src))
		}
	}
	extra, err := stale(want, patterns)
	if err != nil {
		return nil, err
	}
	for _, e := range extra {
		out = append(out, rel(root, e)+" has no source in the repository any more")
	}
	slices.Sort(out)
	return out, nil
}

// Sync makes the chart's copies equal to their sources and removes the
// stale ones.
func Sync(root string) error {
	want, patterns, err := plan(root)
	if err != nil {
		return err
	}
	for dst, src := range want {
		b, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("source: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("chart folder: %w", err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			return fmt.Errorf("chart copy: %w", err)
		}
	}
	extra, err := stale(want, patterns)
	if err != nil {
		return err
	}
	for _, e := range extra {
		if err := os.Remove(e); err != nil {
			return fmt.Errorf("stale chart copy: %w", err)
		}
	}
	return nil
}

func rel(root, p string) string {
	if r, err := filepath.Rel(root, p); err == nil {
		return r
	}
	return p
}
