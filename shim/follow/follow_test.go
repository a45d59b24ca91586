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

// next reads one line within a second, passing over Opened markers.
func next(t *testing.T, f *Follower) Line {
	t.Helper()
	for {
		l := nextAny(t, f)
		if !l.Opened {
			return l
		}
	}
}

// nextAny reads one line or Opened marker.
func nextAny(t *testing.T, f *Follower) Line {
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

// zeekRotate renames path as Zeek's ASCII writer does (the open time in
// the name) and starts a new file holding content.
func zeekRotate(t *testing.T, path string, open time.Time, content string) string {
	t.Helper()
	rotated := strings.TrimSuffix(path, ".log") + "." + open.UTC().Format("2006-01-02-15-04-05") + ".log"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	appendTo(t, path, content)
	return rotated
}

// TestFollowSeveralRotations: rotations while the reader was away are
// read oldest first, each to its end, then the live log; each move is
// announced by an Opened marker.
func TestFollowSeveralRotations(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dns.log")
	appendTo(t, path, "a1\na2\n")
	f := New(opts(path), Position{})
	l := next(t, f)
	f.Close()

	t0 := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	zeekRotate(t, path, t0, "b1\n")
	zeekRotate(t, path, t0.Add(time.Hour), "c1\nc2\n")
	// Another log's rotated file and a shadow file in the same folder
	// are not this log's.
	appendTo(t, filepath.Join(dir, "dns_x.2026-12-03-08-30-00.log"), "other\n")
	appendTo(t, filepath.Join(dir, ".shadow.dns.log"), "x\n")
	zeekRotate(t, path, t0.Add(2*time.Hour), "d1\n")

	g := New(opts(path), Position{File: l.File, Offset: l.End})
	defer g.Close()
	var got []string
	for len(got) < 8 {
		m := nextAny(t, g)
		if m.Opened {
			got = append(got, "|")
			continue
		}
		got = append(got, string(m.Data))
	}
	if s := strings.Join(got, " "); s != "a2 | b1 | c1 c2 | d1" {
		t.Fatalf("got %s", s)
	}
	expectNone(t, g)

	// A fresh start (no saved position) begins with the oldest rotated
	// file left.
	h := New(opts(path), Position{})
	defer h.Close()
	if m := next(t, h); string(m.Data) != "a1" {
		t.Fatalf("fresh start read %q first, want a1", m.Data)
	}
}

// TestRemoveRotated deletes only a rotated file with the same identity.
func TestRemoveRotated(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dns.log")
	appendTo(t, path, "a1\n")
	f := New(opts(path), Position{})
	l := next(t, f)
	f.Close()
	if name, err := RemoveRotated(path, l.File); err != nil || name != "" {
		t.Fatalf("removed the live log? %q %v", name, err)
	}
	rotated := zeekRotate(t, path, time.Now(), "b1\n")
	if name, err := RemoveRotated(path, l.File); err != nil || name != rotated {
		t.Fatalf("RemoveRotated = %q, %v; want %s", name, err, rotated)
	}
	if _, err := os.Stat(rotated); !os.IsNotExist(err) {
		t.Fatalf("%s still there: %v", rotated, err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"dns.2026-12-03-08-00-00.log": true, "dns.log": false, ".shadow.dns.log": true, "dns.log.1": false} {
		if IsRotatedName(name) != want {
			t.Errorf("IsRotatedName(%q) = %v", name, !want)
		}
	}
}

// TestFollowRenamedWithoutSuccessor: a rotated file with nothing after it
// yet is reported Renamed (final) until its successor appears.
func TestFollowRenamedWithoutSuccessor(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dns.log")
	appendTo(t, path, "a1\n")
	f := New(opts(path), Position{})
	defer f.Close()
	l := next(t, f)
	if f.Stat().Renamed {
		t.Fatal("live file reported renamed")
	}
	rotated := strings.TrimSuffix(path, ".log") + ".2026-12-03-08-00-00.log"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	expectNone(t, f)
	if s := f.Stat(); !s.Renamed || !s.File.SameFile(l.File) || s.Size != 3 {
		t.Fatalf("stat after rename: %+v", s)
	}
	appendTo(t, path, "b1\n")
	if m := next(t, f); string(m.Data) != "b1" || f.Stat().Renamed {
		t.Fatalf("after the successor: %q, %+v", m.Data, f.Stat())
	}
}
