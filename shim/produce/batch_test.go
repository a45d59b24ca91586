package produce

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/pano-observability/pano/internal/testenv"
)

func TestVarintLen(t *testing.T) {
	for _, v := range []int64{0, 1, -1, 63, 64, -64, -65, 127, 8191, 8192, 1 << 20, -(1 << 20), math.MaxInt32, math.MinInt32, math.MaxInt64, math.MinInt64} {
		if got, want := varintLen(v), len(binary.AppendVarint(nil, v)); got != want {
			t.Errorf("varintLen(%d) = %d, want %d", v, got, want)
		}
	}
}

// oddMessages are the shapes a record can take: no key, an empty key,
// empty and binary values, no header or several, a value larger than a
// batch.
func oddMessages() []Message {
	big := bytes.Repeat([]byte("0123456789abcdef"), 2048) // 32 KiB
	return []Message{
		{Key: []byte("Cabc123"), Value: []byte(`{"uid":"Cabc123"}`), Headers: []Header{{Key: []byte(OriginHeader), Value: Origin{Source: 1, End: 2, Hash: 3}.Encode()}}},
		{Value: []byte(`{"no":"key"}`)},
		{Key: []byte{}, Value: []byte{}},
		{Key: []byte("k"), Value: []byte{0, 1, 2, 0xff, '\n'}, Headers: []Header{{Key: []byte("a"), Value: nil}, {Key: []byte(""), Value: []byte("x")}, {Key: []byte("c"), Value: []byte("yz")}}},
		{Key: []byte("big"), Value: big},
	}
}

// TestRecordsReadBackExactly: what Send encodes is what a consumer
// decodes (sarama's decoder, an implementation independent of ours):
// keys, values, headers and timestamps, for every compression, through
// the real broker, which also checks each batch's CRC and sequence.
func TestRecordsReadBackExactly(t *testing.T) {
	k := testenv.StartKafka(t)
	for _, comp := range []string{"none", "lz4", "zstd", "snappy", "gzip"} {
		t.Run(comp, func(t *testing.T) {
			topic := "exact-" + comp
			k.CreateTopic(t, topic, 1)
			_, p, out := newTestProducer(t, k, Config{Compression: comp, FlushLinger: time.Millisecond, FlushBytes: 16 << 10}, topic)
			msgs := oddMessages()
			const rounds = 40 // several batches, some with one record
			before := time.Now().Add(-time.Millisecond)
			acks := &ackCount{offs: map[int32][]int64{}}
			for r := 0; r < rounds; r++ {
				for i := range msgs {
					if err := out.Send(context.Background(), 0, &msgs[i], acks); err != nil {
						t.Fatal(err)
					}
				}
				if r%10 == 0 {
					time.Sleep(5 * time.Millisecond) // let a batch go with what it has
				}
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			after := time.Now().Add(time.Millisecond)
			got := consumeN(t, k, topic, rounds*len(msgs))
			for j, m := range got {
				want := msgs[j%len(msgs)]
				if m.Offset != int64(j) {
					t.Fatalf("record %d at offset %d", j, m.Offset)
				}
				if (want.Key == nil) != (m.Key == nil) || !bytes.Equal(m.Key, want.Key) {
					t.Fatalf("record %d: key %q, want %q (nil %v)", j, m.Key, want.Key, want.Key == nil)
				}
				if !bytes.Equal(m.Value, want.Value) {
					t.Fatalf("record %d: value of %d bytes differs from the %d sent", j, len(m.Value), len(want.Value))
				}
				if len(m.Headers) != len(want.Headers) {
					t.Fatalf("record %d: %d headers, want %d", j, len(m.Headers), len(want.Headers))
				}
				for h, wh := range want.Headers {
					if !bytes.Equal(m.Headers[h].Key, wh.Key) || !bytes.Equal(m.Headers[h].Value, wh.Value) {
						t.Fatalf("record %d header %d: %q=%q, want %q=%q", j, h, m.Headers[h].Key, m.Headers[h].Value, wh.Key, wh.Value)
					}
				}
				if m.Timestamp.Before(before.Truncate(time.Millisecond)) || m.Timestamp.After(after) {
					t.Fatalf("record %d: timestamp %v outside the run %v .. %v", j, m.Timestamp, before, after)
				}
			}
			// kcat (librdkafka) reads the same records: another
			// decoder, another checker of the batch framing.
			{
				kcat := testenv.RequireProgram(t, "kcat", "kcat")
				outp, err := exec.Command(kcat, "-C", "-b", k.Bootstrap, "-t", topic, "-e", "-q", "-f", "%k|%S\n").CombinedOutput()
				if err != nil {
					t.Fatalf("kcat: %v\n%s", err, outp)
				}
				lines := strings.Split(strings.TrimSuffix(string(outp), "\n"), "\n")
				if len(lines) != rounds*len(msgs) {
					t.Fatalf("kcat read %d records, want %d", len(lines), rounds*len(msgs))
				}
				for j, l := range lines {
					want := msgs[j%len(msgs)]
					if exp := fmt.Sprintf("%s|%d", want.Key, len(want.Value)); l != exp {
						t.Fatalf("kcat record %d: %q, want %q", j, l, exp)
					}
				}
			}
		})
	}
}

// consumeN reads the first n records of partition 0 of topic.
func consumeN(t *testing.T, k *testenv.Kafka, topic string, n int) []*sarama.ConsumerMessage {
	t.Helper()
	c, err := sarama.NewConsumer([]string{k.Bootstrap}, testenv.KafkaSaramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc, err := c.ConsumePartition(topic, 0, sarama.OffsetOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var got []*sarama.ConsumerMessage
	timeout := time.After(30 * time.Second)
	for len(got) < n {
		select {
		case m := <-pc.Messages():
			got = append(got, m)
		case err := <-pc.Errors():
			t.Fatal(err)
		case <-timeout:
			t.Fatalf("read %d of %d records", len(got), n)
		}
	}
	return got
}

// FuzzProduceResponse: whatever bytes come back, reading them as a
// produce response returns a result or an error, never panics.
func FuzzProduceResponse(f *testing.F) {
	ok := binary.BigEndian.AppendUint32(nil, 1)
	ok = appendString(ok, "t")
	ok = binary.BigEndian.AppendUint32(ok, 1)
	ok = binary.BigEndian.AppendUint32(ok, 0)      // partition
	ok = binary.BigEndian.AppendUint16(ok, 0)      // error
	ok = binary.BigEndian.AppendUint64(ok, 42)     // offset
	ok = binary.BigEndian.AppendUint64(ok, 0)      // append time
	ok = binary.BigEndian.AppendUint64(ok, 0)      // log start
	ok = binary.BigEndian.AppendUint32(ok, 0)      // record errors
	ok = binary.BigEndian.AppendUint16(ok, 0xffff) // message
	ok = binary.BigEndian.AppendUint32(ok, 0)      // throttle
	f.Add(ok, int16(8))
	f.Add(ok[:20], int16(8))
	f.Add([]byte{0, 0, 0, 2, 0xff, 0xff}, int16(3))
	f.Fuzz(func(t *testing.T, body []byte, version int16) {
		frame := binary.BigEndian.AppendUint32(nil, uint32(len(body)+4))
		frame = binary.BigEndian.AppendUint32(frame, 7)
		c := &brokerConn{rd: bufio.NewReader(bytes.NewReader(append(frame, body...)))}
		r, err := c.readProduce(7, version%9, "t", 0)
		if err == nil && len(body) < 30 {
			t.Fatalf("a %d-byte body read as a result: %+v", len(body), r)
		}
	})
}
