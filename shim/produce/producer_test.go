package produce

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/pano-observability/pano/internal/testenv"
)

func TestNextSequence(t *testing.T) {
	for _, c := range []struct{ seq, n, want int32 }{
		{0, 1, 1},
		{5, 10, 15},
		{math.MaxInt32 - 10, 10, math.MaxInt32},
		{math.MaxInt32 - 10, 11, 0},
		{math.MaxInt32 - 10, 15, 4},
		{math.MaxInt32, 1, 0},
	} {
		if got := nextSequence(c.seq, c.n); got != c.want {
			t.Errorf("nextSequence(%d, %d) = %d, want %d", c.seq, c.n, got, c.want)
		}
	}
}

func TestRetriable(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&netError{errors.New("connection reset")}, true},
		{sarama.ErrNotLeaderForPartition, true},
		{fmt.Errorf("%w: detail", sarama.ErrNotEnoughReplicas), true},
		{fmt.Errorf("find leader: %w", sarama.ErrOutOfBrokers), true},
		{sarama.ErrOutOfOrderSequenceNumber, false},
		{sarama.ErrMessageSizeTooLarge, false},
		{sarama.ErrTopicAuthorizationFailed, false},
		{errors.New("broker's response has no result for the partition"), false},
	} {
		if got := retriable(c.err); got != c.want {
			t.Errorf("retriable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// newTestProducer connects to k with cfg and returns the client, the
// producer and the handle of topic.
func newTestProducer(t *testing.T, k *testenv.Kafka, cfg Config, topic string) (sarama.Client, *Producer, *Topic) {
	t.Helper()
	sc, err := SaramaConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	client, err := sarama.NewClient([]string{k.Bootstrap}, sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewProducer(client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Topic(topic, int32(len(parts)))
	if err != nil {
		t.Fatal(err)
	}
	return client, p, out
}

// TestResendIsIdempotent sends the same produce request twice, as a retry
// after a lost response does: the broker keeps one copy, which proves the
// batches really carry the producer id and sequence numbers.
func TestResendIsIdempotent(t *testing.T) {
	k := testenv.StartKafka(t)
	k.CreateTopic(t, "idem", 1)
	client, p, out := newTestProducer(t, k, Config{Compression: "lz4", FlushLinger: time.Millisecond}, "idem")
	defer p.Close()
	l := out.lanes[0]
	const n = 50
	b := p.pool.get(4096)
	for i := 0; i < n; i++ {
		b.add(&Message{Value: fmt.Appendf(nil, `{"i":%d}`, i)}, time.Now(), nil)
	}
	wire, err := b.seal(p.ident, 0, l.comp)
	if err != nil {
		t.Fatal(err)
	}
	l.gate.Lock()
	defer l.gate.Unlock()
	first, err := l.produceLocked(wire)
	if err != nil {
		t.Fatal(err)
	}
	again, err := l.produceLocked(wire)
	if err != nil {
		t.Fatalf("resend: %v", err)
	}
	if again != first && again != -1 {
		t.Errorf("resend stored at offset %d, first copy at %d", again, first)
	}
	ends, err := EndOffsets(client, "idem")
	if err != nil {
		t.Fatal(err)
	}
	if ends[0] != n {
		t.Fatalf("partition holds %d records after sending %d twice, want %d", ends[0], n, n)
	}
	// A batch whose sequence skips ahead is refused: the broker checks.
	if wire, err = b.seal(p.ident, 1000, l.comp); err != nil {
		t.Fatal(err)
	}
	if _, err := l.produceLocked(wire); !errors.Is(err, sarama.ErrOutOfOrderSequenceNumber) {
		t.Fatalf("sequence gap: %v, want %v", err, sarama.ErrOutOfOrderSequenceNumber)
	}
}

// TestFailsWhenBrokerStaysAway: with the broker gone longer than the
// retries last, the producer fails, no record is acknowledged, and Send
// returns the error instead of blocking.
func TestFailsWhenBrokerStaysAway(t *testing.T) {
	k := testenv.StartKafka(t)
	k.CreateTopic(t, "away", 2)
	cfg := Config{FlushLinger: time.Millisecond, RetryMax: 2, RetryBackoff: 50 * time.Millisecond, MaxInFlight: 10}
	_, p, out := newTestProducer(t, k, cfg, "away")
	acks := &ackCount{offs: map[int32][]int64{}}
	k.Stop(t)
	var sendErr error
	for i := 0; i < 100 && sendErr == nil; i++ {
		sendErr = out.Send(context.Background(), int32(i%2), &Message{Value: []byte(`{}`)}, acks)
	}
	select {
	case <-p.Failed():
	case <-time.After(time.Minute):
		t.Fatal("producer did not fail with the broker down")
	}
	if sendErr == nil {
		t.Error("100 sends with a cap of 10 in flight and the broker down all succeeded")
	}
	if err := p.Close(); err == nil {
		t.Error("Close returned no error after a failure")
	} else {
		t.Logf("failed as expected: %v", err)
	}
	if acks.n != 0 {
		t.Errorf("%d records acknowledged with the broker down", acks.n)
	}
}

// TestSurvivesBrokerRestart: the broker goes away and comes back while
// records stream with several requests in flight per partition; the
// failed requests are sent again in order, every record is acknowledged
// once and the topic holds each once.
func TestSurvivesBrokerRestart(t *testing.T) {
	k := testenv.StartKafka(t)
	k.CreateTopic(t, "restart", 2)
	cfg := Config{FlushLinger: time.Millisecond, FlushBytes: 4 << 10, RetryMax: 120, RetryBackoff: 100 * time.Millisecond, MaxInFlight: 2000}
	client, p, out := newTestProducer(t, k, cfg, "restart")
	acks := &ackCount{offs: map[int32][]int64{}}
	const n = 40000
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		time.Sleep(300 * time.Millisecond)
		k.Stop(t)
		time.Sleep(2 * time.Second)
		k.Start(t)
	}()
	for i := 0; i < n; i++ {
		if i%2000 == 0 {
			time.Sleep(20 * time.Millisecond) // stretch the stream over the restart
		}
		m := &Message{Value: fmt.Appendf(nil, `{"i":%d}`, i)}
		if err := out.Send(context.Background(), int32(i%2), m, acks); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	<-restarted
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if acks.n != n {
		t.Fatalf("%d acknowledgements for %d records", acks.n, n)
	}
	if p.Resent() == 0 {
		t.Error("no batch was sent again: the restart did not exercise the recovery")
	}
	t.Logf("%d batches sent again", p.Resent())
	ends, err := EndOffsets(client, "restart")
	if err != nil {
		t.Fatal(err)
	}
	if got := ends[0] + ends[1]; got != n {
		t.Fatalf("topic holds %d records, sent %d", got, n)
	}
}

// TestTopicLimit: batches stay within the topic's max.message.bytes
// whatever the batch size asked for, and a record that cannot fit even
// alone is refused before it is sent (the broker would refuse it on every
// attempt).
func TestTopicLimit(t *testing.T) {
	k := testenv.StartKafka(t)
	k.CreateTopicConfig(t, "small", 1, map[string]string{"max.message.bytes": "2000"})
	for _, comp := range []string{"none", "lz4"} {
		t.Run(comp, func(t *testing.T) {
			client, p, out := newTestProducer(t, k, Config{Compression: comp, FlushBytes: 512 << 10, FlushLinger: 50 * time.Millisecond}, "small")
			if out.limit != 2000 {
				t.Fatalf("limit %d, want the topic's 2000", out.limit)
			}
			before, err := EndOffsets(client, "small")
			if err != nil {
				t.Fatal(err)
			}
			big := &Message{Value: make([]byte, 2000)}
			var tl *TooLargeError
			if err := out.Fits(big); !errors.As(err, &tl) {
				t.Fatalf("Fits(2000-byte value) = %v, want a TooLargeError", err)
			}
			if err := out.Send(context.Background(), 0, big, nil); !errors.As(err, &tl) {
				t.Fatalf("Send(2000-byte value) = %v, want a TooLargeError", err)
			}
			acks := &ackCount{offs: map[int32][]int64{}}
			const n = 200
			for i := 0; i < n; i++ {
				m := &Message{Value: fmt.Appendf(nil, `{"i":%d,"pad":"%0150d"}`, i, i)}
				if err := out.Fits(m); err != nil {
					t.Fatal(err)
				}
				if err := out.Send(context.Background(), 0, m, acks); err != nil {
					t.Fatal(err)
				}
			}
			if err := p.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			after, err := EndOffsets(client, "small")
			if err != nil {
				t.Fatal(err)
			}
			if acks.n != n || after[0]-before[0] != n {
				t.Fatalf("%d acknowledged, %d stored, want %d", acks.n, after[0]-before[0], n)
			}
		})
	}
}
