package capture

import (
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// maxBracket is the widest realtime read bracket around a CLOCK_BOOTTIME
// read that Update trusts. A wider one means the thread was preempted
// between the reads, and its offset may be off by half of it: on a loaded
// machine that was hundreds of microseconds, more than a DNS exchange
// across a veth takes, so a response could be stamped before its query.
const maxBracket = 10 * time.Microsecond

// Clock turns the classifier's CLOCK_BOOTTIME timestamps into wall-clock
// time. bpf_ktime_get_boot_ns exists from Linux 5.8 (the TAI clock only
// from 6.1), so the offset between the two clocks is measured here and
// refreshed, which also follows NTP adjustments of the wall clock.
type Clock struct {
	offset atomic.Int64 // realtime - boottime, nanoseconds
	// The two clocks, replaceable by tests.
	realtime func() int64
	boottime func() (int64, error)
}

// NewClock measures the offset once.
func NewClock() *Clock {
	c := &Clock{
		realtime: func() int64 { return time.Now().UnixNano() },
		boottime: func() (int64, error) {
			var ts unix.Timespec
			err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
			return ts.Nano(), err
		},
	}
	for range 100 {
		if c.Update() {
			break
		}
	}
	return c
}

// Update re-measures the offset: of a few samples, the one with the
// shortest realtime read bracket bounds the error best (well under a
// microsecond). If even that bracket is wider than maxBracket, the offset
// is left as it was and Update reports false.
func (c *Clock) Update() bool {
	best := int64(-1)
	var offset int64
	for range 5 {
		r1 := c.realtime()
		b, err := c.boottime()
		if err != nil {
			return false
		}
		r2 := c.realtime()
		if w := r2 - r1; best < 0 || w < best {
			best = w
			offset = r1 + w/2 - b
		}
	}
	if best > int64(maxBracket) && c.offset.Load() != 0 {
		return false
	}
	c.offset.Store(offset)
	return best <= int64(maxBracket)
}

// Time converts a CLOCK_BOOTTIME reading in nanoseconds.
func (c *Clock) Time(bootNanos uint64) time.Time {
	return time.Unix(0, int64(bootNanos)+c.offset.Load())
}
