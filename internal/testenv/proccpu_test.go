package testenv

import (
	"os"
	"testing"
	"time"
)

// TestProcessCPU: the test's own CPU time grows while it spins. On a
// busy machine the spinning thread gets only part of a core, so it spins
// until the growth shows (or 20 s pass), not for a fixed time.
func TestProcessCPU(t *testing.T) {
	before, err := ProcessCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var d time.Duration
	for deadline := time.Now().Add(20 * time.Second); d < 100*time.Millisecond && time.Now().Before(deadline); {
		for spin := time.Now().Add(50 * time.Millisecond); time.Now().Before(spin); {
		}
		after, err := ProcessCPU(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		d = after - before
	}
	if d < 100*time.Millisecond {
		t.Errorf("spinning for 20 s added only %v of CPU time", d)
	}
	if _, err := ProcessCPU(-1); err == nil {
		t.Error("no error for pid -1")
	}
}
