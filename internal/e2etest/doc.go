// Package e2etest holds the whole-chain test: DNS load against real
// servers, the capture agent (eBPF) serving PCAP-over-TCP, a test-only
// stand-in for Zeek (tshark, see internal/zeekstandin), the shim, Kafka,
// flowlogs-pipeline with PANO's configuration and Prometheus with PANO's
// scrape configuration; the numbers in Prometheus are checked against
// dnsperf's own report. TestWholeChainStreams repeats the steady phase
// with the capture split into two PCAP-over-TCP streams (PCA_STREAMS=2),
// one stand-in per stream writing worker-i/dns.log and one shim following
// worker-*/dns.log, as a deployment with two Zeek workers runs.
//
// Run it as root: go test -v ./internal/e2etest/. Each load phase lasts
// PANO_E2E_DURATION (a Go duration, default 20s; the acceptance run uses
// 60s).
package e2etest
