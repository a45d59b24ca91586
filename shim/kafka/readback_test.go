package kafka

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pano-observability/pano/internal/testenv"
)

// TestReadBackFindsLastLines: records of two sources spread over six
// partitions; a read-back from given offsets finds, per partition and
// source, the last line written after them, and nothing before them.
func TestReadBackFindsLastLines(t *testing.T) {
	k := testenv.StartKafka(t)
	k.CreateTopic(t, "dns", 6)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := Config{Brokers: []string{k.Bootstrap}, Compression: "lz4", BatchBytes: 1 << 20, MaxBuffered: 1000}
	copts, err := cfg.ClientOpts(nil)
	if err != nil {
		t.Fatal(err)
	}
	popts, err := cfg.ProducerOpts(NewBatchLimits(cfg.BatchBytes))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append(copts, popts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	produce := func(src uint64, from, to int) map[SentKey]int64 {
		last := map[SentKey]int64{}
		var recs []*kgo.Record
		for i := from; i < to; i++ {
			o := Origin{Source: src, End: int64(i) * 100, Hash: uint32(i)}
			key := []byte(fmt.Sprintf("C%d", i))
			p := Partition(key, o, 6)
			var h [OriginLen]byte
			o.Put(h[:])
			recs = append(recs, &kgo.Record{Topic: "dns", Partition: p, Key: key, Value: []byte("{}"),
				Headers: []kgo.RecordHeader{{Key: OriginHeader, Value: h[:]}}})
			last[SentKey{p, src}] = o.End
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		return last
	}
	produce(1, 1, 300) // before the saved offsets: must not be found
	mid, err := EndOffsets(ctx, cl, "dns")
	if err != nil || len(mid) != 6 {
		t.Fatalf("end offsets %v: %v", mid, err)
	}
	want := produce(1, 300, 1000)
	for k, v := range produce(2, 1, 500) {
		want[k] = v
	}
	got, stats, err := ReadBack(ctx, copts, "dns", mid)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Records != 700+499 || stats.Partitions != 6 {
		t.Errorf("read %d records from %d partitions, want %d from 6", stats.Records, stats.Partitions, 700+499)
	}
	if len(got) != len(want) {
		t.Errorf("found %d partition/source pairs, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("partition %d source %d: last end %d, want %d", k.Partition, k.Source, got[k], v)
		}
	}
	// From the oldest record (no saved offsets): source 1's earlier lines
	// are there too, and its last line is the same.
	all, stats, err := ReadBack(ctx, copts, "dns", nil)
	if err != nil || stats.Records != 299+700+499 {
		t.Fatalf("read back everything: %d records, %v", stats.Records, err)
	}
	if all.Last(1) != 99900 || all.Last(2) != 49900 {
		t.Fatalf("last ends %d %d", all.Last(1), all.Last(2))
	}
	// Nothing after the end: nothing to read.
	end, _ := EndOffsets(ctx, cl, "dns")
	none, stats, err := ReadBack(ctx, copts, "dns", end)
	if err != nil || len(none) != 0 || stats.Records != 0 {
		t.Fatalf("read back from the end: %v %+v %v", none, stats, err)
	}
}

// TestTopicChecks: a topic the brokers do not create is an error that
// says how to fix it; a topic's max.message.bytes caps its batches.
func TestTopicChecks(t *testing.T) {
	k := testenv.StartKafka(t) // never creates topics by itself
	k.CreateTopicConfig(t, "small", 1, map[string]string{"max.message.bytes": "20000"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := Config{Brokers: []string{k.Bootstrap}}
	opts, err := cfg.ClientOpts(nil)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := AskForTopic(ctx, cl, "absent"); err != nil {
		t.Fatalf("asking for an absent topic: %v", err)
	}
	if _, err := EndOffsets(ctx, cl, "absent"); !errors.Is(err, ErrNoTopic) {
		t.Fatalf("absent topic: %v", err)
	}
	limits := NewBatchLimits(512 << 10)
	got, err := limits.Learn(ctx, cl, "small")
	if err != nil || got != 20000-batchOverhead || limits.Of("small") != got || limits.Of("other") != 512<<10 {
		t.Fatalf("limit %d (%v); of small %d, of other %d", got, err, limits.Of("small"), limits.Of("other"))
	}
}
