package forward

import (
	"testing"

	"github.com/pano-observability/pano/shim/follow"
	"github.com/pano-observability/pano/shim/position"
)

// TestTrackerOutOfOrderAcks: the saved position only passes lines whose
// predecessors are all acknowledged, whatever the order of the acks.
func TestTrackerOutOfOrderAcks(t *testing.T) {
	file := follow.Identity{Dev: 1, Ino: 2}
	tr := newTracker(position.State{Path: "p", Partitions: map[int32]int64{0: 5}}, nil)
	tr.skip(file, 10, []string{"#fields\ta"}) // nothing pending: committed at once
	if st, _ := tr.snapshot(); st.Offset != 10 || len(st.Header) != 1 {
		t.Fatalf("after skip: %+v", st)
	}
	e1 := &entry{file: file, end: 20}
	e2 := &entry{file: file, end: 30}
	e3 := &entry{file: file, end: 40}
	tr.add(e1)
	tr.add(e2)
	tr.skip(file, 35, []string{"#fields\tb"}) // a header line between e2 and e3
	tr.add(e3)
	e3.Acked(1, 7)
	e2.Acked(0, 9)
	if st, dirty := tr.snapshot(); st.Offset != 10 || dirty || st.Partitions[0] != 5 || st.Partitions[1] != 0 {
		// The read-back start must not pass records after the position.
		t.Fatalf("e1 unacknowledged, yet offset %d partitions %v dirty %v", st.Offset, st.Partitions, dirty)
	}
	e1.Acked(1, 6)
	st, dirty := tr.snapshot()
	if !dirty || st.Offset != 40 || st.Header[0] != "#fields\tb" {
		t.Fatalf("all acknowledged: %+v", st)
	}
	if st.Partitions[0] != 10 || st.Partitions[1] != 8 {
		t.Fatalf("partitions %v, want 0:10 1:8", st.Partitions)
	}
	if tr.pending() != 0 {
		t.Fatalf("%d pending", tr.pending())
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
