package testenv

import (
	"compress/gzip"
	"io"
	"os"
	"strings"
	"testing"
)

// OpenTestdata opens path for reading until the test ends, decompressing
// it when its name ends in .gz (the repository keeps large captures and
// logs gzipped).
func OpenTestdata(t testing.TB, path string) io.Reader {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if !strings.HasSuffix(path, ".gz") {
		return f
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return zr
}
