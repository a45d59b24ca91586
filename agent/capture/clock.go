package capture

import (
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// maxBracket is the widest realtime read bracket around a CLOCK_BOOTTIME
// read that Update trusts. A wider one means the thread was preempted
// between the reads, and its offset may be off by half of it.
const maxBracket = 10 * time.Microsecond

// slewPPM is how fast a change of the offset is applied: at most 1000 ns
// per ms of boot time. The mapping from boot time to wall time then never
// runs backwards, so a response is never stamped before its query, even
// when a new measurement differs from the last (noise, or an NTP slew,
// which the kernel limits to 500 ppm).
const slewPPM = 1000

// maxSlew is the largest change applied gradually: a bigger one is a step
// of the wall clock (settimeofday, a VM resumed), followed at once.
const maxSlew = time.Second

// Clock turns the classifier's CLOCK_BOOTTIME timestamps into wall-clock
// time. bpf_ktime_get_boot_ns exists from Linux 5.8 (the TAI clock only
// from 6.1), so the offset between the two clocks is measured here and
// refreshed, which also follows NTP adjustments of the wall clock.
type Clock struct {
	state atomic.Pointer[clockState]
	// The two clocks, replaceable by tests.
	realtime func() int64
	boottime func() (int64, error)
}

// clockState is the offset in force: from anchor (a boot time) on, it
// moves from offset towards target at slewPPM.
type clockState struct {
	anchor, offset, target int64
}

// at is the offset applied at boot time b.
func (s *clockState) at(b int64) int64 {
	d := s.target - s.offset
	if d == 0 || b <= s.anchor {
		return s.offset
	}
	most := (b - s.anchor) / 1_000_000 * slewPPM
	switch {
	case d > most:
		return s.offset + most
	case d < -most:
		return s.offset - most
	}
	return s.target
}

// NewClock measures the offset.
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
// microsecond). A measurement whose best bracket is wider than maxBracket
// is not used (Update reports false). A new offset is slewed in, or
// stepped to when it is maxSlew or more away.
func (c *Clock) Update() bool {
	best := int64(-1)
	var offset, boot int64
	for range 5 {
		r1 := c.realtime()
		b, err := c.boottime()
		if err != nil {
			return false
		}
		r2 := c.realtime()
		if w := r2 - r1; best < 0 || w < best {
			best, boot = w, b
			offset = r1 + w/2 - b
		}
	}
	cur := c.state.Load()
	if cur == nil {
		// The first measurement is used whatever its quality; NewClock
		// tries for a better one.
		c.state.Store(&clockState{anchor: boot, offset: offset, target: offset})
		return best <= int64(maxBracket)
	}
	if best > int64(maxBracket) {
		return false
	}
	now := cur.at(boot)
	if d := offset - now; d >= int64(maxSlew) || d <= -int64(maxSlew) {
		now = offset
	}
	c.state.Store(&clockState{anchor: boot, offset: now, target: offset})
	return true
}

// Time converts a CLOCK_BOOTTIME reading in nanoseconds.
func (c *Clock) Time(bootNanos uint64) time.Time {
	b := int64(bootNanos)
	return time.Unix(0, b+c.state.Load().at(b))
}
