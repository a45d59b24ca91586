package produce

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// OriginHeader is the record header that says where a record came from:
// which file (Source: a hash of the log path, device and inode), where its
// line ends in that file, and a hash of the line. After a crash the shim
// reads the records written since its last saved position and skips the
// lines whose origin it finds, so that each line is in Kafka once.
const OriginHeader = "pano-origin"

// Origin identifies one line of one file.
type Origin struct {
	Source uint64
	End    int64
	Hash   uint32
}

// OriginLen is the length of an encoded Origin.
const OriginLen = 20

// Encode returns the header value.
func (o Origin) Encode() []byte {
	b := make([]byte, OriginLen)
	o.Put(b)
	return b
}

// Put writes the header value into b, which holds OriginLen bytes.
func (o Origin) Put(b []byte) {
	binary.BigEndian.PutUint64(b, o.Source)
	binary.BigEndian.PutUint64(b[8:], uint64(o.End))
	binary.BigEndian.PutUint32(b[16:OriginLen], o.Hash)
}

// DecodeOrigin parses a header value.
func DecodeOrigin(b []byte) (Origin, bool) {
	if len(b) != OriginLen {
		return Origin{}, false
	}
	return Origin{Source: binary.BigEndian.Uint64(b), End: int64(binary.BigEndian.Uint64(b[8:])),
		Hash: binary.BigEndian.Uint32(b[16:])}, true
}

// EndOffsets returns the next offset of every partition of topic; an
// empty map when the topic does not exist yet. Right after a topic is
// created or a broker restarts, metadata can be stale: it refreshes and
// tries again a few times.
func EndOffsets(client sarama.Client, topic string) (map[int32]int64, error) {
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
			_ = client.RefreshMetadata(topic)
		}
		var out map[int32]int64
		if out, err = endOffsets(client, topic); err == nil {
			return out, nil
		}
		if errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
			return map[int32]int64{}, nil
		}
	}
	return nil, err
}

func endOffsets(client sarama.Client, topic string) (map[int32]int64, error) {
	parts, err := client.Partitions(topic)
	if err != nil {
		return nil, fmt.Errorf("partitions of %s: %w", topic, err)
	}
	out := make(map[int32]int64, len(parts))
	for _, p := range parts {
		off, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return nil, fmt.Errorf("end offset of %s/%d: %w", topic, p, err)
		}
		out[p] = off
	}
	return out, nil
}

// Seen reads topic from the offsets in from (partitions missing from it:
// from their oldest record) up to the current end, and returns the
// origins of the records whose Source keep accepts. Partitions are read
// in parallel.
func Seen(ctx context.Context, client sarama.Client, topic string, from map[int32]int64, keep func(uint64) bool) (map[Origin]struct{}, error) {
	ends, err := EndOffsets(client, topic)
	if err != nil {
		return nil, err
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return nil, fmt.Errorf("start consumer: %w", err)
	}
	defer consumer.Close()
	var (
		mu    sync.Mutex
		seen  = map[Origin]struct{}{}
		wg    sync.WaitGroup
		first error
	)
	for p, end := range ends {
		start, ok := from[p]
		if !ok {
			start = sarama.OffsetOldest
		}
		if ok && start >= end {
			continue
		}
		oldest, err := client.GetOffset(topic, p, sarama.OffsetOldest)
		if err != nil {
			return nil, fmt.Errorf("oldest offset of %s/%d: %w", topic, p, err)
		}
		if oldest >= end {
			continue
		}
		if start >= 0 && start < oldest {
			start = oldest // deleted by retention
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			found, err := readPartition(ctx, consumer, topic, p, start, end, keep)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && first == nil {
				first = err
			}
			for o := range found {
				seen[o] = struct{}{}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	return seen, nil
}

func readPartition(ctx context.Context, c sarama.Consumer, topic string, p int32, start, end int64, keep func(uint64) bool) (map[Origin]struct{}, error) {
	pc, err := c.ConsumePartition(topic, p, start)
	if err != nil {
		return nil, fmt.Errorf("read back %s/%d from %d: %w", topic, p, start, err)
	}
	defer pc.AsyncClose()
	seen := map[Origin]struct{}{}
	idle := time.NewTimer(30 * time.Second)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-idle.C:
			return nil, fmt.Errorf("read back %s/%d: no record for 30s before offset %d", topic, p, end)
		case e := <-pc.Errors():
			return nil, fmt.Errorf("read back %s/%d: %w", topic, p, e.Err)
		case m := <-pc.Messages():
			for _, h := range m.Headers {
				if string(h.Key) != OriginHeader {
					continue
				}
				if o, ok := DecodeOrigin(h.Value); ok && keep(o.Source) {
					seen[o] = struct{}{}
				}
			}
			if m.Offset >= end-1 {
				return seen, nil
			}
			idle.Reset(30 * time.Second)
		}
	}
}
