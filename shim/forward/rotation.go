package forward

import (
	"sync"

	"github.com/pano-observability/pano/shim/follow"
)

// rotation knows the order of the files read and which of them are
// finished, so that a finished rotated file is deleted once the saved
// position is in a later file.
type rotation struct {
	mu       sync.Mutex
	seq      map[[2]uint64]int // order in which the files were read
	next     int               // the next file's number in seq
	finished []finishedFile    // oldest first
}

type finishedFile struct {
	id  follow.Identity
	seq int
}

func fileKey(id follow.Identity) [2]uint64 { return [2]uint64{id.Dev, id.Ino} }

// moved records that reading finished prev and went on to next.
func (r *rotation) moved(prev, next follow.Identity) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seq == nil {
		r.seq = map[[2]uint64]int{}
	}
	ps, ok := r.seq[fileKey(prev)]
	if !ok {
		ps = r.next
		r.seq[fileKey(prev)] = ps
		r.next++
	}
	r.seq[fileKey(next)] = r.next
	r.next++
	r.finished = append(r.finished, finishedFile{prev, ps})
}

// passed removes and returns the finished files read before the file of
// a saved position.
func (r *rotation) passed(saved follow.Identity) []follow.Identity {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur, ok := r.seq[fileKey(saved)]
	if !ok {
		return nil
	}
	var out []follow.Identity
	for len(r.finished) > 0 && r.finished[0].seq < cur {
		out = append(out, r.finished[0].id)
		delete(r.seq, fileKey(r.finished[0].id))
		r.finished = r.finished[1:]
	}
	return out
}
