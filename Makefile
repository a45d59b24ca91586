# PANO's build, test and benchmark entry points. `make test` is the one
# command that runs the whole suite (see README.md, "Tests").

SHELL      := /bin/bash
GO         ?= go
CACHE      ?= $(CURDIR)/.cache
export PANO_CACHE := $(CACHE)
# The checksum database does not answer for these modules; go.sum pins them.
export GONOSUMDB := github.com/netobserv,github.com/vmware
GOTEST_FLAGS ?= -count=1 -timeout 40m

KAFKA_VERSION := $(shell sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' tools/kafka/pom.xml 2>/dev/null)
FLP_BIN   := $(CACHE)/bin/flowlogs-pipeline
KAFKA_DIR := $(CACHE)/kafka-$(KAFKA_VERSION)

.PHONY: all build test test-go lint tools generate bench bench-capture bench-gomaxprocs bench-zeek-flood bench-cluster cluster-demo bench-http clean

all: build

build:
	$(GO) build ./...

## tools: what the tests run that Debian does not ship (Kafka jars, flowlogs-pipeline)
tools: $(FLP_BIN) $(KAFKA_DIR)/.complete

$(FLP_BIN): go.mod go.sum
	$(GO) build -o $@ github.com/netobserv/flowlogs-pipeline/cmd/flowlogs-pipeline

$(KAFKA_DIR)/.complete: tools/kafka/pom.xml
	tools/kafka/fetch.sh $(KAFKA_DIR)

## test: the whole suite (unit, fuzz seeds, eBPF, real services), then lint
test: tools test-go lint

test-go:
	$(GO) test $(GOTEST_FLAGS) ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	shellcheck $$(git ls-files '*.sh' .ci/run)

## generate: rebuild the committed eBPF objects (bpf2go, Debian's clang)
generate:
	$(GO) generate ./agent/...

bench: tools
	$(GO) run ./bench/cmd/panobench

## bench-capture: agent vs tcpdump on the same dnsperf traffic, then a flood (root)
bench-capture:
	$(GO) test -run '^$$' -bench '^BenchmarkCapture$$' -benchtime 1x -count 1 -timeout 10m ./agent/

## bench-gomaxprocs: the agent with 4 streams under a rising flood, GOMAXPROCS=1 vs one thread per CPU (root)
bench-gomaxprocs:
	$(GO) test -run '^$$' -bench '^BenchmarkStreamsGOMAXPROCS$$' -benchtime 1x -count 1 -timeout 10m ./agent/

## bench-zeek-flood: Zeek's peak RSS under 100,000 unanswered DNS queries/s for 30 s through the agent (root, Zeek 8.0)
bench-zeek-flood:
	$(GO) test -run '^$$' -bench '^BenchmarkZeekUnansweredFlood$$' -benchtime 1x -count 1 -v -timeout 10m ./internal/e2etest/

## cluster-demo: three nodes (agent, Zeek, shim each), a 3-broker Kafka cluster, two
## flowlogs-pipeline replicas and Prometheus, with faults under load (root, Zeek 8.0);
## each phase lasts PANO_CLUSTER_DURATION (default here 60s) at PANO_CLUSTER_QPS per node
cluster-demo: tools
	PANO_CLUSTER_DURATION=$${PANO_CLUSTER_DURATION:-60s} $(GO) test -run '^TestManyNodes$$' -count 1 -v -timeout 30m ./internal/e2etest/

## bench-cluster: the three nodes with one and two flowlogs-pipeline replicas: partition skew and lag (root, Zeek 8.0)
bench-cluster: tools
	$(GO) test -run '^$$' -bench '^BenchmarkManyNodes$$' -benchtime 1x -count 1 -v -timeout 30m ./internal/e2etest/

## bench-http: the web mix ramped through agent and Zeek, payload budget vs full capture side by side (root, Zeek 8.0)
bench-http:
	$(GO) test -run '^$$' -bench '^BenchmarkHTTPBudget$$' -benchtime 1x -count 1 -v -timeout 30m ./internal/e2etest/

clean:
	rm -rf $(CACHE) bin
