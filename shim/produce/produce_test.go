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
		{TLS: TLSConfig{Enable: true, CAFile: "/nonexistent"}}} {
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
	if !sc.Producer.Idempotent || sc.Net.MaxOpenRequests != 1 || sc.Producer.RequiredAcks != sarama.WaitForAll {
		t.Fatalf("not an idempotent acks=all producer: %+v", sc.Producer)
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
			sc, err := SaramaConfig(Config{Compression: comp, FlushLinger: 5 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			client, err := sarama.NewClient([]string{k.Bootstrap}, sc)
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			before, err := EndOffsets(client, "rb")
			if err != nil {
				t.Fatal(err)
			}
			p, err := NewProducer(client, 100)
			if err != nil {
				t.Fatal(err)
			}
			const n = 3000
			acks := &ackCount{offs: map[int32][]int64{}}
			src := uint64(len(comp))
			for i := 0; i < n; i++ {
				o := Origin{Source: src, End: int64(i), Hash: uint32(i)}
				msg := &sarama.ProducerMessage{Topic: "rb", Key: sarama.StringEncoder(fmt.Sprint(i)),
					Value:   sarama.StringEncoder(fmt.Sprintf(`{"i":%d}`, i)),
					Headers: []sarama.RecordHeader{{Key: []byte(OriginHeader), Value: o.Encode()}}, Metadata: acks}
				if err := p.Send(context.Background(), msg); err != nil {
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
