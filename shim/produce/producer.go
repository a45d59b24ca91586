package produce

import (
	"context"
	"errors"
	"fmt"
	"strconv"
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

// Producer is an idempotent Kafka producer of its own, not sarama's async
// producer: Send encodes a record straight into its partition's open
// record batch, with no channel hop and no message object per record,
// and each partition has a lane (lane.go) with its own connection to the
// leader and up to requestsInFlight requests out, so partitions proceed
// in parallel while each keeps the order of Send. Sequence numbers under
// one producer id let the broker drop a batch it already stored when a
// retry resends it. sarama's client serves the rest: metadata, leaders,
// the producer id.
//
// At most MaxInFlight records are between Send and their acknowledgement:
// Send blocks beyond that, so a slow or absent broker stops the reading
// instead of growing memory. A batch that cannot be stored after the
// retries fails the producer (see Failed); its records stay
// unacknowledged, and the caller starts again from its saved position.
type Producer struct {
	client     sarama.Client
	ident      producerIdentity
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
	pool   batchPool

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
		ident:       producerIdentity{id: id.ProducerID, epoch: id.ProducerEpoch},
		codec:       codec,
		reqVersion:  produceVersion(conf.Version),
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

// produceVersion is the produce request version to send for the Kafka
// version the user configured: the newest it understands up to 8, the
// last before the flexible encoding (brokers from 2.4 to 4.x take it; 3
// is the first with record batches, which idempotence needs).
func produceVersion(v sarama.KafkaVersion) int16 {
	switch {
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

// requiredAcks: every in-sync replica, which idempotence requires.
const requiredAcks = int16(sarama.WaitForAll)

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
	limit int // the most bytes the brokers take in one record batch
	fill  int // a batch is sent before it grows beyond this
}

// defaultMaxMessageBytes is Kafka's default limit on a record batch
// (message.max.bytes), assumed when the topic's own cannot be read.
const defaultMaxMessageBytes = 1048588

// TooLargeError is a record that cannot be stored: alone in a record
// batch it is larger than the topic's max.message.bytes.
type TooLargeError struct{ Size, Limit int }

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("a %d-byte record batch for one record exceeds the topic's max.message.bytes (%d)", e.Size, e.Limit)
}

// maxMessageBytes reads the topic's max.message.bytes from the leader of
// its first partition: a batch larger than that would be refused,
// forever, however often it is sent again.
func (p *Producer) maxMessageBytes(topic string) (int, error) {
	b, err := p.client.Leader(topic, 0)
	if err != nil {
		return 0, err
	}
	req := &sarama.DescribeConfigsRequest{Resources: []*sarama.ConfigResource{
		{Type: sarama.TopicResource, Name: topic, ConfigNames: []string{"max.message.bytes"}}}}
	if p.client.Config().Version.IsAtLeast(sarama.V1_1_0_0) {
		req.Version = 1 // Kafka 4 no longer takes version 0
	}
	resp, err := b.DescribeConfigs(req)
	if err != nil {
		return 0, err
	}
	for _, r := range resp.Resources {
		if r.ErrorCode != 0 {
			return 0, fmt.Errorf("%w: %s", sarama.KError(r.ErrorCode), r.ErrorMsg)
		}
		for _, c := range r.Configs {
			if c.Name == "max.message.bytes" {
				n, err := strconv.Atoi(c.Value)
				if err != nil || n <= batchHeaderLen {
					return 0, fmt.Errorf("max.message.bytes %q", c.Value)
				}
				return n, nil
			}
		}
	}
	return 0, errors.New("max.message.bytes not in the answer")
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
	limit, err := p.maxMessageBytes(topic)
	if err != nil {
		// Not allowed to describe the topic, say: Kafka's default is
		// what most topics have.
		limit = defaultMaxMessageBytes
	}
	t := &Topic{p: p, name: topic, lanes: make([]*lane, partitions), limit: limit,
		fill: min(p.batchBytes+batchHeaderLen, limit)}
	if p.codec != sarama.CompressionNone {
		// Records that do not compress come out a little larger.
		t.fill = min(t.fill, limit-limit/64-64)
	}
	for i := range t.lanes {
		l, err := newLane(t, int32(i))
		if err != nil {
			return nil, err
		}
		t.lanes[i] = l
	}
	for _, l := range t.lanes {
		p.wg.Add(2)
		go l.send()
		go l.receive()
	}
	p.topics[topic] = t
	return t, nil
}

// Fits returns a *TooLargeError if m is too large for the topic even
// alone in a batch; Send refuses such a record with the same check.
func (t *Topic) Fits(m *Message) error { return t.fits(encodedLen(m, 0, 0)) }

// fits checks a record of encoded size alone (its length included).
func (t *Topic) fits(alone int) error {
	if n := batchHeaderLen + alone; n > t.limit {
		return &TooLargeError{Size: n, Limit: t.limit}
	}
	return nil
}

// Send copies m into the open batch of its partition, waiting while
// MaxInFlight records are unacknowledged; a is told when Kafka stored it.
func (t *Topic) Send(ctx context.Context, partition int32, m *Message, a Acker) error {
	if partition < 0 || int(partition) >= len(t.lanes) {
		return fmt.Errorf("topic %s: partition %d of %d", t.name, partition, len(t.lanes))
	}
	alone := encodedLen(m, 0, 0)
	if err := t.fits(alone); err != nil {
		return err
	}
	p := t.p
	if err := p.acquire(ctx); err != nil {
		return err
	}
	l := t.lanes[partition]
	// An upper bound: the varints of the deltas take at most 10 bytes
	// each, and the rest is known.
	size := alone + 20
	now := time.Now()
	l.mu.Lock()
	signal := false
	if l.open != nil && len(l.open.buf)+size > t.fill {
		l.ready = append(l.ready, l.open)
		l.open = nil
		signal = true
	}
	if l.open == nil {
		// The first record starts the linger clock: wake the sender.
		l.open = p.pool.get(t.fill)
		signal = true
	}
	l.open.add(m, now, a)
	l.mu.Unlock()
	if signal {
		l.signal()
	}
	return nil
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
