// Package e2etest holds the whole-chain test: DNS load against real
// servers, the capture agent (eBPF) serving PCAP-over-TCP, real Zeek with
// PANO's zeek-package (started by the package image's own entrypoint, see
// testenv.StartZeek), the shim, Kafka, flowlogs-pipeline with PANO's
// configuration and Prometheus with PANO's scrape configuration; the
// numbers in Prometheus and in Zeek's dns.log are checked against
// dnsperf's own report, and the response times against tcpdump's capture
// of the same interfaces (read by tshark, an independent peer).
// TestWholeChainStreams repeats the steady phase with the capture split
// into two PCAP-over-TCP streams (PCA_STREAMS=2) and Zeek run with
// ZEEK_WORKERS=2 (worker i reads stream i and writes worker-i/dns.log), one
// shim following worker-*/dns.log, as a deployment with two Zeek workers
// runs, with Zeek rotating its logs every 10 s so that the shim's
// hand-over between rotated files is inside the exact counts.
// TestManyNodes runs three such nodes into a 3-broker Kafka cluster and
// two flowlogs-pipeline replicas, with faults under load (cluster_test.go;
// PANO_CLUSTER_DURATION and PANO_CLUSTER_QPS size it, make cluster-demo
// runs it longer); BenchmarkManyNodes measures its partition skew and lag.
// BenchmarkChain ramps the same chain with one and two workers;
// BenchmarkZeekUnansweredFlood measures Zeek's memory under a flood of
// unanswered queries.
//
// Run it as root with Zeek 8.0 (ZEEK_HOME or zeek on PATH) and make
// tools: go test -v ./internal/e2etest/. Each load phase lasts
// PANO_E2E_DURATION (a Go duration, default 20s; the acceptance run uses
// 60s).
package e2etest
