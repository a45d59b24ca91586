package lograte

import (
	"testing"
	"time"
)

func TestAllow(t *testing.T) {
	l := New(10 * time.Second)
	t0 := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	now := t0
	l.now = func() time.Time { return now }
	step := func(d time.Duration, kind string, wantOK bool, wantQuiet int) {
		t.Helper()
		now = now.Add(d)
		ok, quiet := l.Allow(kind)
		if ok != wantOK || quiet != wantQuiet {
			t.Fatalf("at %v, %s: (%v, %d), want (%v, %d)", now.Sub(t0), kind, ok, quiet, wantOK, wantQuiet)
		}
	}
	step(0, "a", true, 0)
	step(time.Second, "a", false, 0)
	step(time.Second, "a", false, 0)
	step(0, "b", true, 0) // kinds are counted apart
	step(8*time.Second, "a", true, 2)
	step(time.Second, "a", false, 0)
	step(10*time.Second, "a", true, 1)
	step(0, "b", true, 0)
}
