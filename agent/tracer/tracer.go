// Package tracer attaches the capture classifier to network interfaces,
// on ingress and egress, through TCX links where the kernel has them
// (Linux 6.6+) or legacy TC (a clsact qdisc and cls_bpf filters)
// otherwise, and removes everything it added when asked.
package tracer

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/pano-observability/pano/agent/bpf"
)

// Mode selects how programs are attached.
type Mode string

// Attach modes.
const (
	ModeAuto Mode = "auto" // TCX when the kernel has it, else legacy TC
	ModeTCX  Mode = "tcx"
	ModeTC   Mode = "tc"
)

// ParseMode checks an ATTACH_MODE value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeAuto, ModeTCX, ModeTC:
		return m, nil
	}
	return "", fmt.Errorf("attach mode %q: want auto, tcx or tc", s)
}

// The legacy TC filters this package adds are recognised by priority,
// handle and name, so that detaching never touches anyone else's.
const (
	tcPriority = 1
	tcHandle   = 0x9a0c
	tcName     = "pano_capture"
)

// Interface is an attached interface.
type Interface struct {
	Index int
	Name  string
	Mode  Mode // tcx or tc
}

type attachment struct {
	Interface
	links       []link.Link // tcx
	filters     []*netlink.BpfFilter
	addedQdisc  bool
	closeOnce   sync.Once
	detachError error
}

// Tracer attaches one ingress and one egress program.
type Tracer struct {
	mode            Mode
	ingress, egress *ebpf.Program
	log             *slog.Logger

	mu       sync.Mutex
	attached map[int]*attachment
	tcxOK    *bool // learned on the first attach in auto mode
}

// New returns a Tracer for the given programs.
func New(mode Mode, ingress, egress *ebpf.Program, log *slog.Logger) *Tracer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Tracer{mode: mode, ingress: ingress, egress: egress, log: log, attached: map[int]*attachment{}}
}

// Attach attaches both programs to the interface. Attaching an interface
// that is already attached does nothing.
func (t *Tracer) Attach(index int, name string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.attached[index]; ok {
		return nil
	}
	var a *attachment
	var err error
	switch {
	case t.mode == ModeTC || (t.mode == ModeAuto && t.tcxOK != nil && !*t.tcxOK):
		a, err = t.attachTC(index, name)
	default:
		a, err = t.attachTCX(index, name)
		if t.mode == ModeAuto && errors.Is(err, ebpf.ErrNotSupported) {
			no := false
			t.tcxOK = &no
			t.log.Info("kernel has no TCX (Linux 6.6+): using legacy TC (clsact qdisc and cls_bpf filters)", "interface", name)
			a, err = t.attachTC(index, name)
		} else if err == nil && t.tcxOK == nil {
			yes := true
			t.tcxOK = &yes
		}
		if t.mode == ModeTCX && errors.Is(err, ebpf.ErrNotSupported) {
			err = fmt.Errorf("%w: this kernel has no TCX (needs Linux 6.6+); set ATTACH_MODE=tc or auto to use legacy TC", err)
		}
	}
	if err != nil {
		return attachError(name, err)
	}
	t.attached[index] = a
	t.log.Info("attached", "interface", name, "index", index, "mode", a.Mode)
	return nil
}

func attachError(name string, err error) error {
	switch {
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("attach to %s: %w: %s", name, err, bpf.CapabilityHint)
	case errors.Is(err, unix.ENODEV):
		return fmt.Errorf("attach to %s: %w: the interface is gone", name, err)
	}
	return fmt.Errorf("attach to %s: %w", name, err)
}

func (t *Tracer) attachTCX(index int, name string) (*attachment, error) {
	a := &attachment{Interface: Interface{Index: index, Name: name, Mode: ModeTCX}}
	for _, h := range []struct {
		prog   *ebpf.Program
		attach ebpf.AttachType
	}{{t.ingress, ebpf.AttachTCXIngress}, {t.egress, ebpf.AttachTCXEgress}} {
		// First in the chain, so that no other program can drop a
		// packet before it is seen.
		l, err := link.AttachTCX(link.TCXOptions{Interface: index, Program: h.prog, Attach: h.attach, Anchor: link.Head()})
		if err != nil {
			a.close()
			return nil, fmt.Errorf("tcx %s: %w", h.attach, err)
		}
		a.links = append(a.links, l)
	}
	return a, nil
}

func (t *Tracer) attachTC(index int, name string) (*attachment, error) {
	a := &attachment{Interface: Interface{Index: index, Name: name, Mode: ModeTC}}
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: index, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	switch err := netlink.QdiscAdd(qdisc); {
	case err == nil:
		a.addedQdisc = true
	case errors.Is(err, unix.EEXIST):
		// Someone else's clsact: use it, leave it in place on detach.
	default:
		return nil, fmt.Errorf("add clsact qdisc: %w", err)
	}
	for _, h := range []struct {
		prog   *ebpf.Program
		parent uint32
		dir    string
	}{{t.ingress, netlink.HANDLE_MIN_INGRESS, "ingress"}, {t.egress, netlink.HANDLE_MIN_EGRESS, "egress"}} {
		f := &netlink.BpfFilter{
			FilterAttrs: netlink.FilterAttrs{
				LinkIndex: index,
				Parent:    h.parent,
				Handle:    tcHandle,
				Priority:  tcPriority,
				Protocol:  unix.ETH_P_ALL,
			},
			Fd:           h.prog.FD(),
			Name:         tcName,
			DirectAction: true,
		}
		// Replace, not add: a filter left by an agent that was killed
		// (legacy TC filters outlive their process) is taken over.
		if err := netlink.FilterReplace(f); err != nil {
			a.close()
			return nil, fmt.Errorf("add tc %s filter: %w", h.dir, err)
		}
		a.filters = append(a.filters, f)
	}
	return a, nil
}

// close removes what the attachment added. An interface that is already
// gone took everything with it: that is not an error.
func (a *attachment) close() error {
	a.closeOnce.Do(func() {
		var errs []error
		for _, l := range a.links {
			if err := l.Close(); err != nil && !gone(err) {
				errs = append(errs, fmt.Errorf("close tcx link: %w", err))
			}
		}
		for _, f := range a.filters {
			if err := netlink.FilterDel(f); err != nil && !gone(err) {
				errs = append(errs, fmt.Errorf("delete tc filter: %w", err))
			}
		}
		if a.addedQdisc {
			q := &netlink.GenericQdisc{
				QdiscAttrs: netlink.QdiscAttrs{LinkIndex: a.Index, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
				QdiscType:  "clsact",
			}
			if err := netlink.QdiscDel(q); err != nil && !gone(err) {
				errs = append(errs, fmt.Errorf("delete clsact qdisc: %w", err))
			}
		}
		a.detachError = errors.Join(errs...)
	})
	return a.detachError
}

func gone(err error) bool {
	return errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT)
}

// Detach removes the programs from the interface, if attached.
func (t *Tracer) Detach(index int) error {
	t.mu.Lock()
	a, ok := t.attached[index]
	delete(t.attached, index)
	t.mu.Unlock()
	if !ok {
		return nil
	}
	err := a.close()
	if err != nil {
		return fmt.Errorf("detach from %s: %w", a.Name, err)
	}
	t.log.Info("detached", "interface", a.Name, "index", index)
	return nil
}

// Attached lists the attached interfaces, by index.
func (t *Tracer) Attached() []Interface {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Interface, 0, len(t.attached))
	for _, a := range t.attached {
		out = append(out, a.Interface)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}

// Close detaches from every interface.
func (t *Tracer) Close() error {
	var errs []error
	for _, i := range t.Attached() {
		if err := t.Detach(i.Index); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
