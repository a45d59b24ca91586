// Package position keeps, per followed log, the point up to which every
// line is known to be in Kafka, in a small JSON file written atomically.
package position

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/pano-observability/pano/shim/follow"
)

// State is what survives a restart for one log path.
type State struct {
	Path   string          `json:"path"`
	Topic  string          `json:"topic"`
	File   follow.Identity `json:"file"`
	Offset int64           `json:"offset"`
	// Header holds the TSV header lines in effect at Offset, so that a
	// restart in the middle of a TSV file knows its columns.
	Header     []string `json:"tsv_header,omitempty"`
	HeaderHash string   `json:"tsv_header_sha256,omitempty"`
	// Partitions: for each partition of Topic, an offset before which
	// no record after Offset can be. After a crash, reading the topic from
	// there finds the records sent but not yet saved here.
	Partitions map[int32]int64 `json:"partitions"`
	// PartitionCount is the number of partitions the lines after Offset
	// are spread over (0 in states saved before it was kept: the topic's
	// count is taken).
	PartitionCount int `json:"partition_count,omitempty"`
	// Truncations counts how often File was truncated and read again
	// from its start: it is part of the lines' origin (kafka.SourceID).
	Truncations int `json:"truncations,omitempty"`
}

// Store is a directory of state files.
type Store struct{ dir string }

// Open creates dir if needed.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	return &Store{dir: dir}, nil
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func (s *Store) file(path string) string {
	h := fnv.New64a()
	h.Write([]byte(path))
	base := unsafeChars.ReplaceAllString(strings.TrimPrefix(path, "/"), "_")
	if len(base) > 80 {
		base = base[len(base)-80:]
	}
	return filepath.Join(s.dir, fmt.Sprintf("%s.%016x.json", base, h.Sum64()))
}

// HashHeader returns the checksum stored with the header lines.
func HashHeader(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	h := sha256.New()
	for _, l := range lines {
		h.Write([]byte(l))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Load returns the saved state of path; ok is false when there is none.
func (s *Store) Load(path string) (st State, ok bool, err error) {
	b, err := os.ReadFile(s.file(path))
	if errors.Is(err, os.ErrNotExist) {
		return State{}, false, nil
	}
	if err != nil {
		return State{}, false, fmt.Errorf("read position: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return State{}, false, fmt.Errorf("position file %s: %w", s.file(path), err)
	}
	if st.Path != path {
		return State{}, false, fmt.Errorf("position file %s is for %q, not %q", s.file(path), st.Path, path)
	}
	if HashHeader(st.Header) != st.HeaderHash {
		return State{}, false, fmt.Errorf("position file %s: TSV header checksum mismatch", s.file(path))
	}
	if st.Partitions == nil {
		st.Partitions = map[int32]int64{}
	}
	return st, true, nil
}

// Save writes st atomically: a crash leaves the old or the new state.
func (s *Store) Save(st State) error {
	st.HeaderHash = HashHeader(st.Header)
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode position: %w", err)
	}
	final := s.file(st.Path)
	tmp, err := os.CreateTemp(s.dir, ".pos-*")
	if err != nil {
		return fmt.Errorf("save position: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("save position: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save position: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save position: %w", err)
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return fmt.Errorf("save position: %w", err)
	}
	if d, err := os.Open(s.dir); err == nil {
		d.Sync() // make the rename durable
		d.Close()
	}
	return nil
}
