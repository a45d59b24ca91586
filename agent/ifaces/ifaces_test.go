package ifaces

import (
	"strings"
	"testing"
)

func TestSelector(t *testing.T) {
	all := Selector{Exclude: []string{"lo"}}
	only := Selector{Include: []string{"eth0", "veth*"}, Exclude: []string{"veth9"}}
	for _, tc := range []struct {
		sel  Selector
		name string
		want bool
	}{
		{all, "eth0", true}, {all, "lo", false}, {all, "vethabc", true},
		{only, "eth0", true}, {only, "eth1", false}, {only, "vethabc", true}, {only, "veth9", false}, {only, "lo", false},
	} {
		if got := tc.sel.Matches(tc.name); got != tc.want {
			t.Errorf("%+v.Matches(%q) = %v", tc.sel, tc.name, got)
		}
	}
}

func TestValidate(t *testing.T) {
	existing := []string{"lo", "eth0"}
	if err := (Selector{Include: []string{"eth0", "veth*"}}).Validate(existing); err != nil {
		t.Errorf("valid selector: %v", err)
	}
	err := (Selector{Include: []string{"eth1"}}).Validate(existing)
	if err == nil || !strings.Contains(err.Error(), `unknown interface "eth1"`) || !strings.Contains(err.Error(), "eth0") {
		t.Errorf("unknown interface: %v", err)
	}
	if err := (Selector{Exclude: []string{"[eth"}}).Validate(existing); err == nil {
		t.Error("bad pattern accepted")
	}
}
