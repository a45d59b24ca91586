package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ErrNoTopic is returned for a topic that does not exist and that the
// brokers did not create on request.
var ErrNoTopic = errors.New("topic does not exist: create it (docker compose's kafka-init does) or set auto.create.topics.enable=true on the brokers")

// AskForTopic asks for topic's metadata in the way that lets brokers that
// auto-create topics create it; whether it exists, EndOffsets tells.
func AskForTopic(ctx context.Context, cl *kgo.Client, topic string) error {
	req := kmsg.NewPtrMetadataRequest()
	t := kmsg.NewMetadataRequestTopic()
	t.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, t)
	req.AllowAutoTopicCreation = true
	if _, err := req.RequestWith(ctx, cl); err != nil {
		return fmt.Errorf("metadata of topic %s: %w", topic, err)
	}
	return nil
}

// EndOffsets returns the next offset of every partition of topic, which
// also gives the number of partitions.
func EndOffsets(ctx context.Context, cl *kgo.Client, topic string) (map[int32]int64, error) {
	listed, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("end offsets of topic %s: %w", topic, err)
	}
	out := map[int32]int64{}
	var first error
	listed.Each(func(o kadm.ListedOffset) {
		switch {
		case errors.Is(o.Err, kerr.UnknownTopicOrPartition) && o.Partition < 0:
			first = fmt.Errorf("topic %s: %w", topic, ErrNoTopic)
		case o.Err != nil && first == nil:
			first = fmt.Errorf("end offset of %s/%d: %w", topic, o.Partition, o.Err)
		case o.Err == nil:
			out[o.Partition] = o.Offset
		}
	})
	if first != nil {
		return nil, first
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("topic %s: %w", topic, ErrNoTopic)
	}
	return out, nil
}
