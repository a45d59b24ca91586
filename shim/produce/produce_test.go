package produce

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/pano-observability/pano/internal/testenv"
)

type ackCount struct {
	mu   sync.Mutex
	n    int
	offs map[int32][]int64
}

func (a *ackCount) Acked(p int32, off int64) {
	a.mu.Lock()
	a.n++
	a.offs[p] = append(a.offs[p], off)
	a.mu.Unlock()
}

func TestOriginRoundTrip(t *testing.T) {
	o := Origin{Source: 0xdeadbeefcafef00d, End: 1 << 40, Hash: 0x01020304}
	got, ok := DecodeOrigin(o.Encode())
	if !ok || got != o {
		t.Fatalf("%+v -> %+v %v", o, got, ok)
	}
	if _, ok := DecodeOrigin([]byte{1, 2}); ok {
		t.Fatal("short header accepted")
	}
}

func TestConfigRejects(t *testing.T) {
	for _, c := range []Config{{Compression: "brotli"}, {Version: "x"}, {SASL: SASLConfig{Mechanism: "GSSAPI"}},
		{TLS: TLSConfig{Enable: true, CAFile: "/nonexistent"}}, {Version: "0.10.2.0"}, {MaxInFlight: -1}} {
		if _, err := SaramaConfig(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	for _, m := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		sc, err := SaramaConfig(Config{SASL: SASLConfig{Mechanism: m, User: "u", Password: "p"}})
		if err != nil || !sc.Net.SASL.Enable {
			t.Errorf("%s: %v", m, err)
		}
	}
	sc, err := SaramaConfig(Config{})
	if err != nil {
		t.Fatal(err)
	}
	// Requests of several partitions share a connection; each
	// partition has one at a time (see lane).
	if sc.Net.MaxOpenRequests < 2 || !sc.Version.IsAtLeast(sarama.V0_11_0_0) {
		t.Fatalf("connections allow %d requests at once, version %s", sc.Net.MaxOpenRequests, sc.Version)
	}
}

// TestProduceAndReadBack sends records through the bounded producer to a
// real broker, then finds every origin again with Seen, from offset 0 and
// from the middle.
func TestProduceAndReadBack(t *testing.T) {
	k := testenv.StartKafka(t)
	k.CreateTopic(t, "rb", 3)
	for _, comp := range []string{"lz4", "zstd", "snappy", "gzip", "none"} {
		t.Run(comp, func(t *testing.T) {
			cfg := Config{Compression: comp, FlushLinger: 5 * time.Millisecond, FlushBytes: 16 << 10, MaxInFlight: 100}
			client, p, out := newTestProducer(t, k, cfg, "rb")
			before, err := EndOffsets(client, "rb")
			if err != nil {
				t.Fatal(err)
			}
			parts := out.lanes
			const n = 3000
			acks := &ackCount{offs: map[int32][]int64{}}
			src := uint64(len(comp))
			for i := 0; i < n; i++ {
				o := Origin{Source: src, End: int64(i), Hash: uint32(i)}
				key := []byte(fmt.Sprint(i))
				m := &Message{Key: key, Value: fmt.Appendf(nil, `{"i":%d}`, i),
					Headers: []Header{{Key: []byte(OriginHeader), Value: o.Encode()}}}
				if err := out.Send(context.Background(), Partition(key, int32(len(parts))), m, acks); err != nil {
					t.Fatal(err)
				}
				if p.InFlight() > 100 {
					t.Fatalf("%d in flight, cap 100", p.InFlight())
				}
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if acks.n != n {
				t.Fatalf("%d acks for %d records", acks.n, n)
			}
			// Acknowledged offsets follow each other within each
			// partition, from where it ended before: the order the
			// tracker relies on, and nothing stored twice.
			for part, offs := range acks.offs {
				for j, off := range offs {
					if want := before[part] + int64(j); off != want {
						t.Fatalf("partition %d: acknowledgement %d at offset %d, want %d", part, j, off, want)
					}
				}
			}
			after, err := EndOffsets(client, "rb")
			if err != nil {
				t.Fatal(err)
			}
			var added int64
			for part, end := range after {
				added += end - before[part]
			}
			if added != n {
				t.Fatalf("topic grew by %d records, want %d", added, n)
			}
			start := time.Now()
			seen, err := Seen(context.Background(), client, "rb", before, func(s uint64) bool { return s == src })
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("read back %d records in %v", len(seen), time.Since(start))
			if len(seen) != n {
				t.Fatalf("read back %d origins, want %d", len(seen), n)
			}
			for i := 0; i < n; i++ {
				if _, ok := seen[Origin{Source: src, End: int64(i), Hash: uint32(i)}]; !ok {
					t.Fatalf("origin %d not found", i)
				}
			}
		})
	}
}

// TestPartitionLikeSarama: Partition agrees with sarama's hash partitioner.
func TestPartitionLikeSarama(t *testing.T) {
	hp := sarama.NewHashPartitioner("t")
	for i := 0; i < 1000; i++ {
		key := fmt.Sprintf("C%09dxyz", i*7919)
		want, err := hp.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(key)}, 7)
		if err != nil {
			t.Fatal(err)
		}
		if got := Partition([]byte(key), 7); got != want {
			t.Fatalf("%s: %d, sarama %d", key, got, want)
		}
	}
}
