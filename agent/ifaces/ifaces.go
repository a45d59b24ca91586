// Package ifaces decides which network interfaces are captured and
// follows them as they come and go (containers, veths), through a
// netlink link subscription.
package ifaces

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Selector picks interfaces by name. Patterns are exact names or shell
// globs ("veth*", "eth[01]").
type Selector struct {
	Include []string // empty: every interface
	Exclude []string
}

// Matches reports whether the interface name is selected.
func (s Selector) Matches(name string) bool {
	if matchAny(s.Exclude, name) {
		return false
	}
	return len(s.Include) == 0 || matchAny(s.Include, name)
}

func matchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, err := path.Match(p, name); err == nil && ok {
			return true
		}
	}
	return false
}

// Validate checks the patterns and that every plain name in Include
// exists among existing, so that a typo fails at start and does not
// silently capture nothing.
func (s Selector) Validate(existing []string) error {
	for _, p := range append(slices.Clone(s.Include), s.Exclude...) {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("interface pattern %q: %w", p, err)
		}
	}
	for _, p := range s.Include {
		if isGlob(p) || slices.Contains(existing, p) {
			continue
		}
		shown := existing
		if len(shown) > 20 {
			shown = append(slices.Clone(shown[:20]), "...")
		}
		return fmt.Errorf("unknown interface %q (existing: %s): fix INTERFACES, or use a pattern such as %q to wait for interfaces that appear later",
			p, strings.Join(shown, ", "), p+"*")
	}
	return nil
}

func isGlob(p string) bool { return strings.ContainsAny(p, `*?[\`) }

// Event reports an interface to attach to or detach from.
type Event struct {
	Index int
	Name  string
	Added bool // false: removed, renamed out of the selection, or moved away
}

// Existing lists the names of the interfaces in this network namespace.
func Existing() ([]string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list network interfaces: %w", err)
	}
	names := make([]string, 0, len(links))
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	return names, nil
}

// capturable reports whether the classifier can parse the link's frames:
// it expects an Ethernet header.
func capturable(l netlink.Link) bool {
	a := l.Attrs()
	return a.EncapType == "ether" || a.EncapType == ""
}

// Watch sends an Added event for every selected interface that exists or
// appears, and a removal when one goes away or stops being selected. It
// returns when ctx is done, or when the netlink subscription ends (a
// receive error). Errors the subscription survives (a message from a
// user-space sender, an undecodable message) are logged, not fatal: any
// process with CAP_NET_ADMIN can send to the link multicast group, and
// one stray message must not stop the capture.
func Watch(ctx context.Context, sel Selector, log *slog.Logger, events chan<- Event) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	// The library calls back from its receive goroutine, then goes on
	// reading, except after a receive error, when it closes updates.
	var lastErr atomic.Pointer[error]
	err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		ListExisting: true,
		ErrorCallback: func(err error) {
			if ctx.Err() != nil {
				return // the socket closing as Watch returns
			}
			lastErr.Store(&err)
			log.Warn("network interface subscription", "error", err)
		},
	})
	if err != nil {
		return fmt.Errorf("subscribe to network interface changes: %w", err)
	}

	current := map[int]string{} // selected, announced interfaces
	send := func(e Event) bool {
		select {
		case events <- e:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-updates:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				if e := lastErr.Load(); e != nil {
					return fmt.Errorf("network interface subscription closed: %w", *e)
				}
				return errors.New("network interface subscription closed")
			}
			a := u.Link.Attrs()
			idx, name := a.Index, a.Name
			want := u.Header.Type == unix.RTM_NEWLINK && sel.Matches(name) && capturable(u.Link)
			old, have := current[idx]
			switch {
			case want && !have:
				current[idx] = name
				if !send(Event{Index: idx, Name: name, Added: true}) {
					return nil
				}
			case !want && have:
				delete(current, idx)
				if !send(Event{Index: idx, Name: old, Added: false}) {
					return nil
				}
			case want && have && old != name:
				current[idx] = name // renamed, still selected
			case !have && u.Header.Type == unix.RTM_NEWLINK && sel.Matches(name) && !capturable(u.Link):
				log.Debug("interface has no Ethernet header: not captured", "interface", name, "encap", a.EncapType)
			}
		}
	}
}
