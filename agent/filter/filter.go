// Package filter parses the capture filter (PCA_FILTER) into rules that the
// in-kernel classifier evaluates.
//
// Syntax: a list of rules separated by ";". A rule is comma-separated
// fields, the first two positional, as in the original "udp,53":
//
//	PROTO[,PORT[,CIDR][,DIRECTION]]
//
//	PROTO      udp | tcp | any
//	PORT       0-65535, or "any" (0 is "any"); matches source or destination
//	CIDR       an IPv4 or IPv6 prefix (198.18.0.0/15, fd00::/8) or a bare
//	           address; matches source or destination. Optional.
//	DIRECTION  in | ingress | out | egress | both (default both), relative to
//	           the captured interface. Optional.
//
// CIDR and DIRECTION may come in either order. A packet is captured when
// any rule matches. Examples: "udp,53", "udp,53;tcp,53",
// "udp,53,198.18.0.0/15,in", "any,any" (everything, including non-IP).
//
// Fragments: the first fragment of a datagram carries the ports and is
// matched like any packet; later fragments are captured when the first
// fragment of the same datagram (addresses, protocol, IP ID) matched
// before them. Later fragments that arrive before their first fragment
// are not captured.
package filter

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// MaxRules is how many rules the classifier's table holds.
const MaxRules = 16

// Protocol is an IP protocol number; 0 matches any packet.
type Protocol uint8

// Protocols the filter knows by name.
const (
	AnyProtocol Protocol = 0
	TCP         Protocol = 6
	UDP         Protocol = 17
)

func (p Protocol) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	case AnyProtocol:
		return "any"
	}
	return strconv.Itoa(int(p))
}

// Direction restricts a rule to packets entering or leaving the interface.
type Direction uint8

// Values match the classifier's DIR_* constants.
const (
	Both    Direction = 0
	Ingress Direction = 1
	Egress  Direction = 2
)

func (d Direction) String() string {
	switch d {
	case Ingress:
		return "in"
	case Egress:
		return "out"
	}
	return "both"
}

// Rule is one filter rule; zero fields match anything.
type Rule struct {
	Protocol  Protocol
	Port      uint16
	Prefix    netip.Prefix // invalid (zero) = any address
	Direction Direction
}

// String formats r in the syntax Parse accepts.
func (r Rule) String() string {
	var b strings.Builder
	b.WriteString(r.Protocol.String())
	b.WriteByte(',')
	if r.Port == 0 {
		b.WriteString("any")
	} else {
		b.WriteString(strconv.Itoa(int(r.Port)))
	}
	if r.Prefix.IsValid() {
		b.WriteByte(',')
		b.WriteString(r.Prefix.String())
	}
	if r.Direction != Both {
		b.WriteByte(',')
		b.WriteString(r.Direction.String())
	}
	return b.String()
}

// Format joins rules in the syntax Parse accepts.
func Format(rules []Rule) string {
	s := make([]string, len(rules))
	for i, r := range rules {
		s[i] = r.String()
	}
	return strings.Join(s, ";")
}

// Parse parses a filter expression. Empty rules (";;") are ignored, but
// at least one rule is required.
func Parse(expr string) ([]Rule, error) {
	var rules []Rule
	for i, text := range strings.Split(expr, ";") {
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		r, err := parseRule(text)
		if err != nil {
			return nil, fmt.Errorf("filter rule %d %q: %w", i+1, text, err)
		}
		rules = append(rules, r)
	}
	if len(rules) == 0 {
		return nil, errors.New(`empty filter: expected rules like "udp,53;tcp,53"`)
	}
	if len(rules) > MaxRules {
		return nil, fmt.Errorf("%d filter rules: at most %d are supported", len(rules), MaxRules)
	}
	return rules, nil
}

func parseRule(text string) (Rule, error) {
	var r Rule
	fields := strings.Split(text, ",")
	for i := range fields {
		fields[i] = strings.TrimSpace(fields[i])
	}
	switch strings.ToLower(fields[0]) {
	case "udp":
		r.Protocol = UDP
	case "tcp":
		r.Protocol = TCP
	case "any", "all", "*":
		r.Protocol = AnyProtocol
	default:
		return r, fmt.Errorf("unknown protocol %q: want udp, tcp or any", fields[0])
	}
	if len(fields) > 1 {
		p := strings.ToLower(fields[1])
		if p != "any" && p != "*" {
			n, err := strconv.ParseUint(p, 10, 16)
			if err != nil {
				return r, fmt.Errorf("port %q: want a number 0-65535 or any", fields[1])
			}
			r.Port = uint16(n)
		}
	}
	if r.Port != 0 && r.Protocol == AnyProtocol {
		return r, errors.New("a port needs a protocol (udp or tcp)")
	}
	var haveDir bool
	for _, f := range fields[min(2, len(fields)):] {
		switch strings.ToLower(f) {
		case "in", "ingress", "out", "egress", "both":
			if haveDir {
				return r, fmt.Errorf("direction given twice (%q)", f)
			}
			haveDir = true
			switch strings.ToLower(f) {
			case "in", "ingress":
				r.Direction = Ingress
			case "out", "egress":
				r.Direction = Egress
			}
			continue
		}
		if r.Prefix.IsValid() {
			return r, fmt.Errorf("unexpected field %q: a rule has at most one CIDR and one direction", f)
		}
		p, err := parsePrefix(f)
		if err != nil {
			return r, err
		}
		r.Prefix = p
	}
	return r, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("field %q is neither a direction (in, out, both) nor a CIDR: %w", s, err)
		}
		if p.Addr().Is4In6() {
			return netip.Prefix{}, fmt.Errorf("CIDR %q: use the plain IPv4 form", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("field %q is neither a direction (in, out, both) nor a CIDR", s)
	}
	if a.Zone() != "" || a.Is4In6() {
		return netip.Prefix{}, fmt.Errorf("address %q: zones and IPv4-mapped forms are not supported", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
