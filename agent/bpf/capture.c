//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// TC classifier that copies whole packets matching a small rule table to a
// BPF ring buffer. It never changes or drops traffic: every path returns
// TC_ACT_UNSPEC, which is also TCX_NEXT.
//
// A TCP rule may carry a payload budget (see budget_admit): past it, a
// flow's payload is not copied, so that Zeek gets the protocol headers it
// parses without the bulk it would only skip.
//
// Written to pass the verifier of kernel 5.15 (legacy TC, no TCX, no
// dynptrs) as well as current kernels: headers are read with
// bpf_skb_load_bytes into small stack buffers, every loop has a constant
// bound, and the copy goes through a per-CPU scratch area because
// bpf_ringbuf_reserve needs a constant size. On PREEMPT_RT two runs of
// the classifier can interleave on one CPU, so the scratch slot is
// guarded by a per-CPU count of the runs that want it: the loser counts a
// drop instead of overwriting the winner's copy.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define TC_ACT_UNSPEC (-1)

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8

#define IPPROTO_HOPOPTS 0
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ROUTING 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_AH 51
#define IPPROTO_DSTOPTS 60

#define MAX_VLAN_TAGS 2
#define MAX_IPV6_EXT_HDRS 6
#define MAX_RULES 16

// Most PCAP-over-TCP streams the capture can be split into.
#define MAX_STREAMS 64

// The largest snap length: the scratch area holds this many packet bytes.
// A power of two minus one so that a mask keeps the verifier convinced.
#define MAX_SNAPLEN 65535

#define DIR_INGRESS 1
#define DIR_EGRESS 2

// Budget modes of a rule (struct rule's budget_mode).
#define BUDGET_NONE 0
#define BUDGET_TURN 1      // re-armed whenever the other side sends payload
#define BUDGET_HANDSHAKE 2 // once per flow and direction

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04

enum counter {
	COUNTER_SEEN = 0,          // packets the classifier looked at
	COUNTER_MATCHED = 1,       // packets that matched a rule (captured or lost below)
	COUNTER_MATCHED_BYTES = 2, // their original lengths
	COUNTER_IPV6_TOO_DEEP = 3, // IPv6, extension headers beyond MAX_IPV6_EXT_HDRS, not captured
	                           // although a rule matched all but its protocol and ports
	COUNTER_BUDGET_SKIPPED = 4,       // matched, not copied: past the rule's payload budget
	COUNTER_BUDGET_SKIPPED_BYTES = 5, // their original lengths
	COUNTER_BUDGET_TRUNCATED = 6,     // copied with their payload cut at the budget
	COUNTER_BUDGET_TRUNCATED_BYTES = 7, // the payload bytes cut
	COUNTER_MAX = 8,
};

// Why a packet meant for a stream was lost; stream_drops counts them by
// stream.
enum drop_reason {
	DROP_RINGBUF_FULL = 0,     // matched, but the ring buffer was full
	DROP_FRAG_BEFORE_FIRST = 1,// a later fragment of a matched datagram came before its first
	DROP_SCRATCH_BUSY = 2,     // matched, but this CPU's scratch slot was in use (PREEMPT_RT)
	DROP_MAX = 3,
};

// One filter rule. Zero fields are wildcards. A packet matches when
// every non-zero field matches; ports and addresses match either end.
struct rule {
	__u8 proto;     // IPPROTO_TCP, IPPROTO_UDP, or 0 for any
	__u8 direction; // DIR_INGRESS, DIR_EGRESS, or 0 for both
	__u8 family;    // 4 or 6 when addr/mask hold a CIDR, 0 for any address
	__u8 budget_mode; // BUDGET_*; only on TCP rules
	__u16 port;     // host byte order, 0 for any
	__u16 pad2;
	__u32 addr[4];  // network byte order; IPv4 uses addr[0]
	__u32 mask[4];
	__u32 budget;   // payload bytes per turn or per flow direction
	__u32 pad3;
};

struct rules {
	__u32 count;
	__u32 pad;
	struct rule rule[MAX_RULES];
};

// Metadata in front of every packet in the ring buffer.
struct pkt_meta {
	__u64 timestamp;   // bpf_ktime_get_boot_ns(); user space adds the wall-clock offset
	__u32 ifindex;
	__u32 orig_len;    // skb->len: the frame as seen, without an offloaded VLAN tag
	__u32 cap_len;     // bytes that follow this header
	__u16 vlan_tci;    // offloaded (not in the data) outer VLAN tag, if vlan_present
	__u16 vlan_proto;  // its TPID, host byte order
	__u8 direction;    // DIR_INGRESS or DIR_EGRESS
	__u8 vlan_present;
	__u8 stream;       // PCAP-over-TCP stream (flow hash), < streams
	__u8 pad[5];
};

struct scratch {
	struct pkt_meta meta;
	__u8 data[MAX_SNAPLEN + 1];
};

// A fragmented datagram whose first fragment matched: its later fragments
// carry no ports, so they are captured by looking up this key, and go to
// the stream the first fragment went to (the map's value).
struct frag_key {
	__u32 saddr[4];
	__u32 daddr[4];
	__u32 id;
	__u8 proto;
	__u8 family;
	__u16 pad;
};

// A TCP connection under a budget, its endpoints in a fixed order
// (smaller address and port first) so that both directions share it.
struct flow_key {
	__u32 addr[2][4];
	__u16 port[2];
	__u8 family;
	__u8 pad[3];
};

struct flow_budget {
	__u32 used[2];   // payload bytes copied in the side's current turn
	__u32 allow[2];  // payload bytes the side's current turn may copy
	__u8 turn;       // side + 1 of the last payload seen, 0 before any
	__u8 msgs[2];    // HTTP/1 messages the side started in its current turn
	__u8 pipelined;  // a side sent two messages in one turn: copy everything
	__u8 pad[4];
};

// How far header_end looks for the blank line that ends an HTTP/1
// header, and what a turn may copy when the header goes on past its first
// segment (so is longer than the segment).
#define HEADER_SCAN 2048
#define HEADER_CHUNK 64
#define HEADER_MAX 8192

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24); // set by user space at load time
} packets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rules);
} filter_rules SEC(".maps");

// Not a per-CPU array: per-CPU values are limited to 32 KiB. User space
// sizes it to the number of possible CPUs. A run of the classifier stays
// on its CPU, but on PREEMPT_RT another run can preempt it there: a slot
// is used only by a run that scratch_busy shows alone.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); // set by user space to the number of possible CPUs
	__type(key, __u32);
	__type(value, struct scratch);
} scratch_area SEC(".maps");

// Per CPU, the runs of the classifier that want the CPU's scratch slot
// right now; the slot is used by a run that found itself alone. Without
// PREEMPT_RT a run is never interrupted by another on its CPU, and this
// is 0 whenever a run starts.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} scratch_busy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct frag_key);
	__type(value, __u8); // the datagram's stream
} fragments SEC(".maps");

// Later fragments seen before their datagram's first fragment, by
// datagram: they are not captured (nothing says yet whether the datagram
// matches). When the first fragment arrives they are counted as lost if
// it matches, and forgotten either way.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct frag_key);
	__type(value, __u32); // fragments seen so far
} early_fragments SEC(".maps");

// Budget state of TCP connections a budgeted rule matched. An entry
// evicted early costs only bytes: the flow starts over with a full
// budget.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, struct flow_budget);
} budgets SEC(".maps");

// Packets lost, by reason and the stream they were meant for: index
// reason * MAX_STREAMS + stream.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DROP_MAX * MAX_STREAMS);
	__type(key, __u32);
	__type(value, __u64);
} stream_drops SEC(".maps");

// Snap length, set by user space before loading (1..MAX_SNAPLEN).
volatile const __u32 snaplen = MAX_SNAPLEN;

// Waking the reader for every packet costs more than copying it: the
// reader polls on a short timer instead, and is woken early only when
// this many bytes wait in the ring. Set by user space before loading.
volatile const __u64 wakeup_bytes = 1 << 20;

// Number of PCAP-over-TCP streams (1..MAX_STREAMS), set by user space
// before loading. With one, no hash is computed (the verifier prunes it).
volatile const __u32 streams = 1;

// What the parser learned about a packet.
struct pkt_info {
	__u32 saddr[4];
	__u32 daddr[4];
	__u32 frag_id;
	__u16 sport;
	__u16 dport;
	__u8 family;    // 4, 6, or 0 when not IP
	__u8 proto;     // transport protocol, 0 when unknown
	__u8 has_ports; // sport/dport are valid
	__u8 fragment;  // 0: not fragmented, 1: first fragment, 2: later fragment
	__u8 too_deep;  // IPv6 with more extension headers than the parser follows
	// TCP only (has_tcp): flags, and where the payload starts in the frame
	// and how long it is by the IP header.
	__u8 has_tcp;
	__u8 tcp_flags;
	__u16 ip_off;   // the IP header's offset in the frame
	__u32 payload_off;
	__u32 payload_len;
	__u32 ip_end;   // the frame offset where the IP packet ends, by its header
};

static __always_inline void count(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += n;
}

static __always_inline void drop(__u32 reason, __u8 stream, __u64 n)
{
	__u32 idx = reason * MAX_STREAMS + stream;
	__u64 *v = bpf_map_lookup_elem(&stream_drops, &idx);
	if (v)
		*v += n;
}

// parse fills info from the packet. It returns 0 when the packet is not
// IP (or is too short), which still lets "any" rules match it.
static __always_inline int parse(struct __sk_buff *skb, struct pkt_info *info)
{
	__u32 off = ETH_HLEN;
	__u16 proto;

	if (bpf_skb_load_bytes(skb, 12, &proto, sizeof(proto)) < 0)
		return 0;
	proto = bpf_ntohs(proto);

#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD)
			break;
		__u16 tag[2];
		if (bpf_skb_load_bytes(skb, off, tag, sizeof(tag)) < 0)
			return 0;
		proto = bpf_ntohs(tag[1]);
		off += 4;
	}

	__u8 l4proto;
	info->ip_off = off;
	if (proto == ETH_P_IP) {
		__u8 ip[20];
		if (bpf_skb_load_bytes(skb, off, ip, sizeof(ip)) < 0)
			return 0;
		if ((ip[0] >> 4) != 4)
			return 0;
		__u32 ihl = (ip[0] & 0x0f) * 4;
		if (ihl < 20)
			return 0;
		info->family = 4;
		l4proto = ip[9];
		info->ip_end = off + (((__u32)ip[2] << 8) | ip[3]);
		__builtin_memcpy(&info->saddr[0], &ip[12], 4);
		__builtin_memcpy(&info->daddr[0], &ip[16], 4);
		__u16 frag = ((__u16)ip[6] << 8) | ip[7];
		__u16 frag_off = frag & 0x1fff;
		if (frag_off != 0 || (frag & 0x2000)) {
			info->fragment = frag_off ? 2 : 1;
			info->frag_id = ((__u32)ip[4] << 8) | ip[5];
		}
		off += ihl;
	} else if (proto == ETH_P_IPV6) {
		__u8 ip6[40];
		if (bpf_skb_load_bytes(skb, off, ip6, sizeof(ip6)) < 0)
			return 0;
		if ((ip6[0] >> 4) != 6)
			return 0;
		info->family = 6;
		l4proto = ip6[6];
		info->ip_end = off + 40 + (((__u32)ip6[4] << 8) | ip6[5]);
		__builtin_memcpy(info->saddr, &ip6[8], 16);
		__builtin_memcpy(info->daddr, &ip6[24], 16);
		off += 40;

		// Walk a bounded number of extension headers; give up (no
		// transport protocol) on anything deeper or unknown.
#pragma unroll
		for (int i = 0; i < MAX_IPV6_EXT_HDRS; i++) {
			if (l4proto == IPPROTO_HOPOPTS || l4proto == IPPROTO_ROUTING ||
			    l4proto == IPPROTO_DSTOPTS) {
				__u8 ext[2];
				if (bpf_skb_load_bytes(skb, off, ext, sizeof(ext)) < 0)
					return 1;
				l4proto = ext[0];
				off += ((__u32)ext[1] + 1) * 8;
			} else if (l4proto == IPPROTO_AH) {
				__u8 ext[2];
				if (bpf_skb_load_bytes(skb, off, ext, sizeof(ext)) < 0)
					return 1;
				l4proto = ext[0];
				off += ((__u32)ext[1] + 2) * 4;
			} else if (l4proto == IPPROTO_FRAGMENT) {
				__u8 ext[8];
				if (bpf_skb_load_bytes(skb, off, ext, sizeof(ext)) < 0)
					return 1;
				l4proto = ext[0];
				__u16 frag = ((__u16)ext[2] << 8) | ext[3];
				info->fragment = (frag & 0xfff8) ? 2 : 1;
				__builtin_memcpy(&info->frag_id, &ext[4], 4);
				off += 8;
				if (info->fragment == 2)
					break;
			} else {
				break;
			}
		}
		if (l4proto == IPPROTO_HOPOPTS || l4proto == IPPROTO_ROUTING ||
		    l4proto == IPPROTO_DSTOPTS || l4proto == IPPROTO_AH ||
		    (l4proto == IPPROTO_FRAGMENT && info->fragment != 2)) {
			info->too_deep = 1;
			return 1;
		}
	} else {
		return 0;
	}

	info->proto = l4proto;
	if (info->fragment == 0 && l4proto == IPPROTO_TCP) {
		__u8 tcp[14];
		if (bpf_skb_load_bytes(skb, off, tcp, sizeof(tcp)) == 0) {
			info->sport = ((__u16)tcp[0] << 8) | tcp[1];
			info->dport = ((__u16)tcp[2] << 8) | tcp[3];
			info->has_ports = 1;
			__u32 doff = (tcp[12] >> 4) * 4;
			// A zero length field (BIG TCP, offloads) leaves the frame's
			// own length as the end.
			if (info->ip_end <= off)
				info->ip_end = skb->len;
			if (doff >= 20 && off + doff <= info->ip_end) {
				info->has_tcp = 1;
				info->tcp_flags = tcp[13];
				info->payload_off = off + doff;
				info->payload_len = info->ip_end - info->payload_off;
			}
		}
	} else if (info->fragment != 2 && (l4proto == IPPROTO_TCP || l4proto == IPPROTO_UDP)) {
		__u16 ports[2];
		if (bpf_skb_load_bytes(skb, off, ports, sizeof(ports)) == 0) {
			info->sport = bpf_ntohs(ports[0]);
			info->dport = bpf_ntohs(ports[1]);
			info->has_ports = 1;
		}
	}
	return 1;
}

static __always_inline int addr_match(const struct rule *r, const __u32 *a)
{
	if (r->family == 4)
		return (a[0] & r->mask[0]) == r->addr[0];
	return (a[0] & r->mask[0]) == r->addr[0] && (a[1] & r->mask[1]) == r->addr[1] &&
	       (a[2] & r->mask[2]) == r->addr[2] && (a[3] & r->mask[3]) == r->addr[3];
}

// rule_outer_match checks what is known of every IP packet: direction,
// family and addresses.
static __always_inline int rule_outer_match(const struct rule *r, const struct pkt_info *info,
					    __u8 direction)
{
	if (r->direction && r->direction != direction)
		return 0;
	if (r->family) {
		if (r->family != info->family)
			return 0;
		if (!addr_match(r, info->saddr) && !addr_match(r, info->daddr))
			return 0;
	}
	return 1;
}

static __always_inline int rule_match(const struct rule *r, const struct pkt_info *info,
				      __u8 direction)
{
	if (!rule_outer_match(r, info, direction))
		return 0;
	if (r->proto && r->proto != info->proto)
		return 0;
	if (r->port) {
		if (!info->has_ports)
			return 0;
		if (r->port != info->sport && r->port != info->dport)
			return 0;
	}
	return 1;
}

// The flow hash that chooses a packet's stream. It must be symmetric
// (both directions of a conversation in one stream, since Zeek needs both
// to see a transaction) and cheap. Each endpoint (address, port) is hashed
// on its own, and the two endpoint hashes are combined smaller first, so
// swapping source and destination changes nothing. Ports are used when
// the packet has them, which spreads the many source ports of one
// resolver over all streams; packets without ports (ICMP, unparsed IPv6)
// hash on addresses and protocol. Later fragments of a datagram have no
// ports: they take the stream of their first fragment from the fragments
// map instead of being hashed, which keeps every fragment of a datagram
// in one stream without giving up the ports. Non-IP frames go to stream
// 0. internal/flowhashtest holds the same function in Go; the tests hold
// the two to each other. Mixing rounds are MurmurHash3's.
static __always_inline __u32 rotl32(__u32 x, __u32 r)
{
	return (x << r) | (x >> (32 - r));
}

static __always_inline __u32 mix(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51;
	k = rotl32(k, 15);
	k *= 0x1b873593;
	h ^= k;
	h = rotl32(h, 13);
	return h * 5 + 0xe6546b64;
}

static __always_inline __u32 fmix(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

static __always_inline __u32 endpoint_hash(const __u32 *addr, __u16 port)
{
	__u32 h = 0;
	// Addresses are hashed as big-endian words so that the hash is the
	// same on every architecture.
	h = mix(h, bpf_ntohl(addr[0]));
	h = mix(h, bpf_ntohl(addr[1]));
	h = mix(h, bpf_ntohl(addr[2]));
	h = mix(h, bpf_ntohl(addr[3]));
	h = mix(h, port);
	return fmix(h);
}

static __always_inline __u8 flow_stream(const struct pkt_info *info)
{
	if (streams <= 1 || info->family == 0)
		return 0;
	__u32 a = endpoint_hash(info->saddr, info->sport);
	__u32 b = endpoint_hash(info->daddr, info->dport);
	__u32 h = mix(0, a < b ? a : b);
	h = mix(h, a < b ? b : a);
	h = mix(h, ((__u32)info->family << 8) | info->proto);
	h = fmix(h);
	// Multiply-shift maps the hash onto 0..streams-1 without a division.
	return (__u8)(((__u64)h * streams) >> 32);
}

static __always_inline void frag_key_of(struct frag_key *k, const struct pkt_info *info)
{
	__builtin_memcpy(k->saddr, info->saddr, sizeof(k->saddr));
	__builtin_memcpy(k->daddr, info->daddr, sizeof(k->daddr));
	k->id = info->frag_id;
	k->proto = info->proto;
	k->family = info->family;
	k->pad = 0;
}

// early_fragment remembers a later fragment that came before its first
// fragment, so that it is counted if the datagram turns out to match.
static __always_inline void early_fragment(const struct frag_key *k)
{
	__u32 one = 1;
	__u32 *n = bpf_map_lookup_elem(&early_fragments, k);
	if (n) {
		__sync_fetch_and_add(n, 1);
		return;
	}
	if (bpf_map_update_elem(&early_fragments, k, &one, BPF_NOEXIST) < 0) {
		// Another CPU inserted it meanwhile.
		n = bpf_map_lookup_elem(&early_fragments, k);
		if (n)
			__sync_fetch_and_add(n, 1);
	}
}

// first_fragment settles the fragments that came before it: lost if the
// datagram matched, not ours otherwise. Forgetting them either way keeps
// a reused IP ID from inheriting them.
static __always_inline void first_fragment(const struct frag_key *k, int matched, __u8 stream)
{
	__u32 *n = bpf_map_lookup_elem(&early_fragments, k);
	if (!n)
		return;
	if (matched)
		drop(DROP_FRAG_BEFORE_FIRST, stream, *n);
	bpf_map_delete_elem(&early_fragments, k);
}

// could_match reports whether a rule matches a packet whose protocol and
// ports the parser could not reach, on everything else.
static __always_inline int could_match(const struct rules *rules, const struct pkt_info *info,
				       __u8 direction)
{
	__u32 n = rules->count;
	for (int i = 0; i < MAX_RULES; i++) {
		if (i >= n)
			break;
		if (rule_outer_match(&rules->rule[i], info, direction))
			return 1;
	}
	return 0;
}

// match reports whether the packet is captured, in which stream, and
// under which rule's budget (*rule_out, NULL for none).
static __always_inline int match(struct __sk_buff *skb, __u8 direction, struct pkt_info *info,
				 __u8 *stream, struct rule *rule_out)
{
	__u32 zero = 0;

	struct rules *rules = bpf_map_lookup_elem(&filter_rules, &zero);
	if (!rules)
		return 0;

	parse(skb, info);

	// Later fragments have no ports: they belong to the capture when the
	// first fragment of the same datagram matched (and was seen first).
	if (info->fragment == 2) {
		struct frag_key k;
		frag_key_of(&k, info);
		__u8 *first = bpf_map_lookup_elem(&fragments, &k);
		if (!first) {
			early_fragment(&k);
			return 0;
		}
		*stream = *first;
		return 1;
	}

	__u32 n = rules->count;
	int matched = 0;
	// A bounded loop (kernel 5.3+): unrolling 16 rule checks would bloat
	// the program for no gain.
	for (int i = 0; i < MAX_RULES; i++) {
		if (i >= n)
			break;
		if (rule_match(&rules->rule[i], info, direction)) {
			matched = 1;
			rule_out->budget_mode = rules->rule[i].budget_mode;
			rule_out->budget = rules->rule[i].budget;
			break;
		}
	}

	if (matched)
		*stream = flow_stream(info);
	if (info->fragment == 1) {
		struct frag_key k;
		frag_key_of(&k, info);
		if (matched)
			bpf_map_update_elem(&fragments, &k, stream, BPF_ANY);
		first_fragment(&k, matched, *stream);
	}
	if (!matched && info->too_deep && could_match(rules, info, direction))
		count(COUNTER_IPV6_TOO_DEEP, 1);
	return matched;
}

// flow_key_of fills k with the packet's connection, endpoints in a fixed
// order, and returns the packet's side: 0 when it comes from the first.
static __always_inline int flow_key_of(struct flow_key *k, const struct pkt_info *info)
{
	int swap = 0;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		__u32 a = bpf_ntohl(info->saddr[i]), b = bpf_ntohl(info->daddr[i]);
		if (a != b) {
			swap = a > b;
			goto decided;
		}
	}
	swap = info->sport > info->dport;
decided:
	if (swap) {
		__builtin_memcpy(k->addr[0], info->daddr, 16);
		__builtin_memcpy(k->addr[1], info->saddr, 16);
		k->port[0] = info->dport;
		k->port[1] = info->sport;
	} else {
		__builtin_memcpy(k->addr[0], info->saddr, 16);
		__builtin_memcpy(k->addr[1], info->daddr, 16);
		k->port[0] = info->sport;
		k->port[1] = info->dport;
	}
	k->family = info->family;
	return swap;
}

// starts_message_at reports whether the payload at offset at begins an
// HTTP/1 request or response: a new message re-arms the budget, so that
// the headers of the next response on a keep-alive or pipelined
// connection are copied even when its predecessor's body used the turn's
// budget up.
static __always_inline int starts_message_at(struct __sk_buff *skb, const struct pkt_info *info, __u32 at)
{
	char b[8];
	if (at + sizeof(b) > info->payload_len || bpf_skb_load_bytes(skb, info->payload_off + at, b, sizeof(b)) < 0)
		return 0;
	if (b[0] == 'H' && b[1] == 'T' && b[2] == 'T' && b[3] == 'P' && b[4] == '/' && b[5] == '1' && b[6] == '.')
		return 1;
	// The methods of RFC 9110 and PATCH, each followed by a space.
	if (b[0] == 'G' && b[1] == 'E' && b[2] == 'T' && b[3] == ' ')
		return 1;
	if (b[0] == 'P' && b[1] == 'U' && b[2] == 'T' && b[3] == ' ')
		return 1;
	if (b[0] == 'P' && b[1] == 'O' && b[2] == 'S' && b[3] == 'T' && b[4] == ' ')
		return 1;
	if (b[0] == 'H' && b[1] == 'E' && b[2] == 'A' && b[3] == 'D' && b[4] == ' ')
		return 1;
	if (b[0] == 'P' && b[1] == 'A' && b[2] == 'T' && b[3] == 'C' && b[4] == 'H' && b[5] == ' ')
		return 1;
	if (b[0] == 'D' && b[1] == 'E' && b[2] == 'L' && b[3] == 'E' && b[4] == 'T' && b[5] == 'E' && b[6] == ' ')
		return 1;
	if (b[0] == 'O' && b[1] == 'P' && b[2] == 'T' && b[3] == 'I' && b[4] == 'O' && b[5] == 'N' && b[6] == 'S')
		return 1;
	return 0;
}

// header_end returns where the HTTP/1 header that starts at off ends
// (just past its blank line, "\r\n\r\n"), or 0 when the first HEADER_SCAN
// bytes from off up to off + len hold no such line. A global function:
// the verifier checks it once on its own and its result is a plain number
// to the caller, so the scan's many exits do not multiply the paths it
// walks through the rest of the classifier.
__attribute__((noinline)) int header_end(struct __sk_buff *skb, __u32 off, __u32 len)
{
	__u8 buf[HEADER_CHUNK];
	__u32 window = 0;

	if (len > HEADER_SCAN)
		len = HEADER_SCAN;
	__u32 end = off + len;
	// Every load is a whole chunk, which keeps the verifier's bounds
	// simple: the last one ends at the payload's end and so overlaps
	// bytes already scanned (or, for a short payload, the headers before
	// it); it is scanned whole, from a fresh window, and a blank line
	// before off is ignored. The frame's own headers make end >= 64 for
	// any payload long enough to hold an HTTP header.
	if (end < HEADER_CHUNK)
		return 0;
	for (__u32 c = 0; c < HEADER_SCAN / HEADER_CHUNK; c++) {
		__u32 start = off + c * HEADER_CHUNK;
		if (start >= end)
			break;
		if (start + HEADER_CHUNK > end) {
			start = end - HEADER_CHUNK;
			window = 0;
		}
		if (bpf_skb_load_bytes(skb, start, buf, HEADER_CHUNK) < 0)
			return 0;
		for (__u32 i = 0; i < HEADER_CHUNK; i++) {
			window = (window << 8) | buf[i];
			if (window == 0x0d0a0d0a && start + i + 1 > off)
				return start + i + 1 - off;
		}
	}
	return 0;
}

// MAX_PIPELINED is how many HTTP/1 messages one segment may start with
// and still have every header copied (pipelined requests are often sent
// together).
#define MAX_PIPELINED 8

// headers_end returns how much of the payload the HTTP/1 headers at its
// start take: the first header, and each header that follows it straight
// away (a pipelined request); HEADER_MAX when the first one goes on past
// the scanned part of the segment. *messages counts the headers.
static __always_inline __u32 headers_end(struct __sk_buff *skb, const struct pkt_info *info, __u32 *messages)
{
	__u32 total = 0;
	*messages = 1;
	for (int i = 0; i < MAX_PIPELINED; i++) {
		if (total >= info->payload_len)
			break;
		__u32 h = header_end(skb, info->payload_off + total, info->payload_len - total);
		if (h == 0)
			return total ? total : HEADER_MAX;
		total += h;
		if (!starts_message_at(skb, info, total))
			break;
		*messages = i + 2;
	}
	return total;
}

// budget_admit applies a rule's payload budget to a TCP packet. It
// returns 0 when the packet is not copied at all, else 1 with *keep the
// payload bytes to copy (all of them, or the budget's rest). What Zeek
// needs to stay correct is always copied: SYN, FIN and RST; each turn's
// first budget bytes, and when the turn starts with an HTTP/1 message its
// whole header besides (up to the blank line). Pure ACKs are not copied:
// Zeek steps over a hole in one side's stream when the other side
// acknowledges past it, and the next request, or the FIN, does that.
static __always_inline int budget_admit(struct __sk_buff *skb, const struct pkt_info *info,
					const struct rule *r, __u32 *keep)
{
	*keep = info->payload_len;
	if (r->budget_mode == BUDGET_NONE || !info->has_tcp)
		return 1;

	struct flow_key k = {};
	int side = flow_key_of(&k, info) & 1;
	__u8 flags = info->tcp_flags;
	if (flags & TCP_FLAG_SYN) {
		// A connection (re)starts: a full budget for both sides.
		struct flow_budget fresh = {};
		bpf_map_update_elem(&budgets, &k, &fresh, BPF_ANY);
		return 1;
	}
	struct flow_budget *st = bpf_map_lookup_elem(&budgets, &k);
	if (!st) {
		// A connection that began before the agent (or was evicted):
		// counted from here.
		struct flow_budget fresh = {};
		bpf_map_update_elem(&budgets, &k, &fresh, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&budgets, &k);
		if (!st)
			return 1;
	}
	int control = flags & (TCP_FLAG_FIN | TCP_FLAG_RST);
	__u32 len = info->payload_len;
	if (len == 0)
		return control;

	if (r->budget_mode == BUDGET_TURN) {
		// Pipelined HTTP: a response can start anywhere in a segment, after
		// the body of the one before, where only the body's length (in
		// its header) says. The classifier does not follow bodies, so a
		// pipelined connection is copied whole from then on.
		if (st->pipelined)
			return 1;
		int message = starts_message_at(skb, info, 0);
		if (st->turn != side + 1)
			st->msgs[side] = 0;
		if (st->turn != side + 1 || message) {
			__u32 allow = r->budget;
			if (message) {
				__u32 n = 0;
				allow += headers_end(skb, info, &n);
				n += st->msgs[side];
				st->msgs[side] = n > 255 ? 255 : n;
				if (n > 1) {
					st->pipelined = 1;
					st->turn = side + 1;
					return 1;
				}
			}
			st->allow[side] = allow;
			st->used[side] = 0;
		}
	} else {
		st->allow[side] = r->budget;
	}
	st->turn = side + 1;
	__u32 used = st->used[side];
	__u32 allow = st->allow[side];
	if (used >= allow) {
		*keep = 0;
		return control;
	}
	if (len > allow - used)
		*keep = allow - used;
	st->used[side] = used + *keep;
	return 1;
}

// shorten rewrites the copy's IP length to end keep payload bytes in, so
// that Zeek reads a whole shorter segment: a segment whose capture is
// shorter than its IP length would be discarded (truncated_tcp_payload),
// headers included. The IPv4 header checksum is updated (RFC 1624); the
// TCP checksum no longer matches, which Zeek run with -C (the image's
// default) ignores.
static __always_inline void shorten(struct scratch *s, const struct pkt_info *info, __u32 keep)
{
	__u32 off = info->ip_off;
	__u32 end = info->payload_off + keep;
	if (info->family == 4) {
		__u16 old = ((__u16)s->data[(off + 2) & MAX_SNAPLEN] << 8) | s->data[(off + 3) & MAX_SNAPLEN];
		__u16 new = (__u16)(end - off);
		s->data[(off + 2) & MAX_SNAPLEN] = new >> 8;
		s->data[(off + 3) & MAX_SNAPLEN] = new & 0xff;
		__u32 sum = ((__u16)s->data[(off + 10) & MAX_SNAPLEN] << 8) | s->data[(off + 11) & MAX_SNAPLEN];
		sum = (~sum & 0xffff) + (~old & 0xffff) + new;
		sum = (sum & 0xffff) + (sum >> 16);
		sum = (sum & 0xffff) + (sum >> 16);
		sum = ~sum & 0xffff;
		s->data[(off + 10) & MAX_SNAPLEN] = sum >> 8;
		s->data[(off + 11) & MAX_SNAPLEN] = sum & 0xff;
	} else {
		__u16 new = (__u16)(end - off - 40);
		s->data[(off + 4) & MAX_SNAPLEN] = new >> 8;
		s->data[(off + 5) & MAX_SNAPLEN] = new & 0xff;
	}
}

static __always_inline int capture(struct __sk_buff *skb, __u8 direction)
{
	struct pkt_info info = {};
	struct rule r = {};
	__u8 stream = 0;
	__u32 zero = 0;

	count(COUNTER_SEEN, 1);
	if (!match(skb, direction, &info, &stream, &r))
		return TC_ACT_UNSPEC;

	__u32 len = skb->len;
	__u32 keep = 0;
	if (!budget_admit(skb, &info, &r, &keep)) {
		count(COUNTER_BUDGET_SKIPPED, 1);
		count(COUNTER_BUDGET_SKIPPED_BYTES, len);
		return TC_ACT_UNSPEC;
	}
	__u32 cap = len;
	int cut = info.has_tcp && keep < info.payload_len;
	if (cut) {
		cap = info.payload_off + keep;
		count(COUNTER_BUDGET_TRUNCATED, 1);
		count(COUNTER_BUDGET_TRUNCATED_BYTES, info.payload_len - keep);
	}
	if (cap > snaplen)
		cap = snaplen;
	cap &= MAX_SNAPLEN;
	if (cap == 0)
		return TC_ACT_UNSPEC;
	count(COUNTER_MATCHED, 1);
	count(COUNTER_MATCHED_BYTES, len);

	// Count in, then look: only a run that sees itself alone uses the
	// slot. Two runs may both see two and both drop, but never both see
	// one. An atomic add without fetch (XADD) is all the kernels since
	// 5.8 have in common with -mcpu=v1; an exchange needs 5.12.
	__u32 *busy = bpf_map_lookup_elem(&scratch_busy, &zero);
	if (!busy)
		return TC_ACT_UNSPEC;
	__sync_fetch_and_add(busy, 1);
	if (*(volatile __u32 *)busy != 1) {
		__sync_fetch_and_add(busy, -1);
		drop(DROP_SCRATCH_BUSY, stream, 1);
		return TC_ACT_UNSPEC;
	}

	__u32 cpu = bpf_get_smp_processor_id();
	struct scratch *s = bpf_map_lookup_elem(&scratch_area, &cpu);
	if (!s)
		goto release;
	if (bpf_skb_load_bytes(skb, 0, s->data, cap) < 0)
		goto release;
	if (cut && cap == info.payload_off + keep)
		shorten(s, &info, keep);

	s->meta.timestamp = bpf_ktime_get_boot_ns();
	s->meta.ifindex = skb->ifindex;
	s->meta.orig_len = len;
	s->meta.cap_len = cap;
	s->meta.direction = direction;
	s->meta.vlan_present = skb->vlan_present ? 1 : 0;
	s->meta.vlan_tci = skb->vlan_tci;
	s->meta.vlan_proto = bpf_ntohs(skb->vlan_proto);
	s->meta.stream = stream;

	__u64 flags = BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_query(&packets, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	if (bpf_ringbuf_output(&packets, s, sizeof(struct pkt_meta) + cap, flags) < 0)
		drop(DROP_RINGBUF_FULL, stream, 1);
release:
	// The copy is in the ring (or lost): count out. Atomically, since a
	// run that preempted this one may be counting in or out meanwhile.
	__sync_fetch_and_add(busy, -1);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int capture_ingress(struct __sk_buff *skb)
{
	return capture(skb, DIR_INGRESS);
}

SEC("tc")
int capture_egress(struct __sk_buff *skb)
{
	return capture(skb, DIR_EGRESS);
}

char __license[] SEC("license") = "Dual BSD/GPL";
