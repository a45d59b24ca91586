package forward

import (
	"maps"
	"sync"
	"time"

	"github.com/pano-observability/pano/shim/follow"
	"github.com/pano-observability/pano/shim/position"
)

// entry is one line between reading and Kafka's acknowledgement. It is
// the record's Acker.
type entry struct {
	t      *tracker
	file   follow.Identity
	end    int64
	header []string // non-nil: the TSV header in effect from this line on
	sent   time.Time
	done   bool

	acked     bool // by Kafka (not a skipped line)
	partition int32
	offset    int64
}

// Acked implements produce.Acker.
func (e *entry) Acked(partition int32, offset int64) { e.t.ack(e, partition, offset) }

// tracker knows, for one log, the position before which every line is
// acknowledged: lines are queued in file order and acknowledgements,
// which come in any order across partitions, move the position over the
// acknowledged prefix.
type tracker struct {
	onAck func(e *entry)

	mu    sync.Mutex
	queue []*entry
	head  int
	state position.State // position and header of the acknowledged prefix
	dirty bool
}

func newTracker(st position.State, onAck func(*entry)) *tracker {
	st.Partitions = maps.Clone(st.Partitions)
	if st.Partitions == nil {
		st.Partitions = map[int32]int64{}
	}
	return &tracker{state: st, onAck: onAck}
}

// add queues a line sent to Kafka.
func (t *tracker) add(e *entry) {
	e.t = t
	t.mu.Lock()
	t.queue = append(t.queue, e)
	t.mu.Unlock()
}

// skip records a line that needs no acknowledgement (header, malformed,
// already in Kafka).
func (t *tracker) skip(file follow.Identity, end int64, header []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.head == len(t.queue) {
		t.commit(file, end, header)
		return
	}
	t.queue = append(t.queue, &entry{t: t, file: file, end: end, header: header, done: true})
}

func (t *tracker) ack(e *entry, partition int32, offset int64) {
	t.mu.Lock()
	e.done, e.partition, e.offset, e.acked = true, partition, offset, true
	for t.head < len(t.queue) && t.queue[t.head].done {
		q := t.queue[t.head]
		t.queue[t.head] = nil
		t.head++
		t.commit(q.file, q.end, q.header)
		if q.acked && q.offset+1 > t.state.Partitions[q.partition] {
			// Every line after the saved position lands after this
			// offset in this partition (one producer per partition
			// keeps the order of Send): reading back after a crash can
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
	t.mu.Unlock()
	if t.onAck != nil {
		t.onAck(e)
	}
}

func (t *tracker) commit(file follow.Identity, end int64, header []string) {
	t.state.File, t.state.Offset = file, end
	if header != nil {
		t.state.Header = header
	}
	t.dirty = true
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

// pending is the number of lines waiting for acknowledgement.
func (t *tracker) pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.queue) - t.head
}

// peek returns the acknowledged state without clearing dirty.
func (t *tracker) peek() (position.State, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.state, t.dirty
}

// markDirty asks for the next snapshot to be saved again.
func (t *tracker) markDirty() {
	t.mu.Lock()
	t.dirty = true
	t.mu.Unlock()
}
