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

// Producer wraps a sarama AsyncProducer. At most MaxInFlight messages are
// between Send and their acknowledgement: Send blocks beyond that, so a
// slow or absent broker stops the reading instead of growing memory.
type Producer struct {
	ap   sarama.AsyncProducer
	sem  chan struct{}
	done chan struct{}

	errOnce sync.Once
	failed  chan struct{}
	err     error
}

// NewProducer starts an async producer on client.
func NewProducer(client sarama.Client, maxInFlight int) (*Producer, error) {
	ap, err := sarama.NewAsyncProducerFromClient(client)
	if err != nil {
		return nil, fmt.Errorf("start producer: %w", err)
	}
	if maxInFlight <= 0 {
		maxInFlight = 50000
	}
	p := &Producer{ap: ap, sem: make(chan struct{}, maxInFlight), done: make(chan struct{}), failed: make(chan struct{})}
	go p.deliveries()
	return p, nil
}

func (p *Producer) deliveries() {
	defer close(p.done)
	succ, errs := p.ap.Successes(), p.ap.Errors()
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
				p.err = fmt.Errorf("produce to %s: %w", e.Msg.Topic, e.Err)
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

// Send hands msg to the producer, waiting while MaxInFlight messages are
// unacknowledged.
func (p *Producer) Send(ctx context.Context, msg *sarama.ProducerMessage) error {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-p.failed:
		return p.err
	}
	select {
	case p.ap.Input() <- msg:
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
// error) and stops the producer.
func (p *Producer) Close() error {
	p.ap.AsyncClose()
	<-p.done
	return p.Err()
}
