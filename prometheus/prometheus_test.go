// Package prometheusconfig holds no code: its tests check PANO's
// Prometheus configuration and rules with Prometheus' own tools (promtool)
// and its PromQL parser.
package prometheusconfig

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pano-observability/pano/internal/testenv"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"
)

func promtool(t *testing.T, args ...string) string {
	t.Helper()
	bin := testenv.RequireProgram(t, "promtool", "prometheus")
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestPromtoolCheckConfig(t *testing.T) {
	out := promtool(t, "check", "config", "prometheus.yml")
	if !strings.Contains(out, "2 rule files found") {
		t.Errorf("prometheus.yml should load both rule files:\n%s", out)
	}
}

func TestPromtoolCheckRules(t *testing.T) {
	files, err := filepath.Glob("rules/*.yml")
	if err != nil || len(files) < 2 {
		t.Fatalf("rule files: %v %v", files, err)
	}
	promtool(t, append([]string{"check", "rules"}, files...)...)
}

func TestPromtoolTestRules(t *testing.T) {
	files, err := filepath.Glob("tests/*.test.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("rule unit tests: %v %v", files, err)
	}
	promtool(t, append([]string{"test", "rules"}, files...)...)
}

// ruleFile is the part of Prometheus' rule file format these checks read
// (the full one is promtool's business, above); unknown keys are errors.
type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []struct {
			Record      string            `yaml:"record"`
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func parseRuleFile(path string) (*ruleFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	var rf ruleFile
	if err := dec.Decode(&rf); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &rf, nil
}

// TestRulesParse parses every rule expression with the PromQL parser of the
// Prometheus library go.mod pins, independently of the Debian promtool, and
// checks the naming conventions.
func TestRulesParse(t *testing.T) {
	files, _ := filepath.Glob("rules/*.yml")
	n := 0
	for _, f := range files {
		groups, err := parseRuleFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				n++
				if _, err := parser.ParseExpr(r.Expr); err != nil {
					t.Errorf("%s: %s%s: %v", f, r.Record, r.Alert, err)
				}
				if r.Record != "" && strings.Count(r.Record, ":") != 2 {
					t.Errorf("%s: recording rule %q is not named level:metric:operations", f, r.Record)
				}
				if r.Alert != "" && (r.Annotations["summary"] == "" || r.Annotations["description"] == "" || r.Labels["severity"] == "") {
					t.Errorf("%s: alert %s needs a summary, a description and a severity", f, r.Alert)
				}
			}
		}
	}
	if n < 13 {
		t.Errorf("parsed %d rules, expected at least 13", n)
	}
}
