package filter

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	p := netip.MustParsePrefix
	for _, tc := range []struct {
		in   string
		want []Rule
	}{
		{"udp,53", []Rule{{Protocol: UDP, Port: 53}}},
		{"udp,53;tcp,53", []Rule{{Protocol: UDP, Port: 53}, {Protocol: TCP, Port: 53}}},
		{" UDP , 53 ; ; tcp,53 ;", []Rule{{Protocol: UDP, Port: 53}, {Protocol: TCP, Port: 53}}},
		{"udp,53,198.18.0.0/15,in", []Rule{{Protocol: UDP, Port: 53, Prefix: p("198.18.0.0/15"), Direction: Ingress}}},
		{"udp,53,egress,fd00::/8", []Rule{{Protocol: UDP, Port: 53, Prefix: p("fd00::/8"), Direction: Egress}}},
		{"tcp,853,192.0.2.1", []Rule{{Protocol: TCP, Port: 853, Prefix: p("192.0.2.1/32")}}},
		{"tcp,any,2001:db8::1", []Rule{{Protocol: TCP, Prefix: p("2001:db8::1/128")}}},
		{"udp,53,198.18.1.7/15", []Rule{{Protocol: UDP, Port: 53, Prefix: p("198.18.0.0/15")}}},
		{"udp", []Rule{{Protocol: UDP}}},
		{"udp,0", []Rule{{Protocol: UDP}}},
		{"any,any", []Rule{{}}},
		{"all", []Rule{{}}},
		{"any,*,both", []Rule{{}}},
		{"tcp,80,budget=1", []Rule{{Protocol: TCP, Port: 80, BudgetMode: TurnBudget, Budget: 1}}},
		{"tcp,80,budget=4k,in", []Rule{{Protocol: TCP, Port: 80, Direction: Ingress, BudgetMode: TurnBudget, Budget: 4096}}},
		{"tcp,443, handshake = 16KiB ,10.0.0.0/8", []Rule{{Protocol: TCP, Port: 443, Prefix: p("10.0.0.0/8"), BudgetMode: HandshakeBudget, Budget: 16384}}},
		{"tcp,8080,budget=1MiB", []Rule{{Protocol: TCP, Port: 8080, BudgetMode: TurnBudget, Budget: 1 << 20}}},
		{"tcp,80,budget=300", []Rule{{Protocol: TCP, Port: 80, BudgetMode: TurnBudget, Budget: 300}}},
	} {
		got, err := Parse(tc.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Parse(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "empty filter"},
		{" ; ", "empty filter"},
		{"icmp,0", "unknown protocol"},
		{"udp,65536", "port"},
		{"udp,-1", "port"},
		{"udp,dns", "port"},
		{"any,53", "a port needs a protocol"},
		{"udp,53,in,out", "direction given twice"},
		{"udp,53,10.0.0.0/8,fd00::/8", "at most one CIDR"},
		{"udp,53,10.0.0.0/33", "CIDR"},
		{"udp,53,sideways", "neither a direction"},
		{"udp,53,fe80::1%eth0", "zones"},
		{"udp,53,::ffff:10.0.0.1", "IPv4-mapped"},
		{"udp,53;tcp,1;tcp,2;tcp,3;tcp,4;tcp,5;tcp,6;tcp,7;tcp,8;tcp,9;tcp,10;tcp,11;tcp,12;tcp,13;tcp,14;tcp,15;tcp,16", "at most 16"},
		{"udp,53;tcp,x", "rule 2"},
		{"udp,53,budget=4k", "needs a tcp rule"},
		{"any,any,handshake=4k", "needs a tcp rule"},
		{"tcp,80,budget=2MiB", "1 byte to 1MiB"},
		{"tcp,80,budget=4GB", "unknown unit"},
		{"tcp,80,budget=", "1 byte to 1MiB"},
		{"tcp,80,budget=0", "first byte of a body"},
		{"tcp,443,handshake=0", "at least 1 byte"},
		{"tcp,80,budget=1k,handshake=1k", "a rule has one budget"},
		{"tcp,80,snaplen=100", "unknown option"},
	} {
		_, err := Parse(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) error %v, want one mentioning %q", tc.in, err, tc.want)
		}
	}
}

func TestFormatRoundTrip(t *testing.T) {
	in := "udp,53;tcp,53,198.18.0.0/15,in;any,any,fd00::/8,out;tcp,80,budget=1;tcp,443,out,handshake=16KiB;tcp,8080,budget=1000"
	rules, err := Parse(in)
	if err != nil {
		t.Fatal(err)
	}
	if got := Format(rules); got != in {
		t.Fatalf("Format = %q, want %q", got, in)
	}
}

// FuzzParse checks that Parse never panics and that what it accepts
// formats to an expression that parses to the same rules.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"udp,53", "udp,53;tcp,53", "udp,53,198.18.0.0/15,in", "any,any", "tcp,853,fd00::/8,out", "tcp,80,budget=4KiB;tcp,443,handshake=16k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rules, err := Parse(s)
		if err != nil {
			return
		}
		if len(rules) == 0 || len(rules) > MaxRules {
			t.Fatalf("Parse(%q) accepted %d rules", s, len(rules))
		}
		again, err := Parse(Format(rules))
		if err != nil {
			t.Fatalf("Parse(Format(Parse(%q))) = %v", s, err)
		}
		if !reflect.DeepEqual(rules, again) {
			t.Fatalf("round trip of %q: %+v != %+v", s, rules, again)
		}
		for _, r := range rules {
			if r.Port != 0 && r.Protocol == AnyProtocol {
				t.Fatalf("rule %+v: port without protocol", r)
			}
			if r.Prefix.IsValid() && r.Prefix != r.Prefix.Masked() {
				t.Fatalf("rule %+v: unmasked prefix", r)
			}
		}
	})
}
