package analyticstest

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// DatasourceRef is how a Grafana panel, target or variable names its
// datasource.
type DatasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Target is one query of a panel.
type Target struct {
	RefID        string         `json:"refId"`
	Expr         string         `json:"expr"`
	LegendFormat string         `json:"legendFormat"`
	Instant      bool           `json:"instant"`
	Datasource   *DatasourceRef `json:"datasource"`
}

// Panel is a Grafana panel; rows hold their panels when collapsed.
type Panel struct {
	ID          int            `json:"id"`
	Type        string         `json:"type"`
	Title       string         `json:"title"`
	Description string         `json:"description"`
	Datasource  *DatasourceRef `json:"datasource"`
	Targets     []Target       `json:"targets"`
	Panels      []Panel        `json:"panels"`
}

// Variable is a dashboard template variable.
type Variable struct {
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	Datasource *DatasourceRef `json:"datasource"`
	Definition string         `json:"definition"`
	AllValue   string         `json:"allValue"`
}

// Dashboard is the part of Grafana's dashboard model PANO's tests read.
type Dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []Panel `json:"panels"`
	Templating struct {
		List []Variable `json:"list"`
	} `json:"templating"`
}

// LoadDashboard reads a dashboard JSON file.
func LoadDashboard(path string) (*Dashboard, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d Dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &d, nil
}

// QueryPanels returns every panel that is not a row, including those
// inside collapsed rows.
func (d *Dashboard) QueryPanels() []Panel {
	var out []Panel
	var walk func([]Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			out = append(out, p)
		}
	}
	walk(d.Panels)
	return out
}

var variableRE = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)(?::[a-z]+)?\}|\$([A-Za-z0-9_]+)|\[\[([A-Za-z0-9_]+)\]\]`)

// ExpandVariables replaces Grafana variables ($name, ${name},
// ${name:format}, [[name]]) in expr with vars[name], the way Grafana does
// before it sends a query. An unknown variable is an error: a query that
// Grafana would send broken must not pass a test.
func ExpandVariables(expr string, vars map[string]string) (string, error) {
	var missing []string
	out := variableRE.ReplaceAllStringFunc(expr, func(m string) string {
		sub := variableRE.FindStringSubmatch(m)
		name := sub[1] + sub[2] + sub[3]
		v, ok := vars[name]
		if !ok {
			missing = append(missing, name)
			return m
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("unknown variable(s) %s in %q", strings.Join(missing, ", "), expr)
	}
	return out, nil
}
