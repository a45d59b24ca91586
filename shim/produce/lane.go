package produce

import (
	"context"
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

// flight is a batch sent and waiting for the broker's answer.
type flight struct {
	b    *batch
	seq  int32  // of its first record
	wire []byte // the record batch as sent
	conn *brokerConn
	corr int32 // the request's correlation id on conn
	err  error // the request could not be written
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
	gate     sync.RWMutex
	conn     *brokerConn   // nil until needed
	connDead bool          // a write on conn failed: send nothing more on it
	seq      int32         // sequence number of the next batch's first record; sender's
	comp     *compressor   // the sender's; nil without compression
	flights  chan *flight  // sender to receiver, in the order sent
	slots    chan struct{} // one token per request in flight
	unread   *brokerConn   // the receiver's: a read on it failed, its answers are lost

	lastStored atomic.Int64  // unix nanoseconds of the last acknowledged batch
	answered   chan struct{} // receiver to sender: a request was answered
}

func newLane(t *Topic, partition int32) (*lane, error) {
	comp, err := newCompressor(t.p.codec)
	if err != nil {
		return nil, err
	}
	return &lane{t: t, partition: partition, wake: make(chan struct{}, 1), answered: make(chan struct{}, 1), comp: comp,
		flights: make(chan *flight, requestsInFlight), slots: make(chan struct{}, requestsInFlight)}, nil
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

// start numbers and seals b, writes its request without waiting for the
// answer and hands it to the receiver. Both under the shared gate, so
// that a receiver holding the gate knows every request that went out.
func (l *lane) start(b *batch) {
	p := l.t.p
	f := &flight{b: b, seq: l.seq}
	f.wire, f.err = b.seal(p.ident, l.seq, l.comp)
	if f.err != nil {
		// Encoding cannot get better by retrying.
		p.fail(fmt.Errorf("%s/%d: %w", l.t.name, l.partition, f.err))
		<-l.slots
		return
	}
	l.seq = nextSequence(l.seq, b.n)
	l.gate.RLock()
	defer l.gate.RUnlock()
	if l.connDead {
		// The stream may hold half a request: the receiver replaces
		// the connection when it meets the failure.
		f.err = &netError{errors.New("connection failed earlier")}
	} else if f.conn, f.err = l.connect(); f.err == nil {
		f.corr, f.err = f.conn.writeProduce(p.reqVersion, requiredAcks, p.timeout, l.t.name, l.partition, f.wire)
		if f.err != nil {
			l.connDead = true
			f.err = &netError{f.err}
		}
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
// its places, buffers and request slot.
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
	p := l.t.p
	p.release(int64(b.n))
	p.pool.put(b)
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
				return fmt.Errorf("produce %d records (sequence %d) to %s/%d (attempt %d): %w", f.b.n, f.seq, l.t.name, l.partition, attempt, err)
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
			if base, err = l.produceLocked(f.wire); err == nil {
				l.stored(f.b, base)
				break
			}
		}
	}
	return nil
}

// result reads the broker's answer to f: the offset of its first record,
// or why it was not stored.
func (l *lane) result(f *flight) (int64, error) {
	if f.err != nil {
		return 0, f.err
	}
	if f.conn == l.unread {
		return 0, &netError{errors.New("connection lost before the answer")}
	}
	r, err := f.conn.readProduce(f.corr, l.t.p.reqVersion, l.t.name, l.partition)
	if err != nil {
		// The stream is out of step: no later answer on it is
		// trustworthy.
		l.unread = f.conn
		return 0, &netError{err}
	}
	return outcome(r)
}

// produceLocked sends the record batch wire and waits for the answer; the
// caller holds the gate exclusively.
func (l *lane) produceLocked(wire []byte) (int64, error) {
	conn, err := l.connect()
	if err != nil {
		return 0, err
	}
	p := l.t.p
	corr, err := conn.writeProduce(p.reqVersion, requiredAcks, p.timeout, l.t.name, l.partition, wire)
	var r produceResult
	if err == nil {
		r, err = conn.readProduce(corr, p.reqVersion, l.t.name, l.partition)
	}
	if err != nil {
		l.disconnectLocked()
		return 0, &netError{err}
	}
	return outcome(r)
}

// outcome turns a partition's answer into the offset of the batch's first
// record (-1: stored before, offset unknown) or an error.
func outcome(r produceResult) (int64, error) {
	switch r.err {
	case sarama.ErrNoError:
		return r.offset, nil
	case sarama.ErrDuplicateSequenceNumber:
		return -1, nil
	}
	if r.message != "" {
		return 0, fmt.Errorf("%w: %s", r.err, r.message)
	}
	return 0, r.err
}

// connect returns the lane's own connection to the partition's leader,
// dialling it if needed; the caller holds the gate. Each partition has
// its own connection because a broker serves the requests of one
// connection one after the other: partitions sharing one would wait for
// each other.
func (l *lane) connect() (*brokerConn, error) {
	if l.conn != nil {
		return l.conn, nil
	}
	p := l.t.p
	leader, err := p.client.Leader(l.t.name, l.partition)
	if err != nil {
		return nil, fmt.Errorf("find leader: %w", err)
	}
	conn, err := dialBroker(context.Background(), leader.Addr(), p.client.Config())
	if err != nil {
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
	l.connDead = false
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
