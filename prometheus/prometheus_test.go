// Package prometheusconfig holds no code: its tests check PANO's
// Prometheus configuration and rules with Prometheus' own tools (promtool)
// and its PromQL parser.
package prometheusconfig

import (
	"fmt"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/pano-observability/pano/internal/testenv"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
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

// TestPromtoolCheckConfig: prometheus.yml is valid and loads every rule
// file in rules/, so that a new file cannot be forgotten there.
func TestPromtoolCheckConfig(t *testing.T) {
	files, err := filepath.Glob("rules/*.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("rule files: %v %v", files, err)
	}
	out := promtool(t, "check", "config", "prometheus.yml")
	if want := fmt.Sprintf("%d rule files found", len(files)); !strings.Contains(out, want) {
		t.Errorf("prometheus.yml should load the %d rule files of rules/ (%q):\n%s", len(files), want, out)
	}
	listed := map[string]bool{}
	for _, f := range loadPromConfig(t).RuleFiles {
		listed[f] = true
	}
	for _, f := range files {
		if !listed[f] {
			t.Errorf("prometheus.yml does not list %s", f)
		}
	}
}

// promConfig is the part of prometheus.yml these tests read.
type promConfig struct {
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName              string            `yaml:"job_name"`
		MetricRelabelConfigs []*relabel.Config `yaml:"metric_relabel_configs"`
	} `yaml:"scrape_configs"`
}

func loadPromConfig(t *testing.T) promConfig {
	t.Helper()
	b, err := os.ReadFile("prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c promConfig
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
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
	if n < 36 {
		t.Errorf("parsed %d rules, expected at least 36", n)
	}
}

// Every alert has a promtool unit test in which it fires, and every rule
// file is loaded by a unit test.
func TestEveryAlertHasAFiringTest(t *testing.T) {
	var tf struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	firing, tested := map[string]bool{}, map[string]bool{}
	tests, _ := filepath.Glob("tests/*.test.yml")
	for _, f := range tests {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		tf.RuleFiles, tf.Tests = nil, nil
		if err := yaml.Unmarshal(b, &tf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, rf := range tf.RuleFiles {
			tested[filepath.Clean(filepath.Join("tests", rf))] = true
		}
		for _, tc := range tf.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					firing[a.Alertname] = true
				}
			}
		}
	}
	files, _ := filepath.Glob("rules/*.yml")
	alerts := 0
	for _, f := range files {
		if !tested[f] {
			t.Errorf("%s is loaded by no promtool test in tests/", f)
		}
		rf, err := parseRuleFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" {
					continue
				}
				alerts++
				if !firing[r.Alert] {
					t.Errorf("%s: alert %s never fires in a promtool test", f, r.Alert)
				}
			}
		}
	}
	if alerts < 9 {
		t.Errorf("found %d alerts, expected at least 9", alerts)
	}
}

// TestLatencyTwinsMerge runs what flowlogs-pipeline exports for each
// latency histogram (seconds and milliseconds twins, the client library's
// default buckets) through the flowlogs-pipeline job's metric relabelling
// with Prometheus' own relabel code: one cumulative histogram in seconds
// remains, 5 us .. 10 s, and nothing of the twin.
func TestLatencyTwinsMerge(t *testing.T) {
	var cfgs []*relabel.Config
	for _, sc := range loadPromConfig(t).ScrapeConfigs {
		if sc.JobName == "flowlogs-pipeline" {
			cfgs = sc.MetricRelabelConfigs
		}
	}
	if len(cfgs) == 0 {
		t.Fatal("the flowlogs-pipeline job has no metric_relabel_configs")
	}
	// The client library's defaults, as its text format writes them.
	defaults := []string{"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"}
	wantLE := []float64{5e-06, 1e-05, 2.5e-05, 5e-05, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
		0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, math.Inf(1)}
	for _, base := range []string{"pano_dns_response_time", "pano_http_response_time", "pano_tls_handshake_time"} {
		var in []labels.Labels
		for _, unit := range []string{"_seconds", "_milliseconds"} {
			for _, le := range defaults {
				in = append(in, labels.FromStrings("__name__", base+unit+"_bucket", "server", "s1", "le", le))
			}
			in = append(in, labels.FromStrings("__name__", base+unit+"_sum", "server", "s1"),
				labels.FromStrings("__name__", base+unit+"_count", "server", "s1"))
		}
		var les []float64
		other := map[string]int{}
		for _, l := range in {
			out, keep := relabel.Process(l, cfgs...)
			if !keep {
				continue
			}
			name := out.Get("__name__")
			if name != base+"_seconds_bucket" {
				other[name]++
				continue
			}
			le, err := strconv.ParseFloat(out.Get("le"), 64)
			if err != nil {
				t.Errorf("%s: le %q", base, out.Get("le"))
			}
			les = append(les, le)
		}
		sort.Float64s(les)
		if !slices.Equal(les, wantLE) {
			t.Errorf("%s_seconds_bucket bounds after relabelling = %v, want %v", base, les, wantLE)
		}
		if want := map[string]int{base + "_seconds_sum": 1, base + "_seconds_count": 1}; !maps.Equal(other, want) {
			t.Errorf("%s: other series after relabelling = %v, want %v", base, other, want)
		}
	}
	// Everything else passes untouched.
	for _, l := range []labels.Labels{
		labels.FromStrings("__name__", "pano_http_requests_total", "server", "s1", "method", "GET", "status_code", "200"),
		labels.FromStrings("__name__", "pano_flp_stage_duration_ms_bucket", "stage", "encode_tls", "le", "1"),
	} {
		if out, keep := relabel.Process(l, cfgs...); !keep || !labels.Equal(out, l) {
			t.Errorf("%v became %v (kept %v)", l, out, keep)
		}
	}
}
