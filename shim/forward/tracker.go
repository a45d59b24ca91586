package forward

import (
	"maps"
	"sync"
	"time"

	"github.com/pano-observability/pano/shim/follow"
	"github.com/pano-observability/pano/shim/position"
)

// entry is one line between reading and Kafka's answer.
type entry struct {
	file follow.Identity
	end  int64
	// truncations of file before this line (kafka.SourceID)
	truncations int
	header      []string // non-nil: the TSV header in effect from this line on
	sent        time.Time
	done        bool

	acked     bool // stored by Kafka (not skipped, not refused)
	partition int32
	offset    int64
}

// tracker knows, for one log, the position before which every line is
// settled (in Kafka, skipped or refused for good): lines are queued in
// file order and Kafka's answers, which come in any order across
// partitions, move the position over the settled prefix.
type tracker struct {
	mu    sync.Mutex
	queue []*entry
	head  int
	state position.State // position and header of the settled prefix
	dirty bool
	added uint64 // entries ever added: rebase checks none came meanwhile
}

func newTracker(st position.State) *tracker {
	st.Partitions = maps.Clone(st.Partitions)
	if st.Partitions == nil {
		st.Partitions = map[int32]int64{}
	}
	return &tracker{state: st}
}

// add queues a line handed to Kafka and returns the number of partitions
// to spread it over (the state's, which rebase changes only while nothing
// is pending, so that a saved position always names the count its later
// lines were routed with).
func (t *tracker) add(e *entry) int32 {
	t.mu.Lock()
	t.queue = append(t.queue, e)
	t.added++
	n := int32(t.state.PartitionCount)
	t.mu.Unlock()
	return n
}

// skip records a line that needs no answer (header, malformed, already in
// Kafka).
func (t *tracker) skip(file follow.Identity, end int64, truncations int, header []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := &entry{file: file, end: end, truncations: truncations, header: header, done: true}
	if t.head == len(t.queue) {
		t.commit(e)
		return
	}
	t.queue = append(t.queue, e)
}

// settle records Kafka's answer for e: stored at partition/offset when
// acked, refused for good otherwise.
func (t *tracker) settle(e *entry, acked bool, partition int32, offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e.done, e.acked, e.partition, e.offset = true, acked, partition, offset
	for t.head < len(t.queue) && t.queue[t.head].done {
		q := t.queue[t.head]
		t.queue[t.head] = nil
		t.head++
		t.commit(q)
		if q.acked && q.offset+1 > t.state.Partitions[q.partition] {
			// Every line after the saved position lands after this
			// offset in this partition (the idempotent producer keeps
			// the order of Produce): a read-back after a crash can
			// start here.
			t.state.Partitions[q.partition] = q.offset + 1
		}
	}
	if t.head == len(t.queue) {
		t.queue, t.head = t.queue[:0], 0
	} else if t.head > 4096 && t.head > len(t.queue)/2 {
		n := copy(t.queue, t.queue[t.head:])
		clear(t.queue[n:])
		t.queue, t.head = t.queue[:n], 0
	}
}

func (t *tracker) commit(e *entry) {
	t.state.File, t.state.Offset, t.state.Truncations = e.file, e.end, e.truncations
	if e.header != nil {
		t.state.Header = e.header
	}
	t.dirty = true
}

// quiet returns how many entries were ever added, and whether none is
// waiting for Kafka now.
func (t *tracker) quiet() (added uint64, idle bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.added, t.head == len(t.queue)
}

// rebase moves the read-back start of every partition up to ends, the
// topic's end offsets fetched after quiet returned added: if no line was
// added since and none is waiting, no line after the saved position can
// be before ends. The partition count follows the topic's. It reports
// whether it applied.
func (t *tracker) rebase(ends map[int32]int64, added uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.added != added || t.head != len(t.queue) || len(ends) == 0 {
		return false
	}
	for p, off := range ends {
		if off > t.state.Partitions[p] {
			t.state.Partitions[p] = off
			t.dirty = true
		}
	}
	if n := len(ends); n > t.state.PartitionCount {
		t.state.PartitionCount = n
		t.dirty = true
	}
	return true
}

// snapshot returns the state to save and whether it changed since the
// last snapshot.
func (t *tracker) snapshot() (position.State, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.state
	st.Partitions = maps.Clone(st.Partitions)
	st.Header = append([]string(nil), st.Header...)
	d := t.dirty
	t.dirty = false
	return st, d
}

// pending is the number of lines waiting for Kafka's answer.
func (t *tracker) pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.queue) - t.head
}

// peek returns the settled state without clearing dirty.
func (t *tracker) peek() position.State {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.state
}

// markDirty asks for the next snapshot to be saved again.
func (t *tracker) markDirty() {
	t.mu.Lock()
	t.dirty = true
	t.mu.Unlock()
}
