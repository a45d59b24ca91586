package kafka

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// batchOverhead is what a record batch adds around its records (the
// batch header and the produce request's framing), kept free below a
// topic's max.message.bytes.
const batchOverhead = 512

// BatchLimits caps each topic's record batches at what the topic takes
// (max.message.bytes), so that one record too large for the topic is
// refused alone, before Kafka, instead of failing the batch of good
// records it would share.
type BatchLimits struct {
	def int32
	mu  sync.Mutex
	m   map[string]int32
}

// NewBatchLimits caps batches at def bytes where a topic allows more.
func NewBatchLimits(def int) *BatchLimits {
	if def <= 0 {
		def = 512 << 10
	}
	return &BatchLimits{def: int32(min(def, 1<<30)), m: map[string]int32{}}
}

// Of returns the cap of topic's batches (franz-go asks once per partition).
func (b *BatchLimits) Of(topic string) int32 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if v, ok := b.m[topic]; ok {
		return v
	}
	return b.def
}

// Learn reads topic's max.message.bytes. Without the right to describe
// the topic's settings it keeps the default and says so.
func (b *BatchLimits) Learn(ctx context.Context, cl *kgo.Client, topic string) (int32, error) {
	rcs, err := kadm.NewClient(cl).DescribeTopicConfigs(ctx, topic)
	if err == nil {
		var rc kadm.ResourceConfig
		if rc, err = rcs.On(topic, nil); err == nil {
			err = rc.Err
		}
		if err == nil {
			for _, c := range rc.Configs {
				if c.Key != "max.message.bytes" || c.Value == nil {
					continue
				}
				v, perr := strconv.Atoi(*c.Value)
				if perr != nil || v <= batchOverhead {
					return b.def, fmt.Errorf("topic %s: max.message.bytes %q", topic, *c.Value)
				}
				limit := min(b.def, int32(min(v-batchOverhead, 1<<30)))
				b.mu.Lock()
				b.m[topic] = limit
				b.mu.Unlock()
				return limit, nil
			}
		}
	}
	return b.def, fmt.Errorf("topic %s: max.message.bytes unknown, batches capped at KAFKA_BATCH_BYTES=%d: %w", topic, b.def, err)
}
