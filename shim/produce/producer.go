package produce

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
)

// Acker is told the fate of one record: Acked runs, on the producer's
// goroutine of the record's partition, once Kafka has stored it.
type Acker interface {
	Acked(partition int32, offset int64)
}

// Producer is an idempotent Kafka producer built on sarama's protocol
// layer (record batches and produce requests) instead of its async
// producer: a record goes from Send straight into its partition's open
// batch, with no channel hop per record, and each partition has its own
// sender goroutine with one request in flight, so partitions proceed in
// parallel over the brokers' pipelined connections while each keeps the
// order of Send. Sequence numbers under one producer id let the broker
// drop a batch it already stored when a retry resends it.
//
// At most MaxInFlight records are between Send and their acknowledgement:
// Send blocks beyond that, so a slow or absent broker stops the reading
// instead of growing memory. A batch that cannot be stored after the
// retries fails the producer (see Failed); its records stay
// unacknowledged, and the caller starts again from its saved position.
type Producer struct {
	client     sarama.Client
	producerID int64
	epoch      int16
	codec      sarama.CompressionCodec
	reqVersion int16
	timeout    time.Duration
	batchBytes int
	linger     time.Duration
	retryMax   int
	backoff    func(retries int) time.Duration

	// A counting semaphore of atomics: a channel operation per record on
	// each side costs more, and a sender rarely has to wait.
	inFlight    atomic.Int64
	maxInFlight int64
	waiters     atomic.Int32  // senders waiting for room
	room        chan struct{} // wakes one of them

	resent atomic.Int64 // batches sent again after a failed request

	mu      sync.Mutex
	topics  map[string]*Topic
	wg      sync.WaitGroup
	closing chan struct{}
	closed  bool

	errOnce sync.Once
	failed  chan struct{}
	err     error
}

// NewProducer obtains a producer id from the cluster behind client and
// returns a producer that sends through client's connections (the client
// must stay open until Close returns; its config comes from SaramaConfig).
func NewProducer(client sarama.Client, c Config) (*Producer, error) {
	conf := client.Config()
	if !conf.Version.IsAtLeast(sarama.V0_11_0_0) {
		return nil, fmt.Errorf("kafka version %s: idempotent record batches need 0.11 or later", conf.Version)
	}
	codec, err := compressionCodec(c.Compression)
	if err != nil {
		return nil, err
	}
	id, err := initProducerID(client)
	if err != nil {
		return nil, err
	}
	p := &Producer{
		client:      client,
		producerID:  id.ProducerID,
		epoch:       id.ProducerEpoch,
		codec:       codec,
		reqVersion:  produceRequestVersion(conf.Version),
		timeout:     conf.Producer.Timeout,
		batchBytes:  c.FlushBytes,
		linger:      c.FlushLinger,
		retryMax:    c.RetryMax,
		backoff:     retryBackoff(c.RetryBackoff),
		maxInFlight: int64(c.MaxInFlight),
		room:        make(chan struct{}, 1),
		topics:      map[string]*Topic{},
		closing:     make(chan struct{}),
		failed:      make(chan struct{}),
	}
	if p.batchBytes <= 0 {
		p.batchBytes = 512 << 10
	}
	if p.retryMax <= 0 {
		p.retryMax = 10
	}
	if p.maxInFlight <= 0 {
		p.maxInFlight = 50000
	}
	if p.timeout <= 0 {
		p.timeout = 10 * time.Second
	}
	return p, nil
}

// initProducerID asks the cluster for a producer id, waiting while a
// broker that just started is still loading its coordinator state.
func initProducerID(client sarama.Client) (*sarama.InitProducerIDResponse, error) {
	for attempt := 0; ; attempt++ {
		id, err := client.InitProducerID()
		if err == nil && id.Err != sarama.ErrNoError {
			err = id.Err
		}
		if err == nil {
			return id, nil
		}
		switch {
		case errors.Is(err, sarama.ErrOffsetsLoadInProgress), errors.Is(err, sarama.ErrConsumerCoordinatorNotAvailable),
			errors.Is(err, sarama.ErrNotCoordinatorForConsumer):
			// Loading takes a second or so: look again soon, for
			// up to about half a minute.
			if attempt < 60 {
				time.Sleep(min(time.Duration(attempt+1)*50*time.Millisecond, time.Second))
				continue
			}
		}
		return nil, fmt.Errorf("obtain a producer id: %w", err)
	}
}

// produceRequestVersion is the newest produce request version the
// configured Kafka version understands (3 is the first with record
// batches, which idempotence needs).
func produceRequestVersion(v sarama.KafkaVersion) int16 {
	switch {
	case v.IsAtLeast(sarama.V3_7_0_0):
		return 10
	case v.IsAtLeast(sarama.V2_8_0_0):
		return 9
	case v.IsAtLeast(sarama.V2_4_0_0):
		return 8
	case v.IsAtLeast(sarama.V2_1_0_0):
		return 7
	case v.IsAtLeast(sarama.V2_0_0_0):
		return 6
	case v.IsAtLeast(sarama.V1_0_0_0):
		return 5
	default:
		return 3
	}
}

// retryBackoff doubles from base up to 10x base.
func retryBackoff(base time.Duration) func(int) time.Duration {
	if base <= 0 {
		base = 100 * time.Millisecond
	}
	return func(retries int) time.Duration { return min(base<<min(retries, 10), 10*base) }
}

// Topic is the producer's handle on one topic: one sender per partition.
type Topic struct {
	p     *Producer
	name  string
	lanes []*lane
}

// Topic returns the handle of topic, which has partitions partitions;
// every Send to it must name one of them. The same handle is returned for
// the same topic while the producer lives.
func (p *Producer) Topic(topic string, partitions int32) (*Topic, error) {
	if partitions <= 0 {
		return nil, fmt.Errorf("topic %s: %d partitions", topic, partitions)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("producer closed")
	}
	if t, ok := p.topics[topic]; ok {
		if int32(len(t.lanes)) != partitions {
			return nil, fmt.Errorf("topic %s: asked for %d partitions, already sending to %d", topic, partitions, len(t.lanes))
		}
		return t, nil
	}
	t := &Topic{p: p, name: topic, lanes: make([]*lane, partitions)}
	for i := range t.lanes {
		l := newLane(t, int32(i))
		t.lanes[i] = l
		p.wg.Add(2)
		go l.send()
		go l.receive()
	}
	p.topics[topic] = t
	return t, nil
}

// Send adds rec to the open batch of its partition, waiting while
// MaxInFlight records are unacknowledged. rec must not be touched again
// until a is told it was stored (or the producer failed); Send sets its
// OffsetDelta and TimestampDelta.
func (t *Topic) Send(ctx context.Context, partition int32, rec *sarama.Record, a Acker) error {
	if partition < 0 || int(partition) >= len(t.lanes) {
		return fmt.Errorf("topic %s: partition %d of %d", t.name, partition, len(t.lanes))
	}
	p := t.p
	if err := p.acquire(ctx); err != nil {
		return err
	}
	l := t.lanes[partition]
	size := recordSize(rec)
	now := time.Now()
	l.mu.Lock()
	signal := false
	if l.open != nil && l.open.bytes+size > p.batchBytes {
		l.ready = append(l.ready, l.open)
		l.open = nil
		signal = true
	}
	if l.open == nil {
		// The first record starts the linger clock: wake the sender.
		l.open = &batch{first: now, recs: make([]*sarama.Record, 0, 64), ackers: make([]Acker, 0, 64)}
		signal = true
	}
	b := l.open
	rec.OffsetDelta = int64(len(b.recs))
	rec.TimestampDelta = now.Sub(b.first)
	b.recs = append(b.recs, rec)
	b.ackers = append(b.ackers, a)
	b.bytes += size
	b.last = now
	l.mu.Unlock()
	if signal {
		l.signal()
	}
	return nil
}

// recordSize is about what rec takes in a batch; it decides when a batch
// is full, so it need not be exact.
func recordSize(r *sarama.Record) int {
	n := 16 + len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += 4 + len(h.Key) + len(h.Value)
	}
	return n
}

func (p *Producer) fail(err error) {
	p.errOnce.Do(func() {
		p.err = err
		close(p.failed)
	})
}

// Failed is closed when a batch could not be stored after all retries;
// Err then says why.
func (p *Producer) Failed() <-chan struct{} { return p.failed }

// Err returns the first delivery error.
func (p *Producer) Err() error {
	select {
	case <-p.failed:
		return p.err
	default:
		return nil
	}
}

// Resent is the number of batches sent again after a failed request.
func (p *Producer) Resent() int64 { return p.resent.Load() }

// InFlight is the number of records sent and not yet acknowledged.
func (p *Producer) InFlight() int { return int(p.inFlight.Load()) }

// acquire takes a place among the MaxInFlight, waiting for one.
func (p *Producer) acquire(ctx context.Context) error {
	if p.tryAcquire() {
		return nil
	}
	// Say that a sender waits, then look again: a release either
	// happened before (room now) or sees the count and wakes a waiter.
	p.waiters.Add(1)
	defer p.waiters.Add(-1)
	for {
		if p.tryAcquire() {
			// Pass the wake-up on if room is left for another waiter.
			if p.waiters.Load() > 1 && p.inFlight.Load() < p.maxInFlight {
				p.wake()
			}
			return nil
		}
		select {
		case <-p.room:
		case <-ctx.Done():
			return ctx.Err()
		case <-p.failed:
			return p.err
		}
	}
}

// tryAcquire takes a place if one is free. A compare-and-swap, not an
// add-then-undo, so the count never shows places that were not taken.
func (p *Producer) tryAcquire() bool {
	for {
		n := p.inFlight.Load()
		if n >= p.maxInFlight {
			return false
		}
		if p.inFlight.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release gives back n places and wakes a waiting sender.
func (p *Producer) release(n int64) {
	p.inFlight.Add(-n)
	if p.waiters.Load() > 0 {
		p.wake()
	}
}

func (p *Producer) wake() {
	select {
	case p.room <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// Close sends what was given to Send, waits for every acknowledgement (or
// the first failure) and stops the senders. The client stays open.
func (p *Producer) Close() error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.closing)
	}
	p.mu.Unlock()
	p.wg.Wait()
	return p.Err()
}

// Partition returns the partition of key among n partitions: FNV-1a, as
// sarama's default hash partitioner computes it, so that records with the
// same uid land together whatever sarama producer wrote them.
func Partition(key []byte, n int32) int32 {
	h := uint32(2166136261)
	for _, c := range key {
		h ^= uint32(c)
		h *= 16777619
	}
	p := int32(h) % n
	if p < 0 {
		p = -p
	}
	return p
}
