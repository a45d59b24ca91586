package kafka

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Sent is what a read-back found: for each partition and source, the end
// offset of the last line found there. Lines are sent in file order and
// an idempotent producer keeps that order in each partition, so every
// line of that source routed to that partition up to that end is in
// Kafka, and none after it. Its size is partitions times files, however
// many records the read-back passes.
type Sent map[SentKey]int64

// SentKey is a partition and a source.
type SentKey struct {
	Partition int32
	Source    uint64
}

// Has reports whether the line o, routed to partition p, is in Kafka.
func (s Sent) Has(p int32, o Origin) bool {
	end, ok := s[SentKey{p, o.Source}]
	return ok && o.End <= end
}

// Last returns the end of the last line of source found in any partition:
// no line after it can be in Kafka.
func (s Sent) Last(source uint64) int64 {
	var last int64
	for k, end := range s {
		if k.Source == source {
			last = max(last, end)
		}
	}
	return last
}

// ReadBackStats says what a read-back read.
type ReadBackStats struct {
	Records    int64 // records read
	Partitions int   // partitions read
}

// stallTimeout ends a read-back that gets no record for this long before
// the end it is reading to.
const stallTimeout = 30 * time.Second

// ReadBack reads topic from the offsets in from (a partition missing from
// it: from its oldest record) to the end offsets as they are now, with a
// consumer of its own built from opts (ClientOpts), and returns where each
// source's lines end in each partition.
func ReadBack(ctx context.Context, opts []kgo.Opt, topic string, from map[int32]int64) (Sent, ReadBackStats, error) {
	var stats ReadBackStats
	admCl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, stats, err
	}
	adm := kadm.NewClient(admCl)
	defer adm.Close()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, stats, fmt.Errorf("read back %s: end offsets: %w", topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, stats, fmt.Errorf("read back %s: start offsets: %w", topic, err)
	}
	if err := ends.Error(); err != nil {
		return nil, stats, fmt.Errorf("read back %s: end offsets: %w", topic, err)
	}
	consume := map[int32]kgo.Offset{}
	remaining := map[int32]int64{} // partition -> last offset to read
	ends.Each(func(o kadm.ListedOffset) {
		start, ok := from[o.Partition]
		oldest, known := starts.Lookup(topic, o.Partition)
		if !ok || (known && oldest.Err == nil && start < oldest.Offset) {
			start = 0 // from the oldest record still there
			if known && oldest.Err == nil {
				start = oldest.Offset
			}
		}
		if start < o.Offset {
			consume[o.Partition] = kgo.NewOffset().At(start)
			remaining[o.Partition] = o.Offset - 1
		}
	})
	sent := Sent{}
	stats.Partitions = len(consume)
	if len(consume) == 0 {
		return sent, stats, nil
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), opts...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: consume}),
		// The read stops at the end: an empty fetch need not wait long.
		kgo.FetchMaxWait(100*time.Millisecond),
	)...)
	if err != nil {
		return nil, stats, err
	}
	defer cl.Close()
	for len(remaining) > 0 {
		pctx, cancel := context.WithTimeout(ctx, stallTimeout)
		fetches := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil, stats, ctx.Err()
		}
		if fetches.Empty() && pctx.Err() != nil {
			return nil, stats, fmt.Errorf("read back %s: no record for %v; partitions not read to their end: %v", topic, stallTimeout, remaining)
		}
		var ferr error
		fetches.EachError(func(_ string, p int32, err error) {
			if ferr == nil {
				ferr = fmt.Errorf("read back %s/%d: %w", topic, p, err)
			}
		})
		if ferr != nil {
			return nil, stats, ferr
		}
		fetches.EachRecord(func(r *kgo.Record) {
			stats.Records++
			for _, h := range r.Headers {
				if h.Key != OriginHeader {
					continue
				}
				if o, ok := DecodeOrigin(h.Value); ok {
					k := SentKey{r.Partition, o.Source}
					if o.End > sent[k] {
						sent[k] = o.End
					}
				}
			}
			if last, ok := remaining[r.Partition]; ok && r.Offset >= last {
				delete(remaining, r.Partition)
			}
		})
	}
	return sent, stats, nil
}
