package follow

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func opts(path string) Options {
	return Options{Path: path, PollInterval: 10 * time.Millisecond, MaxLineBytes: 64}
}

func appendTo(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// next reads one line within a second.
func next(t *testing.T, f *Follower) Line {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	l, err := f.Next(ctx)
	if err != nil {
		t.Fatalf("next: %v", err)
	}
	l.Data = append([]byte(nil), l.Data...)
	return l
}

func expectNone(t *testing.T, f *Follower) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if l, err := f.Next(ctx); err == nil {
		t.Fatalf("unexpected line %q", l.Data)
	}
}

func TestFollowNotYetExistingAndGrowing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dns.log")
	f := New(opts(path), Position{})
	defer f.Close()
	expectNone(t, f)
	appendTo(t, path, "a\nb")
	if l := next(t, f); string(l.Data) != "a" || l.End != 2 || !l.Reset {
		t.Fatalf("got %+v", l)
	}
	expectNone(t, f) // "b" has no newline yet
	appendTo(t, path, "c\n")
	if l := next(t, f); string(l.Data) != "bc" || l.End != 5 || l.Reset {
		t.Fatalf("got %+v", l)
	}
}

func TestFollowRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dns.log")
	appendTo(t, path, "1\n2\n")
	f := New(opts(path), Position{})
	defer f.Close()
	first := next(t, f)
	next(t, f)
	// Rename, write more to the renamed file (a writer still holding
	// it), then create the successor.
	if err := os.Rename(path, filepath.Join(dir, "dns.log.1")); err != nil {
		t.Fatal(err)
	}
	appendTo(t, filepath.Join(dir, "dns.log.1"), "3\n4")
	appendTo(t, path, "new1\n")
	var got []string
	for i := 0; i < 3; i++ {
		l := next(t, f)
		got = append(got, fmt.Sprintf("%s@%d/%v", l.Data, l.End, l.File.SameFile(first.File)))
	}
	want := []string{"3@6/true", "4@7/true", "new1@5/false"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("got %v want %v", got, want)
	}
}

func TestFollowTruncation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dns.log")
	appendTo(t, path, "aaaa\nbbbb\n")
	f := New(opts(path), Position{})
	defer f.Close()
	next(t, f)
	next(t, f)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendTo(t, path, "c\n")
	if l := next(t, f); string(l.Data) != "c" || l.End != 2 || !l.Reset {
		t.Fatalf("got %+v", l)
	}
}

// TestFollowRewrittenLonger: truncated and rewritten past the old offset
// before the follower looks again; the content check notices.
func TestFollowRewrittenLonger(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dns.log")
	appendTo(t, path, "first-1\n")
	f := New(opts(path), Position{})
	defer f.Close()
	next(t, f)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendTo(t, path, "second-1\nsecond-2\n")
	if l := next(t, f); string(l.Data) != "second-1" || !l.Reset {
		t.Fatalf("got %q reset=%v", l.Data, l.Reset)
	}
	if l := next(t, f); string(l.Data) != "second-2" {
		t.Fatalf("got %q", l.Data)
	}
}

func TestFollowTooLong(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dns.log")
	long := strings.Repeat("x", 1000)
	appendTo(t, path, "ok\n"+long+"\nafter\n")
	f := New(opts(path), Position{})
	defer f.Close()
	next(t, f)
	if l := next(t, f); !l.TooLong || len(l.Data) != 0 || l.End != int64(3+len(long)+1) {
		t.Fatalf("got %+v", l)
	}
	if l := next(t, f); string(l.Data) != "after" {
		t.Fatalf("got %q", l.Data)
	}
}

func TestFollowResume(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dns.log")
	appendTo(t, path, "1\n2\n3\n")
	f := New(opts(path), Position{})
	l := next(t, f)
	f.Close()

	// Same file: resumes after line 1.
	g := New(opts(path), Position{File: l.File, Offset: l.End})
	if m := next(t, g); string(m.Data) != "2" || m.Reset {
		t.Fatalf("got %+v", m)
	}
	g.Close()

	// Rotated meanwhile: finishes the renamed file, then the new one.
	if err := os.Rename(path, filepath.Join(dir, "dns.old.log")); err != nil {
		t.Fatal(err)
	}
	appendTo(t, path, "n1\n")
	h := New(opts(path), Position{File: l.File, Offset: l.End})
	defer h.Close()
	var got []string
	for i := 0; i < 3; i++ {
		got = append(got, string(next(t, h).Data))
	}
	if strings.Join(got, ",") != "2,3,n1" {
		t.Fatalf("got %v", got)
	}
}

// TestFollowResumeReplaced: the saved inode now holds other content (the
// file was deleted and the inode reused, or rewritten): start over.
func TestFollowResumeReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dns.log")
	appendTo(t, path, "old-1\nold-2\n")
	f := New(opts(path), Position{})
	l := next(t, f)
	f.Close()
	if err := os.WriteFile(path, []byte("new-1\nnew-2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := New(opts(path), Position{File: l.File, Offset: l.End})
	defer g.Close()
	if m := next(t, g); string(m.Data) != "new-1" || !m.Reset {
		t.Fatalf("got %q", m.Data)
	}
}
