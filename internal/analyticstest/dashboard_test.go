package analyticstest

import (
	"strings"
	"testing"
)

var testVars = map[string]string{"__rate_interval": "1m", "__range": "1h", "server": ".*", "node": ".*"}

func TestExpandVariables(t *testing.T) {
	for in, want := range map[string]string{
		`rate(x{server=~"$server"}[$__rate_interval])`:           `rate(x{server=~".*"}[1m])`,
		`increase(x[${__range}]) / on() y{s=~"${server:regex}"}`: `increase(x[1h]) / on() y{s=~".*"}`,
		`sum(x{s=~"[[server]]"})`:                                `sum(x{s=~".*"})`,
		`x{re=~"a$"}`:                                            `x{re=~"a$"}`,
	} {
		got, err := ExpandVariables(in, testVars)
		if err != nil || got != want {
			t.Errorf("ExpandVariables(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ExpandVariables(`rate(x[$__interval_ms])`, testVars); err == nil {
		t.Error("an unknown variable expanded without error")
	}
}

// FuzzExpandVariables: expansion never panics, and a successful one
// replaces each variable reference of the input, once, in one pass (as
// Grafana does: "$$x" leaves a "$" before x's value).
func FuzzExpandVariables(f *testing.F) {
	f.Add(`sum by (server) (rate(pano_dns_queries_total{server=~"$server"}[$__rate_interval]))`)
	f.Add(`topk(10, sum by (qname) (increase(pano_dns_queries_by_name_total[$__range])))`)
	f.Add(`${server:regex}[[server]]$$server$`)
	marker := map[string]string{}
	for k := range testVars {
		marker[k] = "\x00"
	}
	f.Fuzz(func(t *testing.T, expr string) {
		out, err := ExpandVariables(expr, marker)
		if err != nil {
			if !strings.Contains(err.Error(), "unknown variable") {
				t.Fatalf("unexpected error: %v", err)
			}
			return
		}
		refs := len(variableRE.FindAllString(expr, -1))
		if got, want := strings.Count(out, "\x00"), strings.Count(expr, "\x00")+refs; got != want {
			t.Fatalf("%q expanded to %q: %d replacements, want %d", expr, out, got-strings.Count(expr, "\x00"), refs)
		}
	})
}
