package helmtest

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	release "helm.sh/helm/v4/pkg/release/v1"

	"github.com/pano-observability/pano/internal/testenv"
)

const (
	releaseName = "pano"
	namespace   = "observability"
	// A Kubernetes version the chart supports: Helm's own default in test
	// binaries (1.20) is below the chart's kubeVersion.
	kubeVersion = "v1.33.0"
)

var (
	chartOnce sync.Map // chart folder -> *chart.Chart
)

// loadChart loads the chart folder once per test process.
func loadChart(t testing.TB, dir string) *chart.Chart {
	t.Helper()
	if c, ok := chartOnce.Load(dir); ok {
		return c.(*chart.Chart)
	}
	c, err := loader.Load(dir)
	if err != nil {
		t.Fatalf("load chart %s: %v", dir, err)
	}
	chartOnce.Store(dir, c)
	return c
}

func chartPath(t testing.TB) string {
	t.Helper()
	return filepath.Join(testenv.RepoRoot(t), ChartDir)
}

// render is `helm template`: an install in client-only dry-run mode, which
// validates the values against values.schema.json, merges them with the
// chart's defaults and renders the templates and NOTES.txt.
func render(t testing.TB, vals map[string]any) (manifest, notes string, err error) {
	t.Helper()
	kv, err := common.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(slog.DiscardHandler))
	install := action.NewInstall(cfg)
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName = releaseName
	install.Namespace = namespace
	install.KubeVersion = kv
	install.Replace = true
	rel, err := install.Run(loadChart(t, chartPath(t)), vals)
	if err != nil {
		return "", "", err
	}
	r, ok := rel.(*release.Release)
	if !ok {
		return "", "", fmt.Errorf("release is a %T, not a v1 release", rel)
	}
	return r.Manifest, r.Info.Notes, nil
}

// mustRender renders and decodes, failing the test on any error.
func mustRender(t testing.TB, vals map[string]any) *rendered {
	t.Helper()
	manifest, notes, err := render(t, vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	r, err := decodeManifest(manifest)
	if err != nil {
		t.Fatalf("decode: %v\n%s", err, manifest)
	}
	r.notes = notes
	r.text = manifest
	return r
}
