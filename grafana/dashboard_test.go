// Package grafanaprovisioning holds no code: its tests check PANO's Grafana
// provisioning and the "PANO DNS Metrics", "PANO HTTP Metrics" and "PANO
// TLS Metrics" dashboards statically (Grafana itself does not run in the
// test environment; every panel query runs against a real Prometheus in
// internal/analyticstest).
package grafanaprovisioning

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pano-observability/pano/internal/analyticstest"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"
)

const (
	dashboardFile = "dashboards/pano-dns.json" // the home dashboard
	// Where the container sees this repository's grafana/ folders.
	containerDashboards = "/var/lib/grafana/dashboards"
)

// dashboards is every dashboard the provider loads, with the panels each
// must have and the least number of queries it holds.
var dashboards = []struct {
	file, title, uid string
	panels           []string
	minQueries       int
}{
	{dashboardFile, "PANO DNS Metrics", "pano-dns", []string{
		// The original demo's eight, then PANO's additions.
		"Total queries", "Query rate", "Average response time per server", "Response time quantiles",
		"Return code rate", "Return code share", "Query type rate", "Query type share",
		"Server error ratio", "Server latency (p50, p99, mean)", "Top query names", "Unanswered share",
		"Unanswered share per server", "Agent drops", "Shim lag", "Records per second",
	}, 25},
	{"dashboards/pano-http.json", "PANO HTTP Metrics", "pano-http", []string{
		"Total requests", "Request rate", "Average response time per server", "Response time quantiles",
		"Status code rate", "Status class share", "Method rate", "Top hosts",
		"Server 5xx ratio", "Server latency (p50, p99, mean)", "No-reply share per server",
		"Body bytes per second", "Status class share per server", "Records per second",
	}, 22},
	{"dashboards/pano-tls.json", "PANO TLS Metrics", "pano-tls", []string{
		"Total handshakes", "Handshake rate", "Average handshake time per server", "Handshake time quantiles",
		"Version rate", "Version share", "Outcome rate", "Top ciphers",
		"Certificate expiry", "Certificates expiring within 14 days",
		"Server handshake failure ratio", "Server handshake time (p50, p99, mean)", "Legacy handshakes per server",
		"Records per second",
	}, 23},
}

// grafanaVars are values for the variables Grafana fills in itself, and the
// dashboard's own, for parsing.
var grafanaVars = map[string]string{
	"__rate_interval": "1m", "__interval": "15s", "__range": "1h", "server": ".*", "node": ".*",
}

func datasourceUID(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("provisioning/datasources/pano.yml")
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name, UID, Type, URL string
			IsDefault            bool `yaml:"isDefault"`
		} `yaml:"datasources"`
	}
	if err := yaml.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if p.APIVersion != 1 || len(p.Datasources) != 1 {
		t.Fatalf("want apiVersion 1 and one datasource, got %+v", p)
	}
	ds := p.Datasources[0]
	if ds.UID != "pano-prometheus" || ds.Type != "prometheus" || !strings.HasSuffix(ds.URL, ":9090") {
		t.Fatalf("datasource = %+v, want uid pano-prometheus, type prometheus, port 9090", ds)
	}
	return ds.UID
}

func loadDashboard(t *testing.T, file string) *analyticstest.Dashboard {
	t.Helper()
	d, err := analyticstest.LoadDashboard(file)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Every dashboard in dashboards/ (which the provider loads) is one the
// tests know, with its own title and uid; the DNS one stays the home.
func TestDashboardsListed(t *testing.T) {
	files, err := filepath.Glob("dashboards/*.json")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, d := range dashboards {
		want = append(want, d.file)
		got := loadDashboard(t, d.file)
		if got.Title != d.title || got.UID != d.uid {
			t.Errorf("%s: title %q uid %q, want %q and %q", d.file, got.Title, got.UID, d.title, d.uid)
		}
	}
	slices.Sort(want)
	if !slices.Equal(files, want) {
		t.Errorf("dashboards/ holds %v; the tests know %v", files, want)
	}
}

func TestDashboardProvisionedAsHome(t *testing.T) {
	d := loadDashboard(t, dashboardFile)
	if d.Title != "PANO DNS Metrics" || d.UID == "" {
		t.Errorf("dashboard title %q uid %q", d.Title, d.UID)
	}
	b, err := os.ReadFile("provisioning/dashboards/pano.yml")
	if err != nil {
		t.Fatal(err)
	}
	var prov struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name, Type string
			Options    struct{ Path string } `yaml:"options"`
		} `yaml:"providers"`
	}
	if err := yaml.Unmarshal(b, &prov); err != nil {
		t.Fatal(err)
	}
	if len(prov.Providers) != 1 || prov.Providers[0].Type != "file" || prov.Providers[0].Options.Path != containerDashboards {
		t.Fatalf("dashboard provider = %+v, want one file provider on %s", prov.Providers, containerDashboards)
	}
	ini, err := os.ReadFile("grafana.ini")
	if err != nil {
		t.Fatal(err)
	}
	want := "default_home_dashboard_path = " + containerDashboards + "/" + filepath.Base(dashboardFile)
	if !strings.Contains(string(ini), "\n"+want+"\n") {
		t.Errorf("grafana.ini does not set %q", want)
	}
}

func TestDashboardPanels(t *testing.T) {
	uid := datasourceUID(t)
	for _, dash := range dashboards {
		t.Run(dash.uid, func(t *testing.T) {
			d := loadDashboard(t, dash.file)
			panels := d.QueryPanels()
			titles := map[string]bool{}
			for _, p := range panels {
				if titles[p.Title] {
					t.Errorf("two panels titled %q", p.Title)
				}
				titles[p.Title] = true
				if len(strings.Fields(p.Description)) < 5 {
					t.Errorf("panel %q: description %q is missing or too short", p.Title, p.Description)
				}
				if p.Datasource == nil || p.Datasource.UID != uid {
					t.Errorf("panel %q: datasource %+v, want uid %s", p.Title, p.Datasource, uid)
				}
				if len(p.Targets) == 0 {
					t.Errorf("panel %q has no query", p.Title)
				}
				for _, tg := range p.Targets {
					if tg.Datasource == nil || tg.Datasource.UID != uid {
						t.Errorf("panel %q target %s: datasource %+v, want uid %s", p.Title, tg.RefID, tg.Datasource, uid)
					}
				}
			}
			for _, v := range d.Templating.List {
				if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != uid) {
					t.Errorf("variable %s: datasource %+v, want uid %s", v.Name, v.Datasource, uid)
				}
			}
			for _, want := range dash.panels {
				if !titles[want] {
					t.Errorf("no panel %q", want)
				}
			}
			// The quantile panels show p50, p75, p90, p95 and p99, in order.
			n := 0
			for _, p := range panels {
				if !strings.HasSuffix(p.Title, " quantiles") {
					continue
				}
				n++
				var quantiles []string
				for _, tg := range p.Targets {
					m := regexp.MustCompile(`histogram_quantile\(([0-9.]+)`).FindStringSubmatch(tg.Expr)
					if m == nil {
						t.Errorf("%s/%s: no histogram_quantile in %q", p.Title, tg.RefID, tg.Expr)
						continue
					}
					quantiles = append(quantiles, m[1])
				}
				if !slices.Equal(quantiles, []string{"0.5", "0.75", "0.9", "0.95", "0.99"}) {
					t.Errorf("%s = %v, want p50 p75 p90 p95 p99", p.Title, quantiles)
				}
			}
			if n != 1 {
				t.Errorf("%d quantile panels, want 1", n)
			}
		})
	}
}

// knownMetrics is every metric name a panel may use: what the
// flowlogs-pipeline configuration exports, what the recording rules
// record, and the other components' documented names.
func knownMetrics(t *testing.T) map[string]bool {
	t.Helper()
	known := map[string]bool{"up": true}
	var flp struct {
		Parameters []struct {
			Encode *struct {
				Prom *struct {
					Prefix  string
					Metrics []struct{ Name, Type string }
				}
			}
		}
	}
	b, err := os.ReadFile("../fl-pipeline-config/flowlogs-pipeline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &flp); err != nil {
		t.Fatal(err)
	}
	for _, p := range flp.Parameters {
		if p.Encode == nil || p.Encode.Prom == nil {
			continue
		}
		for _, m := range p.Encode.Prom.Metrics {
			name := p.Encode.Prom.Prefix + m.Name
			if m.Type == "histogram" {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					known[name+s] = true
				}
				continue
			}
			known[name] = true
		}
	}
	rules, _ := filepath.Glob("../prometheus/rules/*.yml")
	for _, f := range rules {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`(?m)^\s*- record: (\S+)`).FindAllStringSubmatch(string(b), -1) {
			known[m[1]] = true
		}
	}
	// flowlogs-pipeline's operational metrics (metricsSettings.prefix
	// pano_flp_), the agent's and the shim's: see grafana/README.md.
	for _, n := range []string{
		"pano_flp_ingest_flows_processed", "pano_flp_metrics_dropped",
		"pano_agent_packets_dropped_total", "pano_agent_packets_captured_total", "pano_agent_pcap_over_tcp_clients_connected",
		"pano_shim_bytes_behind", "pano_shim_records_produced_total",
	} {
		known[n] = true
	}
	return known
}

func TestDashboardQueriesParse(t *testing.T) {
	known := knownMetrics(t)
	for _, dash := range dashboards {
		t.Run(dash.uid, func(t *testing.T) {
			d := loadDashboard(t, dash.file)
			n := 0
			check := func(where, expr string) {
				q, err := analyticstest.ExpandVariables(expr, grafanaVars)
				if err != nil {
					t.Errorf("%s: %v", where, err)
					return
				}
				e, err := parser.ParseExpr(q)
				if err != nil {
					t.Errorf("%s: %q: %v", where, q, err)
					return
				}
				n++
				parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
					if vs, ok := node.(*parser.VectorSelector); ok && !known[vs.Name] {
						t.Errorf("%s: metric %q is not exported by any PANO component", where, vs.Name)
					}
					return nil
				})
			}
			for _, p := range d.QueryPanels() {
				for _, tg := range p.Targets {
					check(p.Title+"/"+tg.RefID, tg.Expr)
				}
			}
			for _, v := range d.Templating.List {
				if v.Type == "query" {
					// label_values(metric, label) is Grafana's, not PromQL: check its selector.
					m := regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`).FindStringSubmatch(v.Definition)
					if m == nil {
						t.Errorf("variable %s: unexpected definition %q", v.Name, v.Definition)
						continue
					}
					check("variable "+v.Name, m[1])
				}
			}
			if n < dash.minQueries {
				t.Errorf("parsed %d queries, expected at least %d", n, dash.minQueries)
			}
		})
	}
}
