package testenv

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// kafkaTestClient is where and how a test client connects.
type kafkaTestClient struct {
	addr string
	opts []kgo.Opt // TLS, SASL
}

// plainClient connects to the broker's PLAINTEXT listener.
func plainClient(k *Kafka) kafkaTestClient { return kafkaTestClient{addr: k.Bootstrap} }

// client is a client with c's options and more, closed by t.Cleanup.
func (c kafkaTestClient) client(t *testing.T, more ...kgo.Opt) *kgo.Client {
	t.Helper()
	return kafkaClient(t, c.addr, slices.Concat(c.opts, more)...)
}

// kafkaTestProduce sends n records to topic with keys "key-<i%keys>" and
// values "<key>/<sequence within key>" with an idempotent producer (acks
// all, kgo's default), and returns the partition each key went to.
func kafkaTestProduce(t *testing.T, c kafkaTestClient, topic string, n, keys, firstSeq int) map[string]int32 {
	t.Helper()
	cl := c.client(t, kgo.DefaultProduceTopic(topic))
	defer cl.Close()
	recs := make([]*kgo.Record, 0, n)
	for i := range n {
		key := fmt.Sprintf("key-%d", i%keys)
		recs = append(recs, kgo.KeyStringRecord(key, fmt.Sprintf("%s/%d", key, firstSeq+i/keys)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce %d records: %v", n, err)
	}
	parts := map[string]int32{}
	for _, r := range recs {
		key := string(r.Key)
		if p, ok := parts[key]; ok && p != r.Partition {
			t.Fatalf("key %s went to partitions %d and %d", key, p, r.Partition)
		}
		parts[key] = r.Partition
	}
	return parts
}

// kafkaTestConsume reads want records from topic with a fresh consumer
// group, from the oldest offset. It returns what it has once it has at
// least want (more would be duplicates, for kafkaTestCheck to find).
func kafkaTestConsume(t *testing.T, c kafkaTestClient, topic, group string, want int) []*kgo.Record {
	t.Helper()
	cl := c.client(t, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var got []*kgo.Record
	for len(got) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumer group got %d of %d records", len(got), want)
		}
		if errs := fs.Errors(); len(errs) > 0 {
			t.Fatalf("consume partition %d: %v", errs[0].Partition, errs[0].Err)
		}
		got = append(got, fs.Records()...)
	}
	return got
}

// kafkaTestCheck verifies that got holds exactly the values
// "key-<k>/<seq>" for seq in [0, perKey) for every key, each key on the
// partition the producer reported, in order within each partition.
func kafkaTestCheck(t *testing.T, got []*kgo.Record, parts map[string]int32, perKey int) {
	t.Helper()
	nextSeq := map[string]int{}
	lastOffset := map[int32]int64{}
	for _, m := range got {
		key, seqStr, ok := strings.Cut(string(m.Value), "/")
		if !ok || key != string(m.Key) {
			t.Fatalf("record key %q value %q: value does not belong to key", m.Key, m.Value)
		}
		if p, ok := parts[key]; !ok || p != m.Partition {
			t.Fatalf("key %s read from partition %d, produced to %d", key, m.Partition, p)
		}
		if last, ok := lastOffset[m.Partition]; ok && m.Offset <= last {
			t.Fatalf("partition %d: offset %d after %d", m.Partition, m.Offset, last)
		}
		lastOffset[m.Partition] = m.Offset
		seq, err := strconv.Atoi(seqStr)
		if err != nil || seq != nextSeq[key] {
			t.Fatalf("key %s: got %q, want sequence %d", key, m.Value, nextSeq[key])
		}
		nextSeq[key]++
	}
	for key := range parts {
		if nextSeq[key] != perKey {
			t.Errorf("key %s: %d records, want %d", key, nextSeq[key], perKey)
		}
	}
}

func TestKafkaRoundTrip(t *testing.T) {
	const (
		n          = 1000
		keys       = 50
		partitions = 3
		topic      = "roundtrip"
	)
	k := StartKafka(t)
	k.CreateTopic(t, topic, partitions)

	parts := kafkaTestProduce(t, plainClient(k), topic, n, keys, 0)
	used := map[int32]bool{}
	for _, p := range parts {
		used[p] = true
	}
	if len(used) != partitions {
		t.Errorf("50 keys used %d partitions of %d", len(used), partitions)
	}

	got := kafkaTestConsume(t, plainClient(k), topic, "roundtrip-group", n)
	if len(got) != n {
		t.Fatalf("got %d records, want %d", len(got), n)
	}
	kafkaTestCheck(t, got, parts, n/keys)

	// ReadTopic reads the same records, in partition and offset order, up
	// to the end offsets.
	var sum int64
	for _, end := range EndOffsets(t, k.Bootstrap, topic) {
		sum += end
	}
	if sum != n {
		t.Errorf("end offsets add up to %d, want %d", sum, n)
	}
	read := ReadTopic(t, k.Bootstrap, topic)
	if len(read) != n {
		t.Fatalf("ReadTopic: %d records, want %d", len(read), n)
	}
	for i := 1; i < len(read); i++ {
		if read[i].Partition < read[i-1].Partition {
			t.Fatalf("ReadTopic: partition %d after %d", read[i].Partition, read[i-1].Partition)
		}
	}
	kafkaTestCheck(t, read, parts, n/keys)
	k.CreateTopic(t, "empty", 2)
	if read := ReadTopic(t, k.Bootstrap, "empty"); len(read) != 0 {
		t.Errorf("ReadTopic of an empty topic: %d records", len(read))
	}

	// A second, independent client reads the same topic: kcat (librdkafka).
	kcat := RequireProgram(t, "kcat", "kcat")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, kcat, "-C", "-b", k.Bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%p %k %s\n").CombinedOutput()
	if err != nil {
		t.Fatalf("kcat: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != n {
		t.Fatalf("kcat read %d records, want %d", len(lines), n)
	}
	for _, l := range lines {
		var p int32
		var key, val string
		if _, err := fmt.Sscanf(l, "%d %s %s", &p, &key, &val); err != nil || parts[key] != p || !strings.HasPrefix(val, key+"/") {
			t.Fatalf("kcat line %q does not match what was produced", l)
		}
	}
}

func TestKafkaStopStartKeepsData(t *testing.T) {
	const topic = "restart"
	k := StartKafka(t)
	k.CreateTopic(t, topic, 1)
	parts := kafkaTestProduce(t, plainClient(k), topic, 20, 2, 0)

	k.Stop(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := k.Admin(t).BrokerMetadata(ctx); err == nil {
		t.Fatalf("the stopped broker answered a metadata request")
	}
	k.Start(t)

	// The topic and its 20 messages survived; the broker takes new ones.
	kafkaTestProduce(t, plainClient(k), topic, 20, 2, 10)
	got := kafkaTestConsume(t, plainClient(k), topic, "restart-group", 40)
	kafkaTestCheck(t, got, parts, 20)
}
