package bpf

import (
	"testing"

	"github.com/cilium/ebpf/asm"
)

// TestHelpersExistOnLinux515 keeps the classifier loadable on the kernel
// the original demo ran on (5.15, legacy TC): every helper it calls must
// be one that kernel has, and it must call no kfunc. Its only atomic
// instruction is the add without fetch (XADD) that every kernel has: the
// others (exchange, fetch-and-add) need 5.12, load-acquire 6.15.
func TestHelpersExistOnLinux515(t *testing.T) {
	allowed := map[asm.BuiltinFunc]string{
		asm.FnMapLookupElem:     "3.19",
		asm.FnMapUpdateElem:     "3.19",
		asm.FnMapDeleteElem:     "3.19",
		asm.FnGetSmpProcessorId: "4.1",
		asm.FnSkbLoadBytes:      "4.5",
		asm.FnKtimeGetBootNs:    "5.8",
		asm.FnRingbufOutput:     "5.8",
		asm.FnRingbufQuery:      "5.8",
	}
	spec, err := LoadCapture()
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range spec.Programs {
		if p.SectionName != "tc" {
			t.Errorf("%s: section %q, want \"tc\" (legacy cls_bpf and TCX both take it)", name, p.SectionName)
		}
		used := map[asm.BuiltinFunc]bool{}
		for _, ins := range p.Instructions {
			if op := ins.OpCode.AtomicOp(); op != asm.InvalidAtomic && op != asm.AddAtomic {
				t.Errorf("%s: atomic %v: only XADD is in every kernel the agent supports", name, op)
			}
			switch {
			case ins.IsKfuncCall():
				t.Errorf("%s: calls a kfunc, which 5.15 cannot resolve", name)
			case ins.IsBuiltinCall():
				fn := asm.BuiltinFunc(ins.Constant)
				used[fn] = true
				if _, ok := allowed[fn]; !ok {
					t.Errorf("%s: calls %v, not on the list of helpers Linux 5.15 has", name, fn)
				}
			}
		}
		if !used[asm.FnRingbufOutput] || !used[asm.FnSkbLoadBytes] {
			t.Errorf("%s: helper list %v lacks the copy path", name, used)
		}
	}
}
