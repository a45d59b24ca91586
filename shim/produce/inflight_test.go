package produce

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestInFlightBound: several senders share a small in-flight budget that
// a slow acknowledger gives back one by one; never more than the budget is
// taken, no sender is left waiting, and cancelling a waiting sender works.
func TestInFlightBound(t *testing.T) {
	const limit, senders, each = 3, 4, 2000
	p := &Producer{maxInFlight: limit, room: make(chan struct{}, 1), failed: make(chan struct{})}
	held := make(chan struct{}, senders*each)
	var peak atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < senders; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < each; j++ {
				if err := p.acquire(context.Background()); err != nil {
					t.Error(err)
					return
				}
				n := p.inFlight.Load()
				for {
					old := peak.Load()
					if n <= old || peak.CompareAndSwap(old, n) {
						break
					}
				}
				held <- struct{}{}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	released := 0
	for released < senders*each {
		select {
		case <-held:
			p.release(1)
			released++
		case <-time.After(10 * time.Second):
			t.Fatalf("stuck after %d releases, %d in flight, %d waiting", released, p.inFlight.Load(), p.waiters.Load())
		}
	}
	<-done
	if got := peak.Load(); got > limit {
		t.Errorf("%d in flight at once, limit %d", got, limit)
	}
	if got := p.InFlight(); got != 0 {
		t.Errorf("%d in flight at the end, want 0", got)
	}

	// Full: a waiting sender returns when its context ends.
	for i := 0; i < limit; i++ {
		if err := p.acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := p.acquire(ctx); err == nil {
		t.Fatal("acquire beyond the limit succeeded")
	}
	if got := p.InFlight(); got != limit {
		t.Errorf("%d in flight after a cancelled wait, want %d", got, limit)
	}
}
