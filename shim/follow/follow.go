// Package follow reads a growing log file line by line, the way Zeek
// writes it: it waits for a file that does not exist yet, finishes a
// rotated (renamed) file before moving to its successor (the next rotated
// file, oldest first, then the live one), and starts over when the file
// is truncated or replaced.
package follow

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// fpMax is how many leading bytes identify a file's content.
const fpMax = 1024

// Identity names one file: device and inode, plus a hash of its first
// FPLen bytes that tells a truncated-and-rewritten or reused inode apart.
type Identity struct {
	Dev   uint64 `json:"dev"`
	Ino   uint64 `json:"ino"`
	FPLen int    `json:"fp_len"`
	FP    uint64 `json:"fp"`
}

// IsZero reports whether the identity is unset.
func (id Identity) IsZero() bool { return id.Dev == 0 && id.Ino == 0 }

// SameFile reports whether both name the same device and inode.
func (id Identity) SameFile(o Identity) bool { return id.Dev == o.Dev && id.Ino == o.Ino }

// Position is where reading resumes.
type Position struct {
	File   Identity
	Offset int64
}

// Line is one line of the file, without its '\n'.
type Line struct {
	Data []byte // valid until the next call to Next
	File Identity
	// End is the offset just past the line: reading resumes there.
	End int64
	// TooLong is set for a line longer than the maximum; Data is empty.
	TooLong bool
	// Reset is set on the first line read from a file (or from a file
	// after truncation) when reading did not resume a saved position:
	// per-file state such as a TSV header starts over.
	Reset bool
	// Opened carries no data: reading finished the file Prev and moved
	// to File, from offset End (0).
	Opened bool
	Prev   Identity
}

// Options configure a Follower.
type Options struct {
	Path         string
	PollInterval time.Duration // default 200ms
	MaxLineBytes int           // default 1 MiB
	Logger       *slog.Logger
}

// Follower reads the file at Path. It is not safe for concurrent use,
// except for Stat.
type Follower struct {
	opts  Options
	log   *slog.Logger
	start Position

	f     *os.File
	id    Identity
	off   int64 // file offset of buf[r]
	buf   []byte
	r, w  int
	skip  bool  // discarding the rest of a too-long line
	reset bool  // next line gets Reset
	size  int64 // last known size of the file
	// renamed: the file left Path and nothing follows it yet.
	renamed bool

	stat chan Stat
	// finished holds the files read to their end since New: rotated
	// away, they are not read again.
	finished map[[2]uint64]bool
}

// Stat is a snapshot for metrics.
type Stat struct {
	File Identity
	Size int64 // size of the file being read
	Read int64 // offset of the next unread byte
	// Renamed: the file is no longer at Path (Zeek closed and rotated
	// it) and has no successor yet; Size is final.
	Renamed bool
}

// New returns a Follower that resumes at start (zero: the beginning of
// the file at opts.Path).
func New(opts Options, start Position) *Follower {
	if opts.PollInterval <= 0 {
		opts.PollInterval = 200 * time.Millisecond
	}
	if opts.MaxLineBytes <= 0 {
		opts.MaxLineBytes = 1 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	f := &Follower{opts: opts, log: opts.Logger, start: start,
		buf: make([]byte, 256<<10), stat: make(chan Stat, 1), finished: map[[2]uint64]bool{}}
	f.stat <- Stat{}
	return f
}

// Close releases the open file.
func (f *Follower) Close() error {
	if f.f != nil {
		err := f.f.Close()
		f.f = nil
		return err
	}
	return nil
}

// Stat returns the latest snapshot; safe to call from any goroutine.
func (f *Follower) Stat() Stat {
	s := <-f.stat
	f.stat <- s
	return s
}

func (f *Follower) publish(size int64) {
	f.size = size
	<-f.stat
	f.stat <- Stat{File: f.id, Size: size, Read: f.off + int64(f.r), Renamed: f.renamed}
}

// Next returns the next complete line, waiting for one as long as ctx
// allows.
func (f *Follower) Next(ctx context.Context) (Line, error) {
	for {
		if l, ok := f.lineFromBuffer(); ok {
			return l, nil
		}
		if f.f == nil {
			if err := f.openInitial(); err != nil {
				return Line{}, err
			}
			if f.f == nil {
				if err := sleep(ctx, f.opts.PollInterval); err != nil {
					return Line{}, err
				}
				continue
			}
		}
		if f.verify() {
			continue
		}
		n, err := f.fill()
		if err != nil {
			return Line{}, err
		}
		if n > 0 {
			continue
		}
		// At the end of the file: has it been truncated, replaced or rotated?
		switched, last, err := f.checkFile()
		if err != nil {
			return Line{}, err
		}
		if last != nil {
			return *last, nil
		}
		if switched {
			continue
		}
		if err := sleep(ctx, f.opts.PollInterval); err != nil {
			return Line{}, err
		}
	}
}

func (f *Follower) lineFromBuffer() (Line, bool) {
	data := f.buf[f.r:f.w]
	i := bytes.IndexByte(data, '\n')
	if i < 0 {
		if len(data) > f.opts.MaxLineBytes {
			// Too long: drop what is buffered, keep dropping to '\n'.
			f.skip = true
			f.off += int64(f.w)
			f.r, f.w = 0, 0
		}
		return Line{}, false
	}
	l := Line{Data: data[:i], File: f.id, End: f.off + int64(f.r+i+1), Reset: f.reset}
	f.r += i + 1
	if f.skip || i > f.opts.MaxLineBytes {
		f.skip = false
		l.Data, l.TooLong = nil, true
	}
	f.reset = false
	return l, true
}

// fill reads more of the current file into the buffer.
func (f *Follower) fill() (int, error) {
	if f.r > 0 {
		copy(f.buf, f.buf[f.r:f.w])
		f.off += int64(f.r)
		f.w -= f.r
		f.r = 0
	}
	if f.w == len(f.buf) {
		if len(f.buf) < f.opts.MaxLineBytes+1 {
			nb := make([]byte, min(2*len(f.buf), f.opts.MaxLineBytes+1))
			copy(nb, f.buf[:f.w])
			f.buf = nb
		} else {
			return 0, nil // a too-long line: lineFromBuffer drops it
		}
	}
	n, err := f.f.ReadAt(f.buf[f.w:], f.off+int64(f.w))
	f.w += n
	if err != nil && !errors.Is(err, io.EOF) {
		return n, fmt.Errorf("read %s: %w", f.opts.Path, err)
	}
	if n > 0 {
		if f.id.FPLen < fpMax {
			f.refreshFP()
		}
		f.publish(max(f.size, f.off+int64(f.w)))
	}
	return n, nil
}

// verify checks, before each read, that the file still starts with the
// fingerprinted bytes; if not, it was truncated and rewritten (or
// replaced in place) and reading starts over. It reports whether it
// restarted. One pread of at most 1 KiB per read is cheap next to the
// read itself.
func (f *Follower) verify() bool {
	if f.id.FPLen == 0 {
		return false
	}
	if matches(f.f, f.id) {
		return false
	}
	fi, err := f.f.Stat()
	if err != nil {
		return false
	}
	f.log.Warn("log rewritten; reading it from the beginning", "offset", f.off+int64(f.w))
	f.setFile(f.f, identityOf(fi), 0, true)
	return true
}

// refreshFP extends the content fingerprint while the file is shorter
// than fpMax, as long as the bytes already fingerprinted are unchanged.
func (f *Follower) refreshFP() {
	if f.id.FPLen > 0 && !matches(f.f, f.id) {
		return // rewritten: verify or checkFile starts over
	}
	id, err := fingerprint(f.f, f.id, fpMax)
	if err == nil {
		f.id = id
	}
}

// fingerprint hashes the first min(size, limit) bytes of file.
func fingerprint(file *os.File, id Identity, limit int) (Identity, error) {
	b := make([]byte, limit)
	n, err := file.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return id, err
	}
	h := fnv.New64a()
	h.Write(b[:n])
	id.FPLen, id.FP = n, h.Sum64()
	return id, nil
}

// matches reports whether file still starts with the bytes id hashed.
func matches(file *os.File, id Identity) bool {
	got, err := fingerprint(file, id, id.FPLen)
	return err == nil && got.FPLen == id.FPLen && got.FP == id.FP
}

func identityOf(fi os.FileInfo) Identity {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return Identity{}
	}
	return Identity{Dev: uint64(st.Dev), Ino: uint64(st.Ino)}
}

// openInitial opens the file to start with: the saved one (at its path
// or, if rotated, under another name in the same directory), else the
// file at Path from its beginning.
func (f *Follower) openInitial() error {
	if !f.start.File.IsZero() {
		saved := f.start
		f.start = Position{}
		if file, ok := f.findSaved(saved.File); ok {
			fi, err := file.Stat()
			if err == nil && fi.Size() >= saved.Offset {
				f.setFile(file, saved.File, saved.Offset, false)
				f.log.Info("resuming", "file", file.Name(), "offset", saved.Offset)
				return nil
			}
			file.Close()
			f.log.Warn("saved file is shorter than the saved offset; reading from its beginning", "file", file.Name())
		} else {
			f.log.Warn("saved file not found (rotated away and deleted, or replaced); reading the oldest rotated file or the log from its beginning")
		}
	}
	// Rotated files not yet deleted come first: the shim deletes the
	// ones it finished, so those left are unread.
	next, err := f.successor(Identity{})
	if err != nil || next == nil {
		return err
	}
	if next.Name() != f.opts.Path {
		f.log.Info("reading rotated file first", "file", next.Name())
	}
	fi, err := next.Stat()
	if err != nil {
		next.Close()
		return fmt.Errorf("stat log: %w", err)
	}
	f.setFile(next, identityOf(fi), 0, true)
	return nil
}

// successor opens the file to read after cur (zero: the first one): the
// rotated file after cur's rotated name, else the oldest rotated file
// not finished yet, else the live log. It returns nil when there is
// none yet.
func (f *Follower) successor(cur Identity) (*os.File, error) {
	rotated, err := Rotated(f.opts.Path)
	if err != nil {
		return nil, err
	}
	cands := rotated
	present := map[[2]uint64]bool{}
	for i, name := range rotated {
		fi, err := os.Stat(name)
		if err != nil {
			continue
		}
		id := identityOf(fi)
		present[[2]uint64{id.Dev, id.Ino}] = true
		if !cur.IsZero() && id.SameFile(cur) && len(cands) == len(rotated) {
			cands = rotated[i+1:]
		}
	}
	// A finished file no longer among the rotated ones was deleted: its
	// inode may come back as a new file.
	for k := range f.finished {
		if !present[k] {
			delete(f.finished, k)
		}
	}
	for _, name := range append(cands, f.opts.Path) {
		file, err := os.Open(name)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // deleted meanwhile
			}
			return nil, fmt.Errorf("open log: %w", err)
		}
		fi, err := file.Stat()
		if err != nil {
			file.Close()
			return nil, fmt.Errorf("stat log: %w", err)
		}
		id := identityOf(fi)
		if id.SameFile(cur) || f.finished[[2]uint64{id.Dev, id.Ino}] {
			file.Close()
			continue
		}
		return file, nil
	}
	return nil, nil
}

// findSaved looks for the file id names: at Path, or renamed within its
// directory.
func (f *Follower) findSaved(id Identity) (*os.File, bool) {
	try := func(p string) (*os.File, bool) {
		fi, err := os.Stat(p)
		if err != nil || !identityOf(fi).SameFile(id) {
			return nil, false
		}
		file, err := os.Open(p)
		if err != nil {
			return nil, false
		}
		if !matches(file, id) {
			file.Close()
			return nil, false
		}
		return file, true
	}
	if file, ok := try(f.opts.Path); ok {
		return file, true
	}
	dir := filepath.Dir(f.opts.Path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, false
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if file, ok := try(filepath.Join(dir, e.Name())); ok {
			return file, true
		}
	}
	return nil, false
}

func (f *Follower) setFile(file *os.File, id Identity, off int64, reset bool) {
	if f.f != nil && f.f != file {
		f.f.Close()
	}
	f.f, f.id, f.off, f.renamed = file, id, off, false
	f.r, f.w, f.skip, f.reset = 0, 0, false, reset
	if id.FPLen == 0 {
		f.refreshFP()
	}
	f.publish(off)
}

// checkFile runs at the end of the current file. It returns switched when
// reading moves to another file or restarts this one, and last when the
// old file ended with a line lacking its '\n'.
func (f *Follower) checkFile() (switched bool, last *Line, err error) {
	fi, err := f.f.Stat()
	if err != nil {
		return false, nil, fmt.Errorf("stat log: %w", err)
	}
	f.publish(fi.Size())
	end := f.off + int64(f.w)
	if fi.Size() < end || (f.id.FPLen > 0 && !matches(f.f, f.id)) {
		f.log.Warn("log truncated or rewritten; reading it from the beginning", "offset", end, "size", fi.Size())
		id := identityOf(fi)
		f.setFile(f.f, id, 0, true)
		return true, nil, nil
	}
	pfi, err := os.Stat(f.opts.Path)
	if err == nil && identityOf(pfi).SameFile(f.id) {
		return false, nil, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, nil, fmt.Errorf("stat log: %w", err)
	}
	// The file was renamed or removed. Zeek closes it before opening the
	// next one; read once more to be sure nothing was appended meanwhile.
	if n, err := f.fill(); err != nil || n > 0 {
		return n > 0, nil, err
	}
	if f.w > f.r {
		// A last line without '\n': hand it out before moving on.
		l := Line{Data: f.buf[f.r:f.w], File: f.id, End: f.off + int64(f.w), Reset: f.reset}
		if f.skip || len(l.Data) > f.opts.MaxLineBytes {
			l.Data, l.TooLong = nil, true
		}
		f.reset, f.skip = false, false
		f.r = f.w
		return false, &l, nil
	}
	file, err := f.successor(f.id)
	if err != nil || file == nil {
		// No successor yet: keep watching the old file, now final.
		if err == nil && !f.renamed {
			f.renamed = true
			f.publish(f.size)
		}
		return false, nil, err
	}
	nfi, err := file.Stat()
	if err != nil {
		file.Close()
		return false, nil, fmt.Errorf("stat log: %w", err)
	}
	prev := f.id
	f.finished[[2]uint64{prev.Dev, prev.Ino}] = true
	f.log.Info("log rotated; reading its successor", "previous_size", end, "next", file.Name())
	f.setFile(file, identityOf(nfi), 0, true)
	return true, &Line{File: f.id, Opened: true, Prev: prev}, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
