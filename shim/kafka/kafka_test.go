package kafka

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestOriginRoundTrip(t *testing.T) {
	o := Origin{Source: 0x0102030405060708, End: 1 << 40, Hash: 0xdeadbeef}
	var b [OriginLen]byte
	o.Put(b[:])
	got, ok := DecodeOrigin(b[:])
	if !ok || got != o {
		t.Fatalf("round trip: %+v %v", got, ok)
	}
	if _, ok := DecodeOrigin(b[:OriginLen-1]); ok {
		t.Fatal("a short header decoded")
	}
}

// TestPartitionLikeSarama: keys keep the partitions sarama's hash
// partitioner gave them (the shims before this one produced with it), so
// a read-back across the upgrade finds its lines. The table was made by
// sarama v1.61.1's NewHashPartitioner.
func TestPartitionLikeSarama(t *testing.T) {
	for _, c := range []struct {
		key  string
		n, p int32
	}{
		{"C000000000xyz", 6, 1}, {"C000000000xyz", 7, 1}, {"C000007919xyz", 6, 3}, {"C000007919xyz", 7, 2},
		{"C000055433xyz", 6, 1}, {"C000055433xyz", 7, 1}, {"C000332598xyz", 6, 1}, {"C000332598xyz", 7, 4},
		{"C007911081xyz", 6, 0}, {"C007911081xyz", 7, 1}, {"C097760055xyz", 6, 0}, {"C097760055xyz", 7, 5},
		{"C791828729xyz", 6, 4}, {"C791828729xyz", 7, 3}, {"C977654312091xyz", 6, 5}, {"C977654312091xyz", 7, 4},
	} {
		if got := Partition([]byte(c.key), Origin{}, c.n); got != c.p {
			t.Errorf("%s over %d: %d, sarama %d", c.key, c.n, got, c.p)
		}
	}
}

// TestPartitionKeylessIsStable: a record without a key goes where its
// origin says, the same every time, and spreads over the partitions.
func TestPartitionKeylessIsStable(t *testing.T) {
	used := map[int32]int{}
	for end := int64(1); end <= 6000; end++ {
		o := Origin{Source: 7, End: end * 100, Hash: uint32(end)}
		p := Partition(nil, o, 6)
		if p != Partition(nil, o, 6) || p < 0 || p >= 6 {
			t.Fatalf("origin %+v: partition %d", o, p)
		}
		used[p]++
	}
	for p := int32(0); p < 6; p++ {
		if used[p] < 800 {
			t.Errorf("partition %d got %d of 6000 keyless records", p, used[p])
		}
	}
}

func TestSentHas(t *testing.T) {
	s := Sent{{Partition: 2, Source: 9}: 500, {Partition: 3, Source: 9}: 800, {Partition: 2, Source: 1}: 9999}
	for _, c := range []struct {
		p    int32
		o    Origin
		want bool
	}{
		{2, Origin{Source: 9, End: 500}, true},
		{2, Origin{Source: 9, End: 501}, false},
		{3, Origin{Source: 9, End: 700}, true},
		{4, Origin{Source: 9, End: 10}, false},
		{2, Origin{Source: 8, End: 10}, false},
	} {
		if got := s.Has(c.p, c.o); got != c.want {
			t.Errorf("Has(%d, %+v) = %v", c.p, c.o, got)
		}
	}
	if s.Last(9) != 800 || s.Last(4) != 0 {
		t.Fatalf("Last: %d %d", s.Last(9), s.Last(4))
	}
}

func TestSourceIDSeparatesTruncations(t *testing.T) {
	a := SourceID("/l/dns.log", 1, 2, 0)
	if a == SourceID("/l/dns.log", 1, 2, 1) || a == SourceID("/l/dns.log", 1, 3, 0) || a == SourceID("/l/conn.log", 1, 2, 0) {
		t.Fatal("two sources share an id")
	}
	// The id the shims before franz-go gave an untruncated file.
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\x00%d\x00%d", "/l/dns.log", 1, 2)
	if a != h.Sum64() {
		t.Fatal("an untruncated file's id changed across the upgrade")
	}
}

func TestRefused(t *testing.T) {
	for _, c := range []struct {
		err    error
		reason string
		fix    string // part of the fix that names the setting
	}{
		{kerr.MessageTooLarge, "record_too_large", "max.message.bytes"},
		{fmt.Errorf("wrapped: %w", kerr.RecordListTooLarge), "record_too_large", "SHIM_MAX_LINE_BYTES"},
		{kerr.InvalidRecord, "invalid_record", "cleanup.policy"},
		{kerr.TopicAuthorizationFailed, "not_authorized", "KAFKA_SASL_USER"},
		{kerr.ClusterAuthorizationFailed, "not_authorized", "IDEMPOTENT_WRITE"},
		{kerr.UnsupportedVersion, "unsupported", "KAFKA_COMPRESSION"},
		{kerr.InvalidTopicException, "invalid_topic", "SHIM_TOPIC_PREFIX"},
		{kerr.PolicyViolation, "policy_violation", "policy"},
		{kerr.InvalidTimestamp, "kafka_INVALID_TIMESTAMP", "INVALID_TIMESTAMP"},
		{errors.New("odd"), "other", "error"},
	} {
		r, ok := Refused(c.err)
		if !ok || r.Reason != c.reason || !strings.Contains(r.Fix, c.fix) {
			t.Errorf("%v: %+v %v, want %s naming %s", c.err, r, ok, c.reason, c.fix)
		}
	}
	for _, err := range []error{nil, kgo.ErrClientClosed, fmt.Errorf("x: %w", errors.Join(errors.New("a"), kgo.ErrClientClosed))} {
		if r, ok := Refused(err); ok {
			t.Errorf("%v counted as a refusal: %+v", err, r)
		}
	}
}

// TestConfigRejects: settings that cannot work fail before anything
// starts, naming the variable.
func TestConfigRejects(t *testing.T) {
	good := Config{Brokers: []string{"127.0.0.1:1"}, Compression: "lz4", BatchBytes: 1 << 20, MaxBuffered: 10}
	for name, c := range map[string]struct {
		mod  func(*Config)
		want string
	}{
		"no broker":        {func(c *Config) { c.Brokers = nil }, "KAFKA_BROKERS"},
		"compression":      {func(c *Config) { c.Compression = "brotli" }, "KAFKA_COMPRESSION"},
		"batch too small":  {func(c *Config) { c.BatchBytes = 100 }, "KAFKA_BATCH_BYTES"},
		"nothing buffered": {func(c *Config) { c.MaxBuffered = 0 }, "SHIM_MAX_IN_FLIGHT"},
		"mechanism":        {func(c *Config) { c.SASL = SASLConfig{Mechanism: "GSSAPI", User: "u"} }, "KAFKA_SASL_MECHANISM"},
		"no user":          {func(c *Config) { c.SASL = SASLConfig{Mechanism: "PLAIN"} }, "KAFKA_SASL_USER"},
		"ca without tls":   {func(c *Config) { c.TLS.CAFile = "/ca.pem" }, "KAFKA_TLS=true"},
		"ca missing":       {func(c *Config) { c.TLS = TLSConfig{Enable: true, CAFile: "/nonexistent/ca.pem"} }, "KAFKA_TLS_CA"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := good
			c.mod(&cfg)
			_, err := cfg.ClientOpts(nil)
			if err == nil {
				_, err = cfg.ProducerOpts(nil)
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error naming %s", err, c.want)
			}
		})
	}
	if _, err := good.ClientOpts(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := good.ProducerOpts(nil); err != nil {
		t.Fatal(err)
	}
}
