package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pano-observability/pano/bench/suite"
)

func TestSelectGroups(t *testing.T) {
	all := suite.Groups()
	sel, err := selectGroups(all, " shim, pcap ")
	if err != nil {
		t.Fatal(err)
	}
	// The suite's order, not the flag's.
	if len(sel) != 2 || sel[0].Key != "pcap" || sel[1].Key != "shim" {
		t.Errorf("selected %v", sel)
	}
	if sel, err := selectGroups(all, ""); err != nil || len(sel) != len(all) {
		t.Errorf("all: %d, %v", len(sel), err)
	}
	if _, err := selectGroups(all, "pcap,nope"); err == nil || !strings.Contains(err.Error(), `unknown group "nope" (groups: pcap, capture, shim, flp, chain, http, cluster)`) {
		t.Errorf("unknown: %v", err)
	}
	if _, err := selectGroups(all, ","); err == nil {
		t.Error("empty selection accepted")
	}
}

func TestHelpListsGroups(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run([]string{"-help"}, &out, &errOut); err == nil {
		t.Fatal("-help: no error")
	}
	for _, g := range suite.Groups() {
		if !strings.Contains(errOut.String(), g.Key) {
			t.Errorf("help lacks %s:\n%s", g.Key, errOut.String())
		}
	}
	if err := run([]string{"-only", "bogus"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("-only bogus: %v", err)
	}
}

func TestFindRoot(t *testing.T) {
	root, err := findRoot()
	if err != nil {
		t.Fatal(err)
	}
	// The test runs in bench/cmd/panobench: the root is three levels up.
	if _, err := os.Stat(filepath.Join(root, "bench", "cmd", "panobench", "main.go")); err != nil {
		t.Errorf("root = %q: %v", root, err)
	}
}
