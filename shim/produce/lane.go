package produce

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
)

// requestsInFlight is how many produce requests a partition may have
// unanswered at once: the most for which the broker keeps idempotent
// batches in order (and remembers them to drop a resent copy).
const requestsInFlight = 5

// knownFor is how long after its last stored batch a partition's leader
// is trusted to still know the producer. A broker that does not know a
// producer (new producer id, or its state expired: after a day by
// default) accepts any sequence number, so a batch sent behind a failed
// one could be stored across the gap. Until a batch of the partition is
// acknowledged, and again after a long silence, the lane sends one
// request at a time.
const knownFor = 10 * time.Minute

// batch is a partition's records of one produce request.
type batch struct {
	recs        []*sarama.Record
	ackers      []Acker
	bytes       int
	first, last time.Time
}

// flight is a batch sent and waiting for the broker's answer.
type flight struct {
	b    *batch
	seq  int32 // of its first record
	req  *sarama.ProduceRequest
	done chan struct{} // closed when resp or err is set
	resp *sarama.ProduceResponse
	err  error
}

// lane sends one partition's batches over its own connection: a sender
// goroutine encodes and writes up to requestsInFlight requests without
// waiting for the answers, which a receiver goroutine takes in order.
// While the broker stores one batch the next is on its way, instead of
// the two sides waiting for each other.
//
// When a request fails, the ones after it fail too (the broker refuses a
// sequence gap) unless the failure was only a lost answer. The receiver
// then stops the sender, waits for every request still out, and sends the
// failed batches again, in order and with their sequence numbers, so the
// broker stores each once.
type lane struct {
	t         *Topic
	partition int32
	wake      chan struct{}

	mu    sync.Mutex
	open  *batch   // being filled by Send
	ready []*batch // full, waiting for the sender

	// gate is held shared by the sender (the only one to take it so)
	// while it writes a request, and exclusively by the receiver while it
	// resends: the sequence numbers must reach the broker in order. conn
	// belongs to whoever holds the gate.
	gate    sync.RWMutex
	conn    *sarama.Broker // nil until needed
	seq     int32          // sequence number of the next batch's first record; sender's
	flights chan *flight   // sender to receiver, in the order sent
	slots   chan struct{}  // one token per request in flight

	lastStored atomic.Int64  // unix nanoseconds of the last acknowledged batch
	answered   chan struct{} // receiver to sender: a request was answered
}

func newLane(t *Topic, partition int32) *lane {
	return &lane{t: t, partition: partition, wake: make(chan struct{}, 1), answered: make(chan struct{}, 1),
		flights: make(chan *flight, requestsInFlight), slots: make(chan struct{}, requestsInFlight)}
}

func (l *lane) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// send is the lane's sender goroutine.
func (l *lane) send() {
	p := l.t.p
	defer p.wg.Done()
	defer close(l.flights)
	for {
		b := l.take()
		if b == nil {
			return
		}
		// Alone on the wire while the leader may not know the producer.
		for len(l.slots) > 0 && time.Since(time.Unix(0, l.lastStored.Load())) > knownFor {
			select {
			case <-l.answered:
			case <-p.failed:
				return
			}
		}
		select {
		case l.slots <- struct{}{}:
		case <-p.failed:
			return
		}
		l.start(b)
	}
}

// take waits for the next batch to send: a full one, or the open one once
// it has lingered (at once when closing). Nil when closing with nothing
// left, or when the producer failed.
func (l *lane) take() *batch {
	p := l.t.p
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		l.mu.Lock()
		if len(l.ready) > 0 {
			b := l.ready[0]
			l.ready[0] = nil
			l.ready = l.ready[1:]
			l.mu.Unlock()
			return b
		}
		closing := isClosed(p.closing)
		var wait time.Duration
		if b := l.open; b != nil {
			wait = p.linger - time.Since(b.first)
			if wait <= 0 || closing {
				l.open = nil
				l.mu.Unlock()
				return b
			}
		} else if closing {
			l.mu.Unlock()
			return nil
		}
		l.mu.Unlock()
		var expired <-chan time.Time
		if wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			expired = timer.C
		}
		select {
		case <-l.wake:
		case <-expired:
		case <-p.closing:
		case <-p.failed:
			return nil
		}
	}
}

// start numbers b, builds its request, writes it without waiting for the
// answer and hands it to the receiver. Both under the shared gate, so
// that a receiver holding the gate knows every request that went out.
func (l *lane) start(b *batch) {
	p := l.t.p
	n := int32(len(b.recs))
	rb := &sarama.RecordBatch{
		Version:          2,
		Codec:            p.codec,
		CompressionLevel: sarama.CompressionLevelDefault,
		LastOffsetDelta:  n - 1,
		FirstTimestamp:   b.first,
		MaxTimestamp:     b.last,
		ProducerID:       p.producerID,
		ProducerEpoch:    p.epoch,
		FirstSequence:    l.seq,
		Records:          b.recs,
	}
	l.seq = nextSequence(l.seq, n)
	f := &flight{b: b, seq: rb.FirstSequence, req: &sarama.ProduceRequest{RequiredAcks: sarama.WaitForAll,
		Timeout: int32(p.timeout / time.Millisecond), Version: p.reqVersion}, done: make(chan struct{})}
	f.req.AddBatch(l.t.name, l.partition, rb)
	l.gate.RLock()
	defer l.gate.RUnlock()
	conn, err := l.connect()
	if err == nil {
		err = conn.AsyncProduce(f.req, func(resp *sarama.ProduceResponse, err error) {
			f.resp, f.err = resp, err
			close(f.done)
		})
	}
	if err != nil {
		// The receiver sees the failure in its turn and retries.
		f.err = &netError{err}
		close(f.done)
	}
	l.flights <- f // never blocks: slots bound the flights
}

// receive is the lane's receiver goroutine: it takes the answers in the
// order the requests went out, acknowledges the stored batches and
// repairs the stream after a failure.
func (l *lane) receive() {
	p := l.t.p
	defer p.wg.Done()
	for f := range l.flights {
		<-f.done
		base, err := l.result(f)
		if err == nil {
			l.stored(f.b, base)
			continue
		}
		if err := l.recover(f, err); err != nil {
			p.fail(err)
			// Let the sender see the failure and stop.
			for range l.flights {
				<-l.slots
			}
			return
		}
	}
}

// stored acknowledges b, stored from offset base (-1: unknown), and frees
// its places and request slot.
func (l *lane) stored(b *batch, base int64) {
	for i, a := range b.ackers {
		if a != nil {
			off := int64(-1)
			if base >= 0 {
				off = base + int64(i)
			}
			a.Acked(l.partition, off)
		}
	}
	l.t.p.release(int64(len(b.recs)))
	l.lastStored.Store(time.Now().UnixNano())
	<-l.slots
	select {
	case l.answered <- struct{}{}:
	default:
	}
}

// recover runs after first failed with err: it stops the sender, collects
// the requests still out (acknowledging those that were stored after
// all), then sends the failed batches again one at a time, in order, each
// until it is stored or the retries run out.
func (l *lane) recover(first *flight, err error) error {
	p := l.t.p
	l.gate.Lock()
	defer l.gate.Unlock()
	failed := []*flight{first}
	errs := []error{err}
	for done := false; !done; {
		select {
		case f, ok := <-l.flights:
			if !ok {
				done = true
				break
			}
			<-f.done
			if base, err := l.result(f); err == nil {
				l.stored(f.b, base)
			} else {
				failed, errs = append(failed, f), append(errs, err)
			}
		default:
			done = true // the sender waits at the gate: nothing else is out
		}
	}
	// Every answer is in (or the connection broke): only now is closing
	// it safe; closing earlier would turn definite answers into unknown
	// ones. The resends go over a fresh connection to the leader.
	l.disconnectLocked()
	p.resent.Add(int64(len(failed)))
	for i, f := range failed {
		// A batch after a failed one is refused for the gap; only the
		// first failure says whether retrying makes sense.
		err := errs[i]
		if i > 0 && errors.Is(err, sarama.ErrOutOfOrderSequenceNumber) {
			err = nil
		}
		for attempt := 0; ; attempt++ {
			if err != nil && (!retriable(err) || attempt > p.retryMax) {
				return fmt.Errorf("produce %d records (sequence %d) to %s/%d (attempt %d): %w", len(f.b.recs), f.seq, l.t.name, l.partition, attempt, err)
			}
			if err != nil {
				select {
				case <-time.After(p.backoff(attempt)):
				case <-p.failed:
					return p.Err()
				}
				_ = p.client.RefreshMetadata(l.t.name)
			}
			var base int64
			if base, err = l.produceLocked(f.req); err == nil {
				l.stored(f.b, base)
				break
			}
		}
	}
	return nil
}

// result reads a finished flight: the offset of its first record, or why
// it was not stored.
func (l *lane) result(f *flight) (int64, error) {
	if f.err != nil {
		var ne *netError
		if !errors.As(f.err, &ne) {
			f.err = &netError{f.err}
		}
		return 0, f.err
	}
	return l.block(f.resp)
}

// produceLocked sends req and waits for the answer; the caller holds the
// gate exclusively.
func (l *lane) produceLocked(req *sarama.ProduceRequest) (int64, error) {
	conn, err := l.connect()
	if err != nil {
		return 0, err
	}
	resp, err := conn.Produce(req)
	if err != nil {
		l.disconnectLocked()
		return 0, &netError{err}
	}
	return l.block(resp)
}

// block reads the partition's result in a produce response.
func (l *lane) block(resp *sarama.ProduceResponse) (int64, error) {
	blk := resp.GetBlock(l.t.name, l.partition)
	if blk == nil {
		return 0, errors.New("broker's response has no result for the partition")
	}
	switch blk.Err {
	case sarama.ErrNoError:
		return blk.Offset, nil
	case sarama.ErrDuplicateSequenceNumber:
		return -1, nil
	}
	if blk.ErrorMessage != nil && *blk.ErrorMessage != "" {
		return 0, fmt.Errorf("%w: %s", blk.Err, *blk.ErrorMessage)
	}
	return 0, blk.Err
}

// connect returns the lane's own connection to the partition's leader,
// dialling it if needed; the caller holds the gate. Each partition has
// its own connection because a broker serves the requests of one
// connection one after the other: partitions sharing one would wait for
// each other.
func (l *lane) connect() (*sarama.Broker, error) {
	if l.conn != nil {
		return l.conn, nil
	}
	p := l.t.p
	leader, err := p.client.Leader(l.t.name, l.partition)
	if err != nil {
		return nil, fmt.Errorf("find leader: %w", err)
	}
	conn := sarama.NewBroker(leader.Addr())
	if err := conn.Open(p.client.Config()); err != nil {
		return nil, &netError{fmt.Errorf("connect to %s: %w", leader.Addr(), err)}
	}
	// Open dials in the background; Connected waits for it.
	if ok, err := conn.Connected(); !ok {
		if err == nil {
			err = errors.New("not connected")
		}
		_ = conn.Close()
		return nil, &netError{fmt.Errorf("connect to %s: %w", leader.Addr(), err)}
	}
	l.conn = conn
	return conn, nil
}

// disconnectLocked drops the connection (its state is unknown after a
// failure, or the leader moved); the caller holds the gate exclusively.
func (l *lane) disconnectLocked() {
	if l.conn != nil {
		_ = l.conn.Close()
		l.conn = nil
	}
}

// netError marks a failed exchange with the broker (connection refused,
// reset, timed out), which a retry may overcome.
type netError struct{ err error }

func (e *netError) Error() string { return e.err.Error() }
func (e *netError) Unwrap() error { return e.err }

// retriable reports whether sending the same batch again may succeed.
func retriable(err error) bool {
	var ne *netError
	if errors.As(err, &ne) {
		return true
	}
	var ke sarama.KError
	if errors.As(err, &ke) {
		switch ke {
		case sarama.ErrNotLeaderForPartition, sarama.ErrLeaderNotAvailable, sarama.ErrRequestTimedOut,
			sarama.ErrNotEnoughReplicas, sarama.ErrNotEnoughReplicasAfterAppend, sarama.ErrNetworkException,
			sarama.ErrKafkaStorageError, sarama.ErrUnknownTopicOrPartition, sarama.ErrBrokerNotAvailable,
			sarama.ErrNotController, sarama.ErrOffsetsLoadInProgress, sarama.ErrConsumerCoordinatorNotAvailable:
			return true
		}
		return false
	}
	// Finding the leader failed (metadata, no broker up): try again.
	return errors.Is(err, sarama.ErrOutOfBrokers) || errors.Is(err, sarama.ErrLeaderNotAvailable) ||
		errors.Is(err, sarama.ErrUnknownTopicOrPartition) || errors.Is(err, sarama.ErrNotConnected)
}

// nextSequence adds n to a sequence number, which wraps to 0 after
// math.MaxInt32 as the protocol says.
func nextSequence(seq, n int32) int32 {
	if seq > math.MaxInt32-n {
		return n - (math.MaxInt32 - seq) - 1
	}
	return seq + n
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
