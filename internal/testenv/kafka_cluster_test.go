package testenv

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestKafkaClusterSurvivesLeaderKill: with three replicas and
// min.insync.replicas 2, an idempotent producer with acks=all loses,
// duplicates and reorders nothing while the node leading the most
// partitions is killed mid-stream and started again; the node then
// catches up and can lead again.
func TestKafkaClusterSurvivesLeaderKill(t *testing.T) {
	const (
		topic      = "survive"
		partitions = 6
		keys       = 600
		perKey     = 100
		n          = keys * perKey
	)
	c := StartKafkaCluster(t, 3)
	c.CreateTopic(t, topic, partitions, 3, map[string]string{"min.insync.replicas": "2"})
	leaders := c.Leaders(t, topic)
	victim := mostLeader(leaders)
	if victim < 0 {
		t.Fatalf("no partition of %q has a leader: %v", topic, leaders)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := c.Client(t,
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), // as idempotence (kgo's default) needs
		// A record the cluster cannot take within a minute fails the
		// test rather than waiting for ctx.
		kgo.RecordDeliveryTimeout(time.Minute),
	)

	var (
		mu         sync.Mutex
		acked      int
		firstErr   error
		parts      = map[string]int32{} // the partition each key went to
		sixthAcked = make(chan struct{})
	)
	promise := func(r *kgo.Record, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("record %s: %w", r.Value, err)
			}
			return
		}
		if acked++; acked == n/6 {
			close(sixthAcked)
		}
		if p, ok := parts[string(r.Key)]; ok && p != r.Partition {
			firstErr = fmt.Errorf("key %s went to partitions %d and %d", r.Key, p, r.Partition)
		}
		parts[string(r.Key)] = r.Partition
	}
	ackedNow := func() int {
		mu.Lock()
		defer mu.Unlock()
		return acked
	}

	// The producer hands records to the client without waiting for them.
	// The node is killed once a sixth of them is acknowledged and a third
	// handed over, so that some are in flight to it; the producer waits
	// for the kill before going on, so that the second third is produced
	// while the node is down, and the last third while it restarts.
	killNow, killed, restartNow := make(chan struct{}), make(chan struct{}), make(chan struct{})
	flushed := make(chan error, 1)
	var flushedAt time.Time // written before flushed is sent to
	go func() {
		for i := range n {
			switch i {
			case n / 3:
				close(killNow)
				select {
				case <-killed:
				case <-ctx.Done():
					flushed <- ctx.Err()
					return
				}
			case 2 * n / 3:
				close(restartNow)
			}
			key := fmt.Sprintf("key-%d", i%keys)
			cl.Produce(ctx, kgo.KeyStringRecord(key, fmt.Sprintf("%s/%d", key, i/keys)), promise)
		}
		err := cl.Flush(ctx)
		flushedAt = time.Now()
		flushed <- err
	}()

	wait := func(ch <-chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
		case err := <-flushed:
			t.Fatalf("producer ended before %s: %v", what, err)
		}
	}
	wait(killNow, "the kill")
	wait(sixthAcked, "the kill")
	c.Kill(t, victim)
	killedAt := time.Now()
	t.Logf("Nodes[%d], leader of %d of %d partitions, killed with %d of the %d records sent acknowledged",
		victim, countLeader(leaders, victim), partitions, ackedNow(), n/3)
	close(killed)
	wait(restartNow, "the restart")
	c.Start(t, victim)
	if err := <-flushed; err != nil {
		t.Fatalf("flush: %v", err)
	}
	mu.Lock()
	gotAcked, gotErr := acked, firstErr
	mu.Unlock()
	if gotErr != nil {
		t.Fatalf("produce: %v", gotErr)
	}
	if gotAcked != n {
		t.Fatalf("%d records acknowledged, want %d", gotAcked, n)
	}
	t.Logf("all %d records acknowledged %v after the kill", n, flushedAt.Sub(killedAt).Round(time.Millisecond))

	// Back in every ISR, and able to lead once the preferred leaders are
	// elected again (auto.leader.rebalance runs only every 5 minutes).
	c.WaitInSync(t, topic)
	adm := c.Admin(t)
	tds, err := adm.ListTopics(ctx, topic)
	if err == nil {
		err = tds.Error()
	}
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	victimID := int32(victim + 1)
	var preferred []int32 // partitions whose first replica is the victim
	for _, p := range tds[topic].Partitions.Sorted() {
		if !slices.Contains(p.ISR, victimID) {
			t.Errorf("partition %d: Nodes[%d] (id %d) not in ISR %v", p.Partition, victim, victimID, p.ISR)
		}
		if p.Replicas[0] == victimID {
			preferred = append(preferred, p.Partition)
		}
	}
	if len(preferred) == 0 {
		t.Fatalf("Nodes[%d] is the preferred leader of no partition: %v", victim, tds[topic].Partitions)
	}
	set := kadm.TopicsSet{}
	set.Add(topic, preferred...)
	res, err := adm.ElectLeaders(ctx, kadm.ElectPreferredReplica, set)
	if err != nil {
		t.Fatalf("elect preferred leaders: %v", err)
	}
	for p, r := range res[topic] {
		if r.Err != nil && !errors.Is(r.Err, kerr.ElectionNotNeeded) {
			t.Errorf("elect the preferred leader of partition %d: %v %s", p, r.Err, r.ErrMessage)
		}
	}
	// The election's answer comes before every broker's metadata shows
	// it: wait for the metadata.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		leaders = c.Leaders(t, topic)
		moved := 0
		for _, p := range preferred {
			if leaders[p] == victim {
				moved++
			}
		}
		if moved == len(preferred) {
			break
		}
		if time.Now().After(deadline) {
			for _, p := range preferred {
				if leaders[p] != victim {
					t.Errorf("partition %d: led by Nodes[%d] 30 s after electing its preferred leader, Nodes[%d]", p, leaders[p], victim)
				}
			}
			break
		}
	}
	t.Logf("Nodes[%d] leads partitions %v again", victim, preferred)

	// Every record exactly once, in order within its key and partition.
	got := ReadTopic(t, c.Bootstrap, topic)
	if len(got) != n {
		t.Errorf("read %d records, want %d", len(got), n)
	}
	kafkaTestCheck(t, got, parts, perKey)
}

// mostLeader is the node that leads the most partitions (the lowest index
// of those tied).
func mostLeader(leaders map[int32]int) int {
	best := -1
	for _, node := range leaders {
		if node < 0 {
			continue
		}
		if best < 0 {
			best = node
			continue
		}
		if c, b := countLeader(leaders, node), countLeader(leaders, best); c > b || c == b && node < best {
			best = node
		}
	}
	return best
}

// countLeader is how many partitions node leads.
func countLeader(leaders map[int32]int, node int) int {
	n := 0
	for _, l := range leaders {
		if l == node {
			n++
		}
	}
	return n
}
