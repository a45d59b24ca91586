package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/pano-observability/pano/internal/testenv"
)

// TestClusterLeaderKilled: the shim sends to a 3-broker KRaft cluster
// (replication 3, min.insync.replicas 2, 6 partitions) while the broker
// that leads the most partitions is killed (SIGKILL) mid-stream and later
// started again. Every record arrives exactly once, and in order per key.
func TestClusterLeaderKilled(t *testing.T) {
	c := testenv.StartKafkaCluster(t, 3)
	const topic = "cl-dns"
	c.CreateTopic(t, topic, 6, 3, map[string]string{"min.insync.replicas": "2"})
	dir, state := t.TempDir(), t.TempDir()
	log := filepath.Join(dir, "dns.log")
	const n, keys = 40000, 400
	record := func(i int) string {
		return fmt.Sprintf(`{"ts":%d.%06d,"uid":"K%04d","seq":%d,"id_orig_h":"10.253.0.1","id_resp_h":"10.253.0.2","query":"name%d.example.test","rcode_name":"NOERROR"}`+"\n",
			1795642521+i/1000, i%1000*1000, i%keys, i, i)
	}
	p := startShim(t, log, c.Bootstrap, state, "-shim-topic-prefix", "cl-", "-shim-health-timeout", "20s",
		// The order per key is what this test checks: a uid's records in one partition.
		"-kafka-partition-by", "uid")
	written := make(chan struct{})
	go func() {
		defer close(written)
		// About 16 s of writing at 2,500 records/s.
		for i := 0; i < n; i += 125 {
			lines := make([]string, 0, 125)
			for j := i; j < i+125; j++ {
				lines = append(lines, record(j))
			}
			writeLines(t, log, lines)
			time.Sleep(50 * time.Millisecond)
		}
	}()
	waitRecords(t, c.Bootstrap, topic, n/8, time.Minute)
	leaders := c.Leaders(t, topic)
	victim, led := 0, map[int]int{}
	for _, node := range leaders {
		if led[node]++; led[node] > led[victim] {
			victim = node
		}
	}
	mid := topicEnd(t, c.Bootstrap, topic)
	c.Kill(t, victim)
	t.Logf("killed node %d (leader of %d of 6 partitions) with %d records in kafka", victim, led[victim], mid)
	time.Sleep(6 * time.Second)
	c.Start(t, victim)
	<-written
	waitRecords(t, c.Bootstrap, topic, n, 2*time.Minute)
	c.WaitInSync(t, topic)
	if code, body := p.healthz(t); code != 200 {
		t.Fatalf("healthz %d after the fault: %s", code, body)
	}
	p.stop(t)

	recs := consumeAll(t, c.Bootstrap, topic)
	seen := make([]int, n)
	lastSeq := map[string]int{}
	for _, r := range recs {
		var v struct {
			UID string `json:"uid"`
			Seq int    `json:"seq"`
		}
		if err := json.Unmarshal(r.Value, &v); err != nil || v.Seq < 0 || v.Seq >= n || string(r.Key) != v.UID {
			t.Fatalf("record %d/%d: %v: key %q %s", r.Partition, r.Offset, err, r.Key, r.Value)
		}
		seen[v.Seq]++
		// ReadTopic returns each partition in offset order, and a key
		// lives in one partition.
		if last, ok := lastSeq[v.UID]; ok && v.Seq <= last {
			t.Fatalf("key %s: seq %d after %d (partition %d offset %d)", v.UID, v.Seq, last, r.Partition, r.Offset)
		}
		lastSeq[v.UID] = v.Seq
	}
	var missing, dup int
	for _, c := range seen {
		switch {
		case c == 0:
			missing++
		case c > 1:
			dup++
		}
	}
	if missing > 0 || dup > 0 || len(recs) != n {
		t.Fatalf("%d records for %d written: %d missing, %d duplicated", len(recs), n, missing, dup)
	}
	t.Logf("%d records exactly once, in order for each of %d keys", n, len(lastSeq))
}
