package testenv

import "github.com/IBM/sarama"

// KafkaSaramaConfig returns a sarama configuration for the test broker.
// It sets the protocol version: Kafka 4 removed the oldest request versions
// (KIP-896), which sarama's default (2.8) still sends for some requests.
//
// Only the shim's tests still use sarama; this file goes with them.
func KafkaSaramaConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V4_0_0_0
	cfg.ClientID = "pano-test"
	return cfg
}
