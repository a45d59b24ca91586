package testenv

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// kafkaTestClient is where and how a test client connects.
type kafkaTestClient struct {
	addr   string
	config func() *sarama.Config // a fresh configuration each call
}

// plainClient connects to the broker's PLAINTEXT listener.
func plainClient(k *Kafka) kafkaTestClient { return kafkaTestClient{k.Bootstrap, KafkaSaramaConfig} }

// kafkaTestProduce sends n messages to topic with keys "key-<i%keys>" and
// values "<key>/<sequence within key>", and returns the partition each key
// went to.
func kafkaTestProduce(t *testing.T, c kafkaTestClient, topic string, n, keys, firstSeq int) map[string]int32 {
	t.Helper()
	cfg := c.config()
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Idempotent = true
	cfg.Net.MaxOpenRequests = 1
	p, err := sarama.NewSyncProducer([]string{c.addr}, cfg)
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	defer p.Close()
	msgs := make([]*sarama.ProducerMessage, 0, n)
	for i := range n {
		key := fmt.Sprintf("key-%d", i%keys)
		val := fmt.Sprintf("%s/%d", key, firstSeq+i/keys)
		msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(key), Value: sarama.StringEncoder(val)})
	}
	if err := p.SendMessages(msgs); err != nil {
		t.Fatalf("produce %d messages: %v", n, err)
	}
	parts := map[string]int32{}
	for _, m := range msgs {
		key := string(m.Key.(sarama.StringEncoder))
		if p, ok := parts[key]; ok && p != m.Partition {
			t.Fatalf("key %s went to partitions %d and %d", key, p, m.Partition)
		}
		parts[key] = m.Partition
	}
	return parts
}

type kafkaTestMsg struct {
	partition int32
	offset    int64
	key, val  string
}

// kafkaTestGroup collects what a consumer group receives.
type kafkaTestGroup struct {
	mu   sync.Mutex
	msgs []kafkaTestMsg
	want int
	full chan struct{}
}

func (g *kafkaTestGroup) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (g *kafkaTestGroup) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (g *kafkaTestGroup) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		g.mu.Lock()
		g.msgs = append(g.msgs, kafkaTestMsg{m.Partition, m.Offset, string(m.Key), string(m.Value)})
		if len(g.msgs) == g.want {
			close(g.full)
		}
		g.mu.Unlock()
		s.MarkMessage(m, "")
	}
	return nil
}

// kafkaTestConsume reads want messages from topic with a fresh consumer
// group, from the oldest offset.
func kafkaTestConsume(t *testing.T, c kafkaTestClient, topic, group string, want int) []kafkaTestMsg {
	t.Helper()
	cfg := c.config()
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Return.Errors = false
	cg, err := sarama.NewConsumerGroup([]string{c.addr}, group, cfg)
	if err != nil {
		t.Fatalf("consumer group: %v", err)
	}
	defer cg.Close()
	h := &kafkaTestGroup{want: want, full: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			if err := cg.Consume(ctx, []string{topic}, h); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case <-h.full:
	case err := <-done:
		t.Fatalf("consume: %v", err)
	case <-time.After(2 * time.Minute):
		h.mu.Lock()
		t.Fatalf("consumer group got %d of %d messages", len(h.msgs), want)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("consume: %v", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]kafkaTestMsg(nil), h.msgs...)
}

// kafkaTestCheck verifies that got holds exactly the values
// "key-<k>/<seq>" for seq in [0, perKey) for every key, each key on the
// partition the producer reported, in order within each partition.
func kafkaTestCheck(t *testing.T, got []kafkaTestMsg, parts map[string]int32, perKey int) {
	t.Helper()
	nextSeq := map[string]int{}
	lastOffset := map[int32]int64{}
	for _, m := range got {
		key, seqStr, ok := strings.Cut(m.val, "/")
		if !ok || key != m.key {
			t.Fatalf("message key %q value %q: value does not belong to key", m.key, m.val)
		}
		if p, ok := parts[key]; !ok || p != m.partition {
			t.Fatalf("key %s read from partition %d, produced to %d", key, m.partition, p)
		}
		if last, ok := lastOffset[m.partition]; ok && m.offset <= last {
			t.Fatalf("partition %d: offset %d after %d", m.partition, m.offset, last)
		}
		lastOffset[m.partition] = m.offset
		seq, err := strconv.Atoi(seqStr)
		if err != nil || seq != nextSeq[key] {
			t.Fatalf("key %s: got %q, want sequence %d", key, m.val, nextSeq[key])
		}
		nextSeq[key]++
	}
	for key := range parts {
		if nextSeq[key] != perKey {
			t.Errorf("key %s: %d messages, want %d", key, nextSeq[key], perKey)
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
		t.Fatalf("got %d messages, want %d", len(got), n)
	}
	kafkaTestCheck(t, got, parts, n/keys)

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
		t.Fatalf("kcat read %d messages, want %d", len(lines), n)
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
	c, err := sarama.NewClient([]string{k.Bootstrap}, KafkaSaramaConfig())
	if err == nil {
		c.Close()
		t.Fatalf("a client connected to the stopped broker")
	}
	k.Start(t)

	// The topic and its 20 messages survived; the broker takes new ones.
	kafkaTestProduce(t, plainClient(k), topic, 20, 2, 10)
	got := kafkaTestConsume(t, plainClient(k), topic, "restart-group", 40)
	kafkaTestCheck(t, got, parts, 20)
}
