package zeeklog

import (
	"math/rand/v2"
	"testing"
)

// TestRuns checks stringRun and digitRun against a byte at a time, at
// every start, on random lines over the bytes that matter to them.
func TestRuns(t *testing.T) {
	alphabet := []byte("az09.-\"\\\x00\x1f\x20\x7f\x80\xff/:")
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b := make([]byte, r.IntN(40))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		for i := 0; i <= len(b); i++ {
			s, d := i, i
			for s < len(b) && !stringStop[b[s]] {
				s++
			}
			for d < len(b) && b[d] >= '0' && b[d] <= '9' {
				d++
			}
			if got := stringRun(b, i); got != s {
				t.Fatalf("stringRun(%q, %d) = %d, want %d", b, i, got, s)
			}
			if got := digitRun(b, i); got != d {
				t.Fatalf("digitRun(%q, %d) = %d, want %d", b, i, got, d)
			}
		}
	}
}
