// Package filter parses the capture filter (PCA_FILTER) into rules that the
// in-kernel classifier evaluates.
//
// Syntax: a list of rules separated by ";". A rule is comma-separated
// fields, the first two positional, as in the original "udp,53":
//
//	PROTO[,PORT[,CIDR][,DIRECTION][,BUDGET]]
//
//	PROTO      udp | tcp | any
//	PORT       0-65535, or "any" (0 is "any"); matches source or destination
//	CIDR       an IPv4 or IPv6 prefix (198.18.0.0/15, fd00::/8) or a bare
//	           address; matches source or destination. Optional.
//	DIRECTION  in | ingress | out | egress | both (default both), relative to
//	           the captured interface. Optional.
//	BUDGET     TCP rules only, optional: how much payload of a connection is
//	           copied, so that Zeek gets the headers it parses and not the
//	           bulk it would skip. A size is bytes, or a number with the
//	           suffix k/KiB or m/MiB.
//	           budget=SIZE     each side's first SIZE bytes of payload per
//	                           turn: a turn starts when the side speaks after
//	                           the other did, or with an HTTP/1 request or
//	                           status line at the start of a segment. A
//	                           second HTTP/1 message in one turn means
//	                           pipelining: that connection is then copied
//	                           whole. A turn that starts with an HTTP/1
//	                           message also gets its whole header (to the
//	                           blank line), so budget=1 copies each HTTP
//	                           header and the first byte of its body: what
//	                           Zeek's http.log needs (Zeek steps over the
//	                           rest of a body once it has seen a byte of it).
//	           handshake=SIZE  each side's first SIZE bytes of payload of the
//	                           whole connection. For TLS: handshake=16KiB.
//	           SYN, FIN and RST are always copied, pure ACKs never (Zeek steps
//	           over what was not copied when the next request or the FIN
//	           acknowledges it); a segment that crosses the budget is copied
//	           up to it, its IP length rewritten to match.
//
// CIDR, DIRECTION and BUDGET may come in any order. A packet is captured when
// any rule matches. Examples: "udp,53", "udp,53;tcp,53",
// "udp,53,198.18.0.0/15,in", "any,any" (everything, including non-IP),
// "tcp,80,budget=4KiB;tcp,443,handshake=16KiB".
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

// BudgetMode says how a rule's payload budget is spent.
type BudgetMode uint8

// Values match the classifier's BUDGET_* constants.
const (
	NoBudget        BudgetMode = 0 // every byte is copied
	TurnBudget      BudgetMode = 1 // budget=: per side and turn (or HTTP/1 message)
	HandshakeBudget BudgetMode = 2 // handshake=: per side, once per connection
)

func (m BudgetMode) String() string {
	switch m {
	case TurnBudget:
		return "budget"
	case HandshakeBudget:
		return "handshake"
	}
	return "none"
}

// MaxBudget is the largest budget: past a megabyte a budget no longer
// saves much, and it keeps the kernel's sums far from overflowing.
const MaxBudget = 1 << 20

// Rule is one filter rule; zero fields match anything.
type Rule struct {
	Protocol  Protocol
	Port      uint16
	Prefix    netip.Prefix // invalid (zero) = any address
	Direction Direction
	// Budget is the payload bytes per side that BudgetMode allows; 0
	// with NoBudget.
	BudgetMode BudgetMode
	Budget     uint32
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
	if r.BudgetMode != NoBudget {
		b.WriteByte(',')
		b.WriteString(r.BudgetMode.String())
		b.WriteByte('=')
		b.WriteString(formatSize(r.Budget))
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
		if key, value, ok := strings.Cut(f, "="); ok {
			if err := r.setBudget(strings.ToLower(strings.TrimSpace(key)), strings.TrimSpace(value)); err != nil {
				return r, err
			}
			continue
		}
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

func (r *Rule) setBudget(key, value string) error {
	var mode BudgetMode
	switch key {
	case "budget":
		mode = TurnBudget
	case "handshake":
		mode = HandshakeBudget
	default:
		return fmt.Errorf("unknown option %q: want budget=SIZE or handshake=SIZE", key)
	}
	if r.BudgetMode != NoBudget {
		return fmt.Errorf("%s given after %s: a rule has one budget", key, r.BudgetMode)
	}
	if r.Protocol != TCP {
		return fmt.Errorf("%s=%s: a payload budget needs a tcp rule", key, value)
	}
	n, err := parseSize(value)
	if err == nil && n == 0 {
		// Zeek's HTTP analyzer steps over a gap in a body only once it
		// has seen a byte of that body; without one it stops parsing the
		// connection's replies.
		err = errors.New("at least 1 byte: Zeek needs the first byte of a body to step over the rest")
	}
	if err != nil {
		return fmt.Errorf("%s=%s: %w", key, value, err)
	}
	r.BudgetMode, r.Budget = mode, n
	return nil
}

// parseSize reads a byte count: digits, optionally followed by k, KiB,
// m or MiB (powers of 1024).
func parseSize(s string) (uint32, error) {
	digits := strings.TrimRightFunc(s, func(c rune) bool { return c < '0' || c > '9' })
	unit := uint64(1)
	switch strings.ToLower(s[len(digits):]) {
	case "":
	case "k", "kib":
		unit = 1 << 10
	case "m", "mib":
		unit = 1 << 20
	default:
		return 0, fmt.Errorf("unknown unit %q: want bytes, k/KiB or m/MiB", s[len(digits):])
	}
	n, err := strconv.ParseUint(digits, 10, 32)
	if err != nil || n*unit > MaxBudget {
		return 0, fmt.Errorf("want a size from 1 byte to 1MiB, like 4KiB")
	}
	return uint32(n * unit), nil
}

func formatSize(n uint32) string {
	switch {
	case n%(1<<20) == 0:
		return strconv.Itoa(int(n>>20)) + "MiB"
	case n%(1<<10) == 0:
		return strconv.Itoa(int(n>>10)) + "KiB"
	}
	return strconv.Itoa(int(n))
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
