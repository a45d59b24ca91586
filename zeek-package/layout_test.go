package zeekpackage_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The glue reads its settings by name from script land and falls back to
// defaults when a name is missing, so a typo would go unnoticed in Zeek:
// every name it reads must be declared, with the matching type, in the
// plugin's scripts.
func TestGlueSettingsAreDeclared(t *testing.T) {
	src, err := os.ReadFile("plugin/src/PcapOverTcpSource.cc")
	if err != nil {
		t.Fatal(err)
	}
	zeek, err := os.ReadFile("plugin/scripts/__load__.zeek")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(zeek), "module PcapOverTcp;") {
		t.Fatal("plugin/scripts/__load__.zeek does not declare module PcapOverTcp")
	}
	uses := regexp.MustCompile(`(Count|Interval)Option\("PcapOverTcp::(\w+)"`).FindAllStringSubmatch(string(src), -1)
	if len(uses) < 5 {
		t.Fatalf("found %d settings read by the glue, want at least 5", len(uses))
	}
	for _, u := range uses {
		typ := map[string]string{"Count": "count", "Interval": "interval"}[u[1]]
		decl := regexp.MustCompile(`const ` + u[2] + `: ` + typ + ` = [^;]+&redef;`)
		if !decl.Match(zeek) {
			t.Errorf("PcapOverTcp::%s (%s) is read by the glue but not declared as a redef-able %s", u[2], typ, typ)
		}
	}
}

// Every C++ source of the plugin is compiled into it.
func TestCMakeListsAllSources(t *testing.T) {
	cm, err := os.ReadFile("plugin/CMakeLists.txt")
	if err != nil {
		t.Fatal(err)
	}
	var srcs []string
	for _, g := range []string{"plugin/src/*.cc", "core/*.cc"} {
		m, _ := filepath.Glob(g)
		srcs = append(srcs, m...)
	}
	for _, s := range srcs {
		// Paths in plugin/CMakeLists.txt are relative to plugin/.
		rel, _ := filepath.Rel("plugin", s)
		if !strings.Contains(string(cm), "zeek_plugin_cc("+rel+")") {
			t.Errorf("%s is not built into the plugin", s)
		}
	}
	if !strings.Contains(string(cm), "zeek_plugin_begin(Pano PcapOverTcp)") {
		t.Error("plugin name is not Pano::PcapOverTcp")
	}
	plugin, err := os.ReadFile("plugin/src/Plugin.cc")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`config.name = "Pano::PcapOverTcp"`, `"PcapOverTcp", "pcapovertcp"`, "PktSrcComponent::LIVE"} {
		if !strings.Contains(string(plugin), want) {
			t.Errorf("src/Plugin.cc lacks %s", want)
		}
	}
}
