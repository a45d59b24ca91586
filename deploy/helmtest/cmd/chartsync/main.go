// Command chartsync refreshes the Helm chart's copies of the repository's
// rules, dashboards and configuration (helmtest.ChartCopies). Run it with
// `go generate ./deploy/helmtest` after changing any of them.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/pano-observability/pano/deploy/helmtest"
)

func main() {
	root, err := repoRoot()
	if err == nil {
		err = helmtest.Sync(root)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chartsync:", err)
		os.Exit(1)
	}
}

// repoRoot is the folder holding go.mod, above the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
		dir = parent
	}
}
