package helmtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/rulefmt"
	"gopkg.in/yaml.v3"

	"github.com/pano-observability/pano/internal/testenv"
)

// facts is what the rest of the repository says the chart must agree
// with: the variables each program reads, the images compose runs, the
// rules, prometheus.yml's relabelings and flowlogs-pipeline's topics.
type facts struct {
	agentVars, shimVars map[string]string // variable -> default (from --help)
	zeekVars            map[string]bool   // variables entrypoint.sh reads
	composeImages       map[string]string // service -> image
	ruleGroups          []rulefmt.RuleGroup
	flpRelabel          []map[string]any // prometheus.yml, job flowlogs-pipeline
	flpConfig           map[string]any   // fl-pipeline-config/flowlogs-pipeline.yaml
	dashboards          map[string][]byte
}

var (
	factsOnce sync.Once
	theFacts  *facts
	factsErr  error
)

func repoFacts(t testing.TB) *facts {
	t.Helper()
	root := testenv.RepoRoot(t)
	factsOnce.Do(func() { theFacts, factsErr = gatherFacts(root) })
	if factsErr != nil {
		t.Fatalf("repository facts: %v", factsErr)
	}
	return theFacts
}

func gatherFacts(root string) (*facts, error) {
	f := &facts{}
	var err error
	if f.agentVars, err = envflagVars(root, "agent/cmd/pano-agent"); err != nil {
		return nil, err
	}
	if f.shimVars, err = envflagVars(root, "shim/cmd/pano-shim"); err != nil {
		return nil, err
	}
	if f.zeekVars, err = scriptVars(filepath.Join(root, "zeek-package/docker/entrypoint.sh"), shellVar); err != nil {
		return nil, err
	}
	// The package's scripts read a few more (getenv).
	scripts, _ := filepath.Glob(filepath.Join(root, "zeek-package/scripts/*.zeek"))
	for _, s := range scripts {
		vars, err := scriptVars(s, zeekGetenv)
		if err != nil {
			continue // a script that reads none
		}
		for v := range vars {
			f.zeekVars[v] = true
		}
	}
	var compose struct {
		Services map[string]struct {
			Image string `yaml:"image"`
		} `yaml:"services"`
	}
	if err := readYAML(filepath.Join(root, "docker-compose.yml"), &compose); err != nil {
		return nil, err
	}
	f.composeImages = map[string]string{}
	for name, s := range compose.Services {
		f.composeImages[name] = s.Image
	}

	var prom struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string           `yaml:"job_name"`
			MetricRelabel []map[string]any `yaml:"metric_relabel_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := readYAML(filepath.Join(root, "prometheus/prometheus.yml"), &prom); err != nil {
		return nil, err
	}
	for _, sc := range prom.ScrapeConfigs {
		if sc.JobName == "flowlogs-pipeline" {
			f.flpRelabel = sc.MetricRelabel
		}
	}
	// The rule files, in the chart's order (file names, sorted), and the
	// same set prometheus.yml loads.
	files, err := filepath.Glob(filepath.Join(root, "prometheus/rules/*.yml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("prometheus/rules: no rule file (%v)", err)
	}
	if len(files) != len(prom.RuleFiles) {
		return nil, fmt.Errorf("prometheus/rules holds %d files, prometheus.yml loads %d", len(files), len(prom.RuleFiles))
	}
	for _, file := range files {
		groups, errs := rulefmt.ParseFile(file, false)
		if len(errs) > 0 {
			return nil, fmt.Errorf("%s: %v", file, errs)
		}
		f.ruleGroups = append(f.ruleGroups, groups.Groups...)
	}
	if err := readYAML(filepath.Join(root, "fl-pipeline-config/flowlogs-pipeline.yaml"), &f.flpConfig); err != nil {
		return nil, err
	}
	f.dashboards = map[string][]byte{}
	boards, _ := filepath.Glob(filepath.Join(root, "grafana/dashboards/*.json"))
	for _, b := range boards {
		data, err := os.ReadFile(b)
		if err != nil {
			return nil, fmt.Errorf("dashboard: %w", err)
		}
		f.dashboards[filepath.Base(b)] = data
	}
	return f, nil
}

func readYAML(path string, into any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if err := yaml.Unmarshal(b, into); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// envflagLine is one setting in internal/envflag's usage text:
// "  -flag-name, VARIABLE (default X)".
var envflagLine = regexp.MustCompile(`(?m)^  -[a-z0-9.-]+, ([A-Z0-9_]+)(?: \(default (.*)\))?$`)

// envflagVars builds a command of this module and reads the variables it
// documents in --help (every PANO command parses its settings with
// internal/envflag, which prints each one).
func envflagVars(root, pkg string) (map[string]string, error) {
	dir, err := os.MkdirTemp("", "helmtest-bin-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, filepath.Base(pkg))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./"+pkg)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./%s: %w\n%s", pkg, err, out)
	}
	help := exec.CommandContext(ctx, bin, "--help")
	help.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	out, err := help.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s --help: %w\n%s", pkg, err, out)
	}
	vars := map[string]string{}
	for _, m := range envflagLine.FindAllStringSubmatch(string(out), -1) {
		vars[m[1]] = m[2]
	}
	if len(vars) == 0 {
		return nil, fmt.Errorf("%s --help documents no variable:\n%s", pkg, out)
	}
	return vars, nil
}

var (
	shellVar   = regexp.MustCompile(`\$\{([A-Z][A-Z0-9_]*)`)
	zeekGetenv = regexp.MustCompile(`getenv\("([A-Z][A-Z0-9_]*)"\)`)
)

// scriptVars returns the variables a script reads, as re's first group
// finds them (${NAME} in a shell script, getenv("NAME") in Zeek's).
func scriptVars(path string, re *regexp.Regexp) (map[string]bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	vars := map[string]bool{}
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		vars[m[1]] = true
	}
	if len(vars) == 0 {
		return nil, fmt.Errorf("%s reads no variable", path)
	}
	return vars, nil
}
