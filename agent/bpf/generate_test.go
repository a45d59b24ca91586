package bpf

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pano-observability/pano/internal/testenv"
)

// TestGenerateReproducible regenerates the committed objects and Go
// bindings from capture.c, with this file's go:generate line, in a copy
// of the package in a temporary directory (so that no absolute path can
// leak into the output), and requires byte-identical results.
func TestGenerateReproducible(t *testing.T) {
	testenv.RequireProgram(t, "clang", "clang")
	testenv.RequireProgram(t, "llvm-strip", "llvm")
	root := testenv.RepoRoot(t)

	args := generateArgs(t)
	tool := filepath.Join(t.TempDir(), "bpf2go")
	build := exec.Command("go", "build", "-o", tool, "github.com/cilium/ebpf/cmd/bpf2go")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build bpf2go: %v\n%s", err, out)
	}

	dir := filepath.Join(t.TempDir(), "elsewhere", "bpf")
	copyTree(t, ".", dir, func(name string) bool {
		return strings.HasSuffix(name, ".c") || strings.HasSuffix(name, ".h")
	})
	cmd := exec.Command(tool, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOPACKAGE=bpf")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bpf2go %s: %v\n%s", strings.Join(args, " "), err, out)
	}

	generated, _ := filepath.Glob(filepath.Join(dir, "capture_bpfe?.*"))
	if len(generated) != 4 {
		t.Fatalf("bpf2go wrote %v, want the .o and .go of bpfel and bpfeb", generated)
	}
	for _, g := range generated {
		name := filepath.Base(g)
		want, err := os.ReadFile(name)
		if err != nil {
			t.Fatalf("committed %s: %v", name, err)
		}
		got, err := os.ReadFile(g)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: regenerated file differs from the committed one (%d vs %d bytes): run make generate and commit the result",
				name, len(got), len(want))
		}
	}
}

// generateArgs returns bpf2go's arguments from the go:generate line.
func generateArgs(t *testing.T) []string {
	f, err := os.Open("gen.go")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	const prefix = "//go:generate go tool bpf2go "
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			return strings.Fields(rest)
		}
	}
	t.Fatal("no go:generate line for bpf2go in gen.go")
	return nil
}

func copyTree(t *testing.T, src, dst string, keep func(string) bool) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dst, p)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !keep(d.Name()) {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}
