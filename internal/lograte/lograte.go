// Package lograte keeps a flood of the same warning out of the log: one
// line per kind gets through per interval, and the next one that does
// says how many were held back in between.
package lograte

import (
	"sync"
	"time"
)

// Limiter is safe for concurrent use.
type Limiter struct {
	every time.Duration
	now   func() time.Time

	mu    sync.Mutex
	last  map[string]time.Time
	quiet map[string]int
}

// New lets one line per kind through every interval.
func New(every time.Duration) *Limiter {
	return &Limiter{every: every, now: time.Now, last: map[string]time.Time{}, quiet: map[string]int{}}
}

// Allow reports whether to log a line of kind now and, if so, how many
// lines of that kind were held back since the last one logged.
func (l *Limiter) Allow(kind string) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if last, seen := l.last[kind]; seen && now.Sub(last) < l.every {
		l.quiet[kind]++
		return false, 0
	}
	l.last[kind] = now
	n := l.quiet[kind]
	delete(l.quiet, kind)
	return true, n
}
