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
			parts, err := client.Partitions("rb")
			if err != nil {
				t.Fatal(err)
			}
			before, err := EndOffsets(client, "rb")
			if err != nil {
				t.Fatal(err)
			}
			p, err := NewProducer([]string{k.Bootstrap}, sc, 2, 100)
			if err != nil {
				t.Fatal(err)
			}
			const n = 3000
			acks := &ackCount{offs: map[int32][]int64{}}
			src := uint64(len(comp))
			for i := 0; i < n; i++ {
				o := Origin{Source: src, End: int64(i), Hash: uint32(i)}
				key := fmt.Sprint(i)
				msg := &sarama.ProducerMessage{Topic: "rb", Key: sarama.StringEncoder(key), Partition: Partition([]byte(key), int32(len(parts))),
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
			// Acknowledged offsets are increasing within each partition:
			// the order the tracker relies on.
			for part, offs := range acks.offs {
				for j := 1; j < len(offs); j++ {
					if offs[j] <= offs[j-1] {
						t.Fatalf("partition %d: offset %d acknowledged after %d", part, offs[j], offs[j-1])
					}
				}
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
