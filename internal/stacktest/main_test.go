package stacktest

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMain removes the commands the tests built (they live outside any
// one test's temporary directory so that every test can reuse them).
func TestMain(m *testing.M) {
	code := m.Run()
	binCache.Range(func(_, v any) bool {
		os.RemoveAll(filepath.Dir(v.(string)))
		return true
	})
	os.Exit(code)
}
