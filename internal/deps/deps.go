//go:build tools

// Package deps pins the modules the project's packages are being written against.
// Temporary: removed once every dependency is imported by real code.
package deps

import (
	_ "github.com/IBM/sarama"
	_ "github.com/cilium/ebpf"
	_ "github.com/cilium/ebpf/link"
	_ "github.com/cilium/ebpf/ringbuf"
	_ "github.com/compose-spec/compose-go/v2/cli"
	_ "github.com/compose-spec/compose-go/v2/loader"
	_ "github.com/gopacket/gopacket/layers"
	_ "github.com/gopacket/gopacket/pcapgo"
	_ "github.com/netobserv/flowlogs-pipeline/pkg/api"
	_ "github.com/netobserv/flowlogs-pipeline/pkg/config"
	_ "github.com/prometheus/client_golang/api"
	_ "github.com/prometheus/client_golang/api/prometheus/v1"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/prometheus/common/model"
	_ "github.com/prometheus/prometheus/promql/parser"
	_ "github.com/vishvananda/netlink"
	_ "github.com/vishvananda/netns"
	_ "gopkg.in/yaml.v3"
)
