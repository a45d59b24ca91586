package forward

import (
	"fmt"
	"sync/atomic"
	"time"
)

// progress tells whether Kafka keeps up: records handed to the client and
// records settled (acknowledged or refused), and when the last settled or
// the first of a new burst was handed over.
type progress struct {
	handed, settled atomic.Int64
	waiting         atomic.Int32 // logs waiting for Kafka before they can send
	since           atomic.Int64 // unix ns of the last sign of progress
}

// hand counts a record handed to the client.
func (p *progress) hand() {
	if p.handed.Add(1)-1 == p.settled.Load() {
		p.since.Store(time.Now().UnixNano()) // the clock starts with the burst
	}
}

// settle counts a record Kafka answered.
func (p *progress) settle() {
	p.settled.Add(1)
	p.since.Store(time.Now().UnixNano())
}

// wait marks a log waiting for Kafka (to learn its topic, to read back);
// the returned function ends the wait.
func (p *progress) wait() func() {
	if p.waiting.Add(1) == 1 && p.handed.Load() == p.settled.Load() {
		p.since.Store(time.Now().UnixNano())
	}
	return func() { p.waiting.Add(-1) }
}

// lastSettled is the unix time of the last acknowledgement, for a metric.
func (p *progress) lastSettled() float64 {
	return float64(p.since.Load()) / 1e9
}

func (p *progress) healthy(now time.Time, timeout time.Duration) error {
	pending := p.handed.Load() - p.settled.Load()
	waiting := p.waiting.Load()
	if pending <= 0 && waiting == 0 {
		return nil
	}
	if idle := now.Sub(time.Unix(0, p.since.Load())); idle > timeout {
		return fmt.Errorf("no answer from kafka for %v (more than SHIM_HEALTH_TIMEOUT=%v): %d records wait, %d logs wait to start", idle.Round(time.Second), timeout, pending, waiting)
	}
	return nil
}
