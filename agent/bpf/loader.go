package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/pano-observability/pano/agent/filter"
)

// MaxSnapLen is the largest snap length the classifier copies.
const MaxSnapLen = 65535

// Counter indexes, as in capture.c's enum counter.
const (
	counterSeen = iota
	counterMatched
	counterMatchedBytes
	counterIPv6TooDeep
	counterBudgetSkipped
	counterBudgetSkippedBytes
	counterBudgetTruncated
	counterBudgetTruncatedBytes
	counterMax
)

// Drop reasons counted by stream, as in capture.c's enum drop_reason.
const (
	dropRingbufFull = iota
	dropFragmentBeforeFirst
	dropScratchBusy
	dropMax
)

// MaxIPv6ExtHeaders is how many IPv6 extension headers the classifier
// follows to reach the transport header (MAX_IPV6_EXT_HDRS in capture.c).
const MaxIPv6ExtHeaders = 6

// MetaSize is the size of the metadata header in front of every packet
// in the ring buffer (struct pkt_meta).
const MetaSize = 32

// MetaStreamOffset is where struct pkt_meta holds the packet's stream.
const MetaStreamOffset = 26

// MaxStreams is the most PCAP-over-TCP streams the classifier can split
// the capture into (MAX_STREAMS in capture.c).
const MaxStreams = 64

// Direction values in the metadata.
const (
	DirIngress = 1
	DirEgress  = 2
)

// CapabilityHint names the fix for a permission error.
const CapabilityHint = "the agent needs CAP_BPF and CAP_PERFMON to load eBPF and CAP_NET_ADMIN to attach it " +
	"(or run as root); in docker compose: cap_add: [BPF, NET_ADMIN, PERFMON]"

// Options prepare the classifier before it is loaded.
type Options struct {
	SnapLen        uint32 // 1..MaxSnapLen
	RingBufferSize int    // bytes; a power of two, at least one page
	Rules          []filter.Rule
	// Streams is how many PCAP-over-TCP streams packets are spread over
	// by flow hash (1..MaxStreams; 0 means 1).
	Streams int
}

// Classifier is the loaded program pair and its maps.
type Classifier struct {
	objs    CaptureObjects
	streams int
}

// Load checks opts, loads the classifier into the kernel and writes the
// rule table. The caller must Close it.
func Load(opts Options) (*Classifier, error) {
	if opts.SnapLen == 0 || opts.SnapLen > MaxSnapLen {
		return nil, fmt.Errorf("snap length %d: must be 1..%d", opts.SnapLen, MaxSnapLen)
	}
	page := os.Getpagesize()
	if opts.RingBufferSize < page || bits.OnesCount(uint(opts.RingBufferSize)) != 1 {
		return nil, fmt.Errorf("ring buffer size %d: must be a power of two and at least %d (one page)", opts.RingBufferSize, page)
	}
	if opts.Streams == 0 {
		opts.Streams = 1
	}
	if opts.Streams < 1 || opts.Streams > MaxStreams {
		return nil, fmt.Errorf("%d streams: must be 1..%d", opts.Streams, MaxStreams)
	}
	table, err := rulesTable(opts.Rules)
	if err != nil {
		return nil, err
	}

	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raise RLIMIT_MEMLOCK for eBPF maps: %w (%s)", err, CapabilityHint)
	}

	spec, err := LoadCapture()
	if err != nil {
		return nil, fmt.Errorf("read the embedded classifier: %w", err)
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("count possible CPUs: %w", err)
	}
	spec.Maps[CaptureMapScratchArea].MaxEntries = uint32(cpus)
	spec.Maps[CaptureMapPackets].MaxEntries = uint32(opts.RingBufferSize)
	if err := spec.Variables[CaptureVarSnaplen].Set(opts.SnapLen); err != nil {
		return nil, fmt.Errorf("set snap length: %w", err)
	}
	// The reader polls every few milliseconds; an early wake-up is only
	// needed when a burst threatens to fill the ring before then.
	if err := spec.Variables[CaptureVarWakeupBytes].Set(uint64(opts.RingBufferSize / 4)); err != nil {
		return nil, fmt.Errorf("set wake-up threshold: %w", err)
	}
	if err := spec.Variables[CaptureVarStreams].Set(uint32(opts.Streams)); err != nil {
		return nil, fmt.Errorf("set stream count: %w", err)
	}

	c := &Classifier{streams: opts.Streams}
	if err := spec.LoadAndAssign(&c.objs, nil); err != nil {
		return nil, loadError(err)
	}
	zero := uint32(0)
	if err := c.objs.FilterRules.Put(&zero, &table); err != nil {
		c.objs.Close()
		return nil, fmt.Errorf("write filter rules: %w", err)
	}
	return c, nil
}

func loadError(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		// The last lines of the log say why; the whole log is long.
		log := ve.Log
		if len(log) > 20 {
			log = log[len(log)-20:]
		}
		return fmt.Errorf("the kernel's verifier rejected the classifier: %w\n%s", err, strings.Join(log, "\n"))
	}
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("load eBPF classifier: %w: %s", err, CapabilityHint)
	}
	if errors.Is(err, ebpf.ErrNotSupported) {
		return fmt.Errorf("load eBPF classifier: %w: the kernel lacks a feature the agent needs (BPF ring buffer: Linux 5.8 or later)", err)
	}
	return fmt.Errorf("load eBPF classifier: %w", err)
}

// rulesTable converts parsed rules to the classifier's table layout.
func rulesTable(rules []filter.Rule) (CaptureRules, error) {
	var t CaptureRules
	if len(rules) > len(t.Rule) {
		return t, fmt.Errorf("%d filter rules: at most %d are supported", len(rules), len(t.Rule))
	}
	t.Count = uint32(len(rules))
	for i, r := range rules {
		kr := &t.Rule[i]
		kr.Proto = uint8(r.Protocol)
		kr.Direction = uint8(r.Direction)
		kr.Port = r.Port
		kr.BudgetMode = uint8(r.BudgetMode)
		kr.Budget = r.Budget
		if r.Prefix.IsValid() {
			p := r.Prefix.Masked()
			addr := p.Addr().As16()
			var mask [16]byte
			for b := 0; b < p.Bits(); b++ {
				mask[b/8] |= 0x80 >> (b % 8)
			}
			if p.Addr().Is4() {
				kr.Family = 4
				a4 := p.Addr().As4()
				copy(addr[:], a4[:])
				for j := range 12 {
					addr[4+j] = 0
				}
			} else {
				kr.Family = 6
			}
			// The classifier compares raw network-order words, so keep
			// the bytes as they are in memory.
			for w := range 4 {
				kr.Addr[w] = binary.NativeEndian.Uint32(addr[w*4:])
				kr.Mask[w] = binary.NativeEndian.Uint32(mask[w*4:])
			}
		}
	}
	return t, nil
}

// Ingress is the program for the ingress hook.
func (c *Classifier) Ingress() *ebpf.Program { return c.objs.CaptureIngress }

// Egress is the program for the egress hook.
func (c *Classifier) Egress() *ebpf.Program { return c.objs.CaptureEgress }

// RingBuffer is the map packets arrive in.
func (c *Classifier) RingBuffer() *ebpf.Map { return c.objs.Packets }

// Streams is the number of streams the classifier spreads packets over.
func (c *Classifier) Streams() int { return c.streams }

// Counters are the classifier's totals over all CPUs. The losses by
// stream have one entry per stream; their totals are the sums.
type Counters struct {
	Seen, Matched, MatchedBytes uint64

	// RingBufferFull: matched, but the ring buffer to the agent was full.
	RingBufferFull       uint64
	StreamRingBufferFull []uint64
	// FragmentBeforeFirst: later fragments of a matched datagram that
	// arrived before its first fragment, when nothing could yet say the
	// datagram was wanted.
	FragmentBeforeFirst       uint64
	StreamFragmentBeforeFirst []uint64
	// ScratchBusy: matched, but the CPU's copy slot was held by a run the
	// packet's run had preempted (PREEMPT_RT kernels only).
	ScratchBusy       uint64
	StreamScratchBusy []uint64

	// IPv6TooManyExtHeaders: IPv6 packets with more than
	// MaxIPv6ExtHeaders extension headers, so of unknown protocol and
	// ports, that a rule matched on everything else and that no rule
	// matched in full. No stream: the stream hash needs the ports.
	IPv6TooManyExtHeaders uint64

	// A rule's payload budget (filter.Rule.Budget): packets not copied
	// and their original bytes; packets copied with their payload cut at
	// the budget and the payload bytes cut. Not losses: Zeek needs none
	// of it.
	BudgetSkipped, BudgetSkippedBytes     uint64
	BudgetTruncated, BudgetTruncatedBytes uint64
}

// Counters sums the per-CPU counters.
func (c *Classifier) Counters() (Counters, error) {
	var out [counterMax]uint64
	for i := range uint32(counterMax) {
		v, err := sumPerCPU(c.objs.Counters, i)
		if err != nil {
			return Counters{}, fmt.Errorf("read counter %d: %w", i, err)
		}
		out[i] = v
	}
	var drops [dropMax][]uint64
	var totals [dropMax]uint64
	for r := range uint32(dropMax) {
		drops[r] = make([]uint64, c.streams)
		for s := range uint32(c.streams) {
			v, err := sumPerCPU(c.objs.StreamDrops, r*MaxStreams+s)
			if err != nil {
				return Counters{}, fmt.Errorf("read stream %d drop counter %d: %w", s, r, err)
			}
			drops[r][s] = v
			totals[r] += v
		}
	}
	return Counters{
		Seen:                      out[counterSeen],
		Matched:                   out[counterMatched],
		MatchedBytes:              out[counterMatchedBytes],
		RingBufferFull:            totals[dropRingbufFull],
		StreamRingBufferFull:      drops[dropRingbufFull],
		FragmentBeforeFirst:       totals[dropFragmentBeforeFirst],
		StreamFragmentBeforeFirst: drops[dropFragmentBeforeFirst],
		ScratchBusy:               totals[dropScratchBusy],
		StreamScratchBusy:         drops[dropScratchBusy],
		IPv6TooManyExtHeaders:     out[counterIPv6TooDeep],
		BudgetSkipped:             out[counterBudgetSkipped],
		BudgetSkippedBytes:        out[counterBudgetSkippedBytes],
		BudgetTruncated:           out[counterBudgetTruncated],
		BudgetTruncatedBytes:      out[counterBudgetTruncatedBytes],
	}, nil
}

func sumPerCPU(m *ebpf.Map, key uint32) (uint64, error) {
	var perCPU []uint64
	if err := m.Lookup(&key, &perCPU); err != nil {
		return 0, err
	}
	var sum uint64
	for _, v := range perCPU {
		sum += v
	}
	return sum, nil
}

// Close unloads the programs and frees the maps. Attached programs stay
// in the kernel until their links or filters are removed.
func (c *Classifier) Close() error { return c.objs.Close() }
