package forward

import (
	"testing"

	"github.com/pano-observability/pano/shim/follow"
	"github.com/pano-observability/pano/shim/position"
)

// TestTrackerOutOfOrderAcks: the saved position only passes lines whose
// predecessors are all settled, whatever the order of Kafka's answers;
// a refused line counts as settled but moves no read-back offset.
func TestTrackerOutOfOrderAcks(t *testing.T) {
	file := follow.Identity{Dev: 1, Ino: 2}
	tr := newTracker(position.State{Path: "p", Partitions: map[int32]int64{0: 5}, PartitionCount: 2})
	tr.skip(file, 10, 0, []string{"#fields\ta"}) // nothing pending: committed at once
	if st, _ := tr.snapshot(); st.Offset != 10 || len(st.Header) != 1 {
		t.Fatalf("after skip: %+v", st)
	}
	e1 := &entry{file: file, end: 20}
	e2 := &entry{file: file, end: 30}
	e3 := &entry{file: file, end: 40, truncations: 1}
	e4 := &entry{file: file, end: 50, truncations: 1}
	if n := tr.add(e1); n != 2 {
		t.Fatalf("add returned %d partitions, want 2", n)
	}
	tr.add(e2)
	tr.skip(file, 35, 0, []string{"#fields\tb"}) // a header line between e2 and e3
	tr.add(e3)
	tr.add(e4)
	tr.settle(e3, true, 1, 7)
	tr.settle(e2, true, 0, 9)
	tr.settle(e4, false, 0, 0) // refused for good
	if st, dirty := tr.snapshot(); st.Offset != 10 || dirty || st.Partitions[0] != 5 || st.Partitions[1] != 0 {
		// The read-back start must not pass records after the position.
		t.Fatalf("e1 unsettled, yet offset %d partitions %v dirty %v", st.Offset, st.Partitions, dirty)
	}
	tr.settle(e1, true, 1, 6)
	st, dirty := tr.snapshot()
	if !dirty || st.Offset != 50 || st.Header[0] != "#fields\tb" || st.Truncations != 1 {
		t.Fatalf("all settled: %+v", st)
	}
	if st.Partitions[0] != 10 || st.Partitions[1] != 8 {
		t.Fatalf("partitions %v, want 0:10 1:8", st.Partitions)
	}
	if tr.pending() != 0 {
		t.Fatalf("%d pending", tr.pending())
	}
}

// TestTrackerRebase: the read-back start moves up to the topic's end only
// while nothing waits and nothing was added since the end was fetched; the
// partition count follows the topic's then, never while lines wait.
func TestTrackerRebase(t *testing.T) {
	file := follow.Identity{Dev: 1, Ino: 2}
	tr := newTracker(position.State{Path: "p", Partitions: map[int32]int64{0: 5, 1: 3}, PartitionCount: 2})
	ends := map[int32]int64{0: 100, 1: 200, 2: 0}
	added, idle := tr.quiet()
	if !idle {
		t.Fatal("a new tracker is not idle")
	}
	e := &entry{file: file, end: 10}
	tr.add(e) // after the end offsets were fetched
	if tr.rebase(ends, added) {
		t.Fatal("rebased past a line added after the end offsets were fetched")
	}
	if _, idle := tr.quiet(); idle {
		t.Fatal("idle with a line waiting")
	}
	tr.settle(e, true, 1, 250)
	added, idle = tr.quiet()
	if !idle || !tr.rebase(ends, added) {
		t.Fatal("no rebase while idle")
	}
	st, _ := tr.snapshot()
	if st.Partitions[0] != 100 || st.Partitions[1] != 251 || st.PartitionCount != 3 {
		t.Fatalf("after rebase: partitions %v count %d, want 0:100 1:251 (never back), count 3", st.Partitions, st.PartitionCount)
	}
	if n := tr.add(&entry{file: file, end: 20}); n != 3 {
		t.Fatalf("lines after the rebase spread over %d partitions, want 3", n)
	}
}

func TestTopicFor(t *testing.T) {
	for path, want := range map[string]string{"/zeek/logs/dns.log": "pre-dns", "conn.log": "pre-conn", "/x/weird": "pre-weird"} {
		if got := TopicFor("pre-", path); got != want {
			t.Errorf("%s: %s, want %s", path, got, want)
		}
	}
}

// TestRotationPassed: finished files are handed out for deletion once the
// saved position is in a later file, however many moves came before.
func TestRotationPassed(t *testing.T) {
	var r rotation
	id := func(i uint64) follow.Identity { return follow.Identity{Dev: 1, Ino: i} }
	r.moved(id(1), id(2))
	if got := r.passed(id(1)); len(got) != 0 {
		t.Fatalf("position still in file 1, yet %v passed", got)
	}
	r.moved(id(2), id(3))
	if got := r.passed(id(3)); len(got) != 2 || got[0] != id(1) || got[1] != id(2) {
		t.Fatalf("passed = %v, want files 1 and 2", got)
	}
	for i := uint64(3); i < 10; i++ {
		r.moved(id(i), id(i+1))
		if got := r.passed(id(i + 1)); len(got) != 1 || got[0] != id(i) {
			t.Fatalf("move %d: passed = %v, want file %d", i, got, i)
		}
	}
	if got := r.passed(id(99)); len(got) != 0 {
		t.Fatalf("an unknown file passed %v", got)
	}
}
