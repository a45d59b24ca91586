package kafka

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Refusal is Kafka refusing a record for good: franz-go retries every
// error that can pass, so what reaches a record's promise will not.
type Refusal struct {
	Reason string // metric label
	Fix    string // what to change, naming the setting
}

// Refused classifies the error a record failed with. ok is false when the
// record was not refused but abandoned because the shim is stopping (it
// is sent again after the restart).
func Refused(err error) (r Refusal, ok bool) {
	switch {
	case err == nil, errors.Is(err, kgo.ErrClientClosed), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return Refusal{}, false
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge):
		return Refusal{"record_too_large", "raise the topic's max.message.bytes (and the brokers' message.max.bytes), or lower SHIM_MAX_LINE_BYTES so such lines are skipped before Kafka"}, true
	case errors.Is(err, kerr.InvalidRecord), errors.Is(err, kerr.CorruptMessage):
		return Refusal{"invalid_record", "the topic's settings refuse the record (a compacted topic, cleanup.policy=compact, needs a key on every record): use a topic with cleanup.policy=delete"}, true
	case errors.Is(err, kerr.TopicAuthorizationFailed):
		return Refusal{"not_authorized", "grant WRITE and DESCRIBE on the topic to the shim's principal (KAFKA_SASL_USER or its TLS certificate)"}, true
	case errors.Is(err, kerr.ClusterAuthorizationFailed), errors.Is(err, kerr.TransactionalIDAuthorizationFailed):
		return Refusal{"not_authorized", "grant IDEMPOTENT_WRITE on the cluster to the shim's principal (KAFKA_SASL_USER or its TLS certificate)"}, true
	case errors.Is(err, kerr.UnsupportedVersion), errors.Is(err, kerr.UnsupportedForMessageFormat), errors.Is(err, kerr.UnsupportedCompressionType):
		return Refusal{"unsupported", "the brokers are too old for idempotent record batches or for KAFKA_COMPRESSION: upgrade Kafka or set KAFKA_COMPRESSION=none"}, true
	case errors.Is(err, kerr.InvalidTopicException):
		return Refusal{"invalid_topic", "SHIM_TOPIC / SHIM_TOPIC_PREFIX make a topic name Kafka refuses"}, true
	case errors.Is(err, kerr.PolicyViolation):
		return Refusal{"policy_violation", "a broker policy refuses the record; see the brokers' log"}, true
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return Refusal{"kafka_" + ke.Message, "see the brokers' log for " + ke.Message}, true
	}
	return Refusal{"other", "see the error"}, true
}
