package testenv

import (
	"os"
	"testing"
	"time"
)

// TestProcessCPU: the test's own CPU time grows while it spins.
func TestProcessCPU(t *testing.T) {
	before, err := ProcessCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline); {
	}
	after, err := ProcessCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if d := after - before; d < 100*time.Millisecond {
		t.Errorf("spinning 300ms added %v of CPU time", d)
	}
	if _, err := ProcessCPU(-1); err == nil {
		t.Error("no error for pid -1")
	}
}
