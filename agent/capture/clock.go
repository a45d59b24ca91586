package capture

import (
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Clock turns the classifier's CLOCK_BOOTTIME timestamps into wall-clock
// time. bpf_ktime_get_boot_ns exists from Linux 5.8 (the TAI clock only
// from 6.1), so the offset between the two clocks is measured here and
// refreshed, which also follows NTP adjustments of the wall clock.
type Clock struct {
	offset atomic.Int64 // realtime - boottime, nanoseconds
}

// NewClock measures the offset once.
func NewClock() *Clock {
	c := &Clock{}
	c.Update()
	return c
}

// Update re-measures the offset: of a few samples, the one with the
// shortest realtime read bracket bounds the error best (well under a
// microsecond).
func (c *Clock) Update() {
	best := int64(-1)
	var offset int64
	for range 5 {
		var ts unix.Timespec
		r1 := time.Now().UnixNano()
		if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
			return
		}
		r2 := time.Now().UnixNano()
		if w := r2 - r1; best < 0 || w < best {
			best = w
			offset = r1 + w/2 - ts.Nano()
		}
	}
	c.offset.Store(offset)
}

// Time converts a CLOCK_BOOTTIME reading in nanoseconds.
func (c *Clock) Time(bootNanos uint64) time.Time {
	return time.Unix(0, int64(bootNanos)+c.offset.Load())
}
