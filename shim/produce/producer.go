package produce

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/IBM/sarama"
)

// Acker is told the fate of one message; it is the message's Metadata.
// Acked runs on the producer's delivery goroutine.
type Acker interface {
	Acked(partition int32, offset int64)
}

// Producer sends through several idempotent sarama async producers, each
// with its own connections, so that several produce requests are in
// flight at once (an idempotent sarama producer allows one per broker).
// Messages must carry their partition (see Partition); a partition is
// always served by the same producer, which keeps each partition in the
// order of Send. At most MaxInFlight messages are between Send and their
// acknowledgement: Send blocks beyond that, so a slow or absent broker
// stops the reading instead of growing memory.
type Producer struct {
	subs    []sarama.AsyncProducer
	clients []sarama.Client
	wg      sync.WaitGroup

	// A counting semaphore of atomics: a channel operation per record on
	// each side costs more, and a sender rarely has to wait.
	inFlight    atomic.Int64
	maxInFlight int64
	waiters     atomic.Int32  // senders waiting for room
	room        chan struct{} // wakes one of them

	errOnce sync.Once
	failed  chan struct{}
	err     error
}

// NewProducer connects n producers to brokers with cfg (which must use
// the manual partitioner, as SaramaConfig does).
func NewProducer(brokers []string, cfg *sarama.Config, n, maxInFlight int) (*Producer, error) {
	if maxInFlight <= 0 {
		maxInFlight = 50000
	}
	n = max(n, 1)
	p := &Producer{maxInFlight: int64(maxInFlight), room: make(chan struct{}, 1), failed: make(chan struct{})}
	for i := 0; i < n; i++ {
		c, err := sarama.NewClient(brokers, cfg)
		if err != nil {
			p.closeAll()
			return nil, fmt.Errorf("connect producer %d: %w", i, err)
		}
		ap, err := sarama.NewAsyncProducerFromClient(c)
		if err != nil {
			c.Close()
			p.closeAll()
			return nil, fmt.Errorf("start producer %d: %w", i, err)
		}
		p.clients = append(p.clients, c)
		p.subs = append(p.subs, ap)
		p.wg.Add(1)
		go p.deliveries(ap)
	}
	return p, nil
}

func (p *Producer) closeAll() {
	for _, ap := range p.subs {
		ap.AsyncClose()
	}
	p.wg.Wait()
	for _, c := range p.clients {
		c.Close()
	}
}

func (p *Producer) deliveries(ap sarama.AsyncProducer) {
	defer p.wg.Done()
	succ, errs := ap.Successes(), ap.Errors()
	for succ != nil || errs != nil {
		select {
		case m, ok := <-succ:
			if !ok {
				succ = nil
				continue
			}
			p.release()
			if a, ok := m.Metadata.(Acker); ok {
				a.Acked(m.Partition, m.Offset)
			}
		case e, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			p.release()
			// The record stays unacknowledged, so its position is never
			// saved; the caller starts a new session that resends it.
			p.errOnce.Do(func() {
				p.err = fmt.Errorf("produce to %s/%d: %w", e.Msg.Topic, e.Msg.Partition, e.Err)
				close(p.failed)
			})
		}
	}
}

// Failed is closed when a message could not be delivered after all
// retries; Err then says why.
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

// InFlight is the number of messages sent and not yet acknowledged.
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

// release gives back a place and wakes a waiting sender.
func (p *Producer) release() {
	p.inFlight.Add(-1)
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

// Send hands msg, whose Partition is set, to the producer of its
// partition, waiting while MaxInFlight messages are unacknowledged.
func (p *Producer) Send(ctx context.Context, msg *sarama.ProducerMessage) error {
	if err := p.acquire(ctx); err != nil {
		return err
	}
	in := p.subs[int(msg.Partition)%len(p.subs)].Input()
	select {
	case in <- msg:
		return nil
	default:
	}
	select {
	case in <- msg:
		return nil
	case <-ctx.Done():
		p.release()
		return ctx.Err()
	case <-p.failed:
		p.release()
		return p.err
	}
}

// Close flushes what was sent, waits for every acknowledgement (or
// error) and stops the producers.
func (p *Producer) Close() error {
	p.closeAll()
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
