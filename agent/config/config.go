// Package config reads the agent's settings from command-line flags and
// their environment variables, by the rules of internal/envflag with no
// prefix (-pca-filter is PCA_FILTER; a flag wins; a malformed value is an
// error naming it). The variable names are those of the netobserv
// agent's packet-capture mode where one existed (ENABLE_PCA, PCA_FILTER,
// PCA_SERVER_PORT, INTERFACES, EXCLUDE_INTERFACES, LOG_LEVEL), so its
// deployments keep working.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/pano-observability/pano/agent/bpf"
	"github.com/pano-observability/pano/agent/filter"
	"github.com/pano-observability/pano/agent/tracer"
	"github.com/pano-observability/pano/internal/envflag"
)

// Config is the agent's configuration.
type Config struct {
	EnablePCA      bool
	Filter         []filter.Rule
	ServerAddr     string // host:port of the PCAP-over-TCP listener (of stream 0)
	Streams        int    // PCAP-over-TCP streams, on consecutive ports from ServerAddr's
	Allow          []netip.Prefix
	MaxClients     int
	ClientQueue    int
	Nanosecond     bool
	Interfaces     []string
	Exclude        []string
	LogLevel       slog.Level
	MetricsAddr    string // empty: no metrics endpoint
	AttachMode     tracer.Mode
	SnapLen        uint32
	DedupWindow    time.Duration
	RingBufferSize int
}

// setting is one configuration item: a flag (its variable follows from
// its name) and how to apply a value.
type setting struct {
	flag, def, help string
	apply           func(c *Config, v string) error
}

func settings() []setting {
	return []setting{
		{"enable-pca", "true", "capture packets and serve them over PCAP-over-TCP (false: load nothing, serve only the metrics endpoint until stopped)",
			func(c *Config, v string) (err error) { c.EnablePCA, err = strconv.ParseBool(v); return }},
		{"pca-filter", "udp,53;tcp,53",
			"in-kernel filter: rules separated by ';', each PROTO,PORT[,CIDR][,DIRECTION] with PROTO udp|tcp|any, PORT a number or any " +
				"(source or destination), CIDR an address or prefix (source or destination), DIRECTION in|out|both; " +
				"e.g. 'udp,53', 'udp,53;tcp,53', 'udp,53,198.18.0.0/15,in', 'any,any'",
			func(c *Config, v string) (err error) { c.Filter, err = filter.Parse(v); return }},
		{"pca-server-addr", "127.0.0.1", "address the PCAP-over-TCP server listens on (0.0.0.0 or :: for every address)",
			func(c *Config, v string) error {
				c.ServerAddr = net.JoinHostPort(v, portOf(c.ServerAddr))
				return nil
			}},
		{"pca-server-port", "57012", "PCAP-over-TCP server port (of stream 0; stream i listens on this port + i)",
			func(c *Config, v string) error {
				p, err := strconv.ParseUint(v, 10, 16)
				if err != nil {
					return errors.New("want a port number 0-65535")
				}
				host, _, _ := net.SplitHostPort(c.ServerAddr)
				c.ServerAddr = net.JoinHostPort(host, strconv.FormatUint(p, 10))
				return nil
			}},
		{"pca-streams", "1",
			"split the capture into N PCAP-over-TCP streams (1-64), one per Zeek worker: stream i is served on port PCA_SERVER_PORT+i " +
				"(port 0: each on a port the system picks); a symmetric flow hash computed in the kernel puts both directions of a " +
				"conversation, and every fragment of a datagram, in the same stream",
			func(c *Config, v string) error {
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 || n > MaxStreams {
					return fmt.Errorf("want 1-%d", MaxStreams)
				}
				c.Streams = n
				return nil
			}},
		{"pca-allow", "", "comma-separated CIDRs of the clients allowed to connect (empty: any)",
			func(c *Config, v string) error {
				c.Allow = nil
				for _, s := range splitList(v) {
					p, err := netip.ParsePrefix(s)
					if err != nil {
						return err
					}
					c.Allow = append(c.Allow, p.Masked())
				}
				return nil
			}},
		{"pca-max-clients", "16", "most PCAP-over-TCP clients connected at once",
			func(c *Config, v string) (err error) { c.MaxClients, err = positiveInt(v); return }},
		{"pca-client-queue", "8MiB", "queue per PCAP-over-TCP client; a client that falls this far behind loses packets (counted)",
			func(c *Config, v string) (err error) { c.ClientQueue, err = parseSize(v); return }},
		{"pca-nanosecond", "false", "nanosecond pcap timestamps (magic 0xa1b23c4d); the default microsecond format is what Zeek's plugin reads",
			func(c *Config, v string) (err error) { c.Nanosecond, err = strconv.ParseBool(v); return }},
		{"interfaces", "", "comma-separated interfaces to capture, names or globs (veth*); empty: all (minus EXCLUDE_INTERFACES), including ones that appear later",
			func(c *Config, v string) error { c.Interfaces = splitList(v); return nil }},
		{"exclude-interfaces", "lo", "comma-separated interfaces never captured, names or globs",
			func(c *Config, v string) error { c.Exclude = splitList(v); return nil }},
		{"log-level", "info", "debug, info, warn or error",
			func(c *Config, v string) error { return c.LogLevel.UnmarshalText([]byte(v)) }},
		{"metrics-addr", "127.0.0.1:9103", "address of the Prometheus /metrics endpoint (off: none)",
			func(c *Config, v string) error {
				if v == "off" || v == "" {
					c.MetricsAddr = ""
					return nil
				}
				if _, _, err := net.SplitHostPort(v); err != nil {
					return err
				}
				c.MetricsAddr = v
				return nil
			}},
		{"attach-mode", "auto", "auto (TCX where the kernel has it, Linux 6.6+, else legacy TC), tcx, or tc (clsact qdisc + cls_bpf)",
			func(c *Config, v string) (err error) { c.AttachMode, err = tracer.ParseMode(v); return }},
		{"snaplen", "65535", "bytes kept of each packet (1-65535); the default keeps whole DNS-over-TCP messages and EDNS answers",
			func(c *Config, v string) error {
				n, err := strconv.ParseUint(v, 10, 32)
				if err != nil || n == 0 || n > 65535 {
					return errors.New("want 1-65535")
				}
				c.SnapLen = uint32(n)
				return nil
			}},
		{"dedup-window", "2ms", "a packet seen again on another captured interface within this time is dropped as a duplicate (not on the same interface, e.g. hairpinned in and out; not a NATed copy); 0 disables",
			func(c *Config, v string) error {
				d, err := time.ParseDuration(v)
				if err != nil || d < 0 {
					return errors.New("want a duration such as 2ms, or 0")
				}
				c.DedupWindow = d
				return nil
			}},
		{"ring-buffer-size", "16MiB", "kernel-to-agent ring buffer (a power of two: 4MiB, 16MiB, 64MiB); bigger absorbs longer bursts",
			func(c *Config, v string) (err error) { c.RingBufferSize, err = parseSize(v); return }},
	}
}

// Load parses args (without the program name) and the environment.
// It returns flag.ErrHelp after printing the usage to out for -h/-help.
func Load(args []string, out io.Writer) (*Config, error) {
	c := &Config{}
	fs := flag.NewFlagSet("pano-agent", flag.ContinueOnError)
	fs.SetOutput(out)
	for _, s := range settings() {
		v := &value{c: c, s: s}
		if err := v.Set(s.def); err != nil {
			return nil, fmt.Errorf("default of -%s: %w", s.flag, err)
		}
		fs.Var(v, s.flag, s.help)
	}
	fs.Usage = func() {
		envflag.Usage(fs, "", "pano-agent captures packets with an eBPF TC classifier and serves them over PCAP-over-TCP.\n")()
		fmt.Fprint(out, usageNotes)
	}
	if err := envflag.Parse(fs, args, ""); err != nil {
		return nil, err
	}
	if err := c.checkStreamPorts(); err != nil {
		return nil, err
	}
	if err := c.checkRingHoldsPackets(); err != nil {
		return nil, err
	}
	return c, nil
}

const usageNotes = `
GOMAXPROCS defaults to 1 whatever PCA_STREAMS is: one thread serves 4 streams at the capture ceiling with less CPU per packet than two (make bench-gomaxprocs); set it to override.

Needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (docker compose: cap_add: [BPF, NET_ADMIN, PERFMON]) and host networking.
`

// value is a setting as a flag.Value: Set applies it to the Config at
// once, so a malformed value fails inside the flag set, whose error
// names the flag or the variable it came from.
type value struct {
	c   *Config
	s   setting
	raw string
}

func (v *value) String() string {
	if v == nil {
		return ""
	}
	return v.raw
}

func (v *value) Set(raw string) error {
	if err := v.s.apply(v.c, raw); err != nil {
		return fmt.Errorf("%q: %w", raw, err)
	}
	v.raw = raw
	return nil
}

// ringRecordHeader is the kernel's own header in front of each ring
// buffer record (struct bpf_ringbuf_hdr).
const ringRecordHeader = 8

// checkRingHoldsPackets refuses a ring buffer that cannot hold two
// records of the largest packet kept: every such packet would be dropped
// as ring_buffer_full, and with one record's room the classifier would
// stall behind each one.
func (c *Config) checkRingHoldsPackets() error {
	record := int(c.SnapLen) + bpf.MetaSize + ringRecordHeader
	if c.RingBufferSize < 2*record {
		return fmt.Errorf("RING_BUFFER_SIZE=%d bytes holds fewer than two packets of SNAPLEN=%d (%d bytes each with the headers): raise RING_BUFFER_SIZE to at least %d or lower SNAPLEN",
			c.RingBufferSize, c.SnapLen, record, nextPow2(2*record))
	}
	return nil
}

// nextPow2 is the smallest power of two >= n, the ring sizes the kernel
// takes.
func nextPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

// MaxStreams is the most PCAP-over-TCP streams (the classifier's limit).
const MaxStreams = bpf.MaxStreams

// checkStreamPorts rejects a stream count that runs past the last port.
func (c *Config) checkStreamPorts() error {
	p, _ := strconv.Atoi(portOf(c.ServerAddr))
	if p != 0 && p+c.Streams-1 > 65535 {
		return fmt.Errorf("PCA_STREAMS=%d from PCA_SERVER_PORT=%d needs ports up to %d, past 65535: lower one of them", c.Streams, p, p+c.Streams-1)
	}
	return nil
}

// StreamAddrs are the listen addresses of the streams: consecutive
// ports from ServerAddr's, or all port 0 (system-chosen) when it is 0.
func (c *Config) StreamAddrs() []string {
	host, port, _ := net.SplitHostPort(c.ServerAddr)
	p, _ := strconv.Atoi(port)
	addrs := make([]string, max(c.Streams, 1))
	for i := range addrs {
		q := p
		if p != 0 {
			q = p + i
		}
		addrs[i] = net.JoinHostPort(host, strconv.Itoa(q))
	}
	return addrs
}

func portOf(hostport string) string {
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return "57012"
	}
	return p
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func positiveInt(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, errors.New("want a positive number")
	}
	return n, nil
}

// parseSize reads a byte count with an optional binary suffix:
// 4096, 64KiB, 16MiB, 1GiB (K, M, G and KB, MB, GB mean the same).
func parseSize(v string) (int, error) {
	s, mult := splitUnit(strings.TrimSpace(v))
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 || n > (1<<31)/mult {
		return 0, errors.New("want a size such as 16MiB, 512KiB or a byte count")
	}
	return n * mult, nil
}

func splitUnit(s string) (string, int) {
	for _, u := range []struct {
		suffix string
		mult   int
	}{
		{"GiB", 1 << 30}, {"GB", 1 << 30}, {"G", 1 << 30},
		{"MiB", 1 << 20}, {"MB", 1 << 20}, {"M", 1 << 20},
		{"KiB", 1 << 10}, {"KB", 1 << 10}, {"K", 1 << 10},
	} {
		if len(s) > len(u.suffix) && strings.EqualFold(s[len(s)-len(u.suffix):], u.suffix) {
			return strings.TrimSpace(s[:len(s)-len(u.suffix)]), u.mult
		}
	}
	return s, 1
}
