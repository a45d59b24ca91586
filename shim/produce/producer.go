package produce

import (
	"context"
	"fmt"
	"sync"

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
	sem     chan struct{}
	wg      sync.WaitGroup

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
	p := &Producer{sem: make(chan struct{}, maxInFlight), failed: make(chan struct{})}
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
			<-p.sem
			if a, ok := m.Metadata.(Acker); ok {
				a.Acked(m.Partition, m.Offset)
			}
		case e, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			<-p.sem
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
func (p *Producer) InFlight() int { return len(p.sem) }

// Send hands msg, whose Partition is set, to the producer of its
// partition, waiting while MaxInFlight messages are unacknowledged.
func (p *Producer) Send(ctx context.Context, msg *sarama.ProducerMessage) error {
	// Fast paths first: a non-blocking send costs far less than a select.
	select {
	case p.sem <- struct{}{}:
	default:
		select {
		case p.sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		case <-p.failed:
			return p.err
		}
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
		<-p.sem
		return ctx.Err()
	case <-p.failed:
		<-p.sem
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
