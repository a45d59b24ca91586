package gobench

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzParse: any input parses without panicking into results that are
// well formed and that Format writes back identically.
func FuzzParse(f *testing.F) {
	f.Add([]byte(verbose))
	f.Add([]byte("BenchmarkA-2\t1\t2 ns/op\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := Parse(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, r := range rep.Results {
			if !strings.HasPrefix(r.Name, "Benchmark") || r.Iterations < 0 || len(r.Metrics) == 0 {
				t.Fatalf("malformed result %+v", r)
			}
			for _, m := range r.Metrics {
				if m.Unit == "" || strings.ContainsAny(m.Unit, " \t\n") {
					t.Fatalf("malformed unit in %+v", r)
				}
			}
			if _, err := rep.Value(r.Name, r.Metrics[0].Unit); err != nil {
				t.Fatalf("Value of a parsed result: %v", err)
			}
		}
		var buf bytes.Buffer
		if err := rep.Format(&buf); err != nil {
			t.Fatal(err)
		}
		again, err := Parse(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if !sameResults(rep.Results, again.Results) {
			t.Fatalf("round trip:\n%+v\n%+v", rep.Results, again.Results)
		}
	})
}
