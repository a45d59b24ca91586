package follow

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Zeek's ASCII writer renames a rotated log to <path>.<open time>.log,
// the time as %Y-%m-%d-%H-%M-%S (Log::default_rotation_date_format), in
// the log's own folder. Names sort in rotation order.
const stampRE = `\.[0-9]{4}-[0-9]{2}-[0-9]{2}-[0-9]{2}-[0-9]{2}-[0-9]{2}`

var anyRotated = regexp.MustCompile(stampRE + `\.[A-Za-z0-9]+$`)

// IsRotatedName reports whether a file name is a rotated Zeek log (or
// one of Zeek's .shadow files that go with leftover-log rotation): not
// a live log to follow on its own.
func IsRotatedName(name string) bool {
	return anyRotated.MatchString(name) || strings.HasPrefix(name, ".shadow.")
}

// rotatedPattern matches the rotated names of the live log at path:
// dns.2026-12-03-08-00-00.log for dns.log.
func rotatedPattern(path string) *regexp.Regexp {
	base := filepath.Base(path)
	ext := filepath.Ext(base)
	return regexp.MustCompile("^" + regexp.QuoteMeta(strings.TrimSuffix(base, ext)) + stampRE + regexp.QuoteMeta(ext) + "$")
}

// Rotated returns the rotated files of the live log at path, oldest
// first.
func Rotated(path string) ([]string, error) {
	dir := filepath.Dir(path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list rotated logs: %w", err)
	}
	re := rotatedPattern(path)
	var out []string
	for _, e := range entries {
		if e.Type().IsRegular() && re.MatchString(e.Name()) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	slices.Sort(out)
	return out, nil
}

// RemoveRotated deletes the rotated file of the live log at path that id
// names (same inode, same first bytes). It never deletes the live log.
// It returns the name removed, or "" when no such file is left.
func RemoveRotated(path string, id Identity) (string, error) {
	if id.IsZero() {
		return "", nil
	}
	names, err := Rotated(path)
	if err != nil {
		return "", err
	}
	for _, name := range names {
		fi, err := os.Stat(name)
		if err != nil || !identityOf(fi).SameFile(id) {
			continue
		}
		file, err := os.Open(name)
		if err != nil {
			return "", fmt.Errorf("open rotated log: %w", err)
		}
		same := id.FPLen == 0 || matches(file, id)
		file.Close()
		if !same {
			return "", nil // the inode was reused by another file
		}
		if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("delete rotated log: %w", err)
		}
		return name, nil
	}
	return "", nil
}

// RotatedBefore returns the rotated files of the live log at path that
// were rotated before the file id names: all of them when id is the live
// log, none when id names no file there. Read in order, they are behind
// a position in id's file.
func RotatedBefore(path string, id Identity) ([]string, error) {
	if id.IsZero() {
		return nil, nil
	}
	names, err := Rotated(path)
	if err != nil {
		return nil, err
	}
	if isFile(path, id) {
		return names, nil
	}
	for i, name := range names {
		if isFile(name, id) {
			return names[:i], nil
		}
	}
	return nil, nil
}

// isFile reports whether name is the file id names (inode and first
// bytes).
func isFile(name string, id Identity) bool {
	fi, err := os.Stat(name)
	if err != nil || !identityOf(fi).SameFile(id) {
		return false
	}
	file, err := os.Open(name)
	if err != nil {
		return false
	}
	defer file.Close()
	return matches(file, id)
}
