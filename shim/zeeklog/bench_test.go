package zeeklog

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pano-observability/pano/internal/testenv"
)

// BenchmarkParseJSON and BenchmarkParseTSV measure the handling of one
// real dns.log record (JSON check, TSV conversion), the shim's per-line
// CPU cost before Kafka. Each op is the next record of a real log, so
// that lengths, values and cache misses are those of real input.
func BenchmarkParseJSON(b *testing.B) {
	var recs [][]byte
	sc := bufio.NewScanner(testenv.OpenTestdata(b, filepath.Join("..", "testdata", "dnsperf-unbound.dns.json.log.gz")))
	for sc.Scan() {
		recs = append(recs, append([]byte(nil), sc.Bytes()...))
	}
	if err := sc.Err(); err != nil {
		b.Fatal(err)
	}
	p := NewParser()
	benchParse(b, len(recs), func(i int) (*Parser, []byte) { return p, recs[i] })
}

func BenchmarkParseTSV(b *testing.B) {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "zeek-dns", "*.dns.log"))
	if err != nil || len(files) == 0 {
		b.Fatalf("no TSV fixtures: %v", err)
	}
	type rec struct {
		p    *Parser // holding the header of the record's file
		line []byte
	}
	var recs []rec
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		p := NewParser()
		for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
			if l[0] == '#' {
				if _, _, _, err := p.Parse(nil, []byte(l)); err != nil {
					b.Fatalf("%s: %v", f, err)
				}
			} else {
				recs = append(recs, rec{p, []byte(l)})
			}
		}
	}
	benchParse(b, len(recs), func(i int) (*Parser, []byte) { return recs[i].p, recs[i].line })
}

// benchParse parses record i%n for op i; ns/op is per record.
func benchParse(b *testing.B, n int, rec func(i int) (*Parser, []byte)) {
	bytes := 0
	for i := range n {
		_, l := rec(i)
		bytes += len(l)
	}
	b.SetBytes(int64(bytes / n))
	b.ReportAllocs()
	buf := make([]byte, 0, 4096)
	i := 0
	for b.Loop() {
		p, l := rec(i % n)
		if _, _, _, err := p.Parse(buf[:0], l); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
