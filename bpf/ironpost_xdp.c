/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ironpost_xdp: count every packet by protocol, drop the ones the rules say,
 * report the ones that match a rule through a rate-limited ring buffer.
 *
 * Compiled by BCC at start-up.  Only UAPI headers are included: pulling in
 * <linux/ip.h> instead of <uapi/linux/ip.h> costs seconds of start-up.
 *
 * Knobs arrive as -D flags from ironpost_tui/datapath.py:
 *   BLOCKLIST_MAX EXACT4_BITS (EXACT4 has 2^bits buckets) CIDR_MAX MATCH_MAX SHAPES_MAX ALLOW_MAX RULE_SLOTS
 *   RINGBUF_PAGES EVENT_RATE (events/s per CPU, 0 = unlimited)
 *   SRC_SETS_BITS DST_SETS_BITS PORT_MEMORY_NS (detector sketches: 2^bits sets each)
 *   PY_ABI_VERSION PY_EVENT_SIZE PY_VALUE_SIZE PY_SHAPE_SIZE PY_MATCH_KEY_SIZE
 *   PY_CONFIG_SIZE PY_SRC_WAY_SIZE PY_DST_WAY_SIZE PY_EXACT4_SIZE
 *   IRONPOST_PIN_DIR (optional: reuse or create the maps pinned there)
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>
#include <uapi/linux/udp.h>

/* Not <uapi/linux/in.h> nor <uapi/linux/tcp.h>: both include <linux/socket.h>, which BCC
 * resolves to the kernel's own header and, through it, much of the kernel; they were half of
 * the compile time (bench/: `make bench BENCH_ARGS=--only=startup`).  What the program uses
 * of them (the IPv6 ones come from <linux/in6.h>, through ipv6.h): */
#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_AH 51

struct tcphdr {
	__be16 source;
	__be16 dest;
	__be32 seq;
	__be32 ack_seq;
	__be16 flags; /* data offset, reserved bits and flags: byte 13 holds the flags */
	__be16 window;
	__sum16 check;
	__be16 urg_ptr;
};

#include "ironpost_common.h"

#if !defined(PY_ABI_VERSION) || PY_ABI_VERSION != IRONPOST_ABI_VERSION
#error "ironpost_tui/abi.py and bpf/ironpost_common.h disagree on IRONPOST_ABI_VERSION"
#endif
_Static_assert(sizeof(struct packet_event) == PY_EVENT_SIZE, "packet_event layout differs from abi.py");
_Static_assert(sizeof(struct blocklist_value) == PY_VALUE_SIZE, "blocklist_value layout differs from abi.py");
_Static_assert(sizeof(struct rule_shape) == PY_SHAPE_SIZE, "rule_shape layout differs from abi.py");
_Static_assert(sizeof(struct match_key) == PY_MATCH_KEY_SIZE, "match_key layout differs from abi.py");
_Static_assert(sizeof(struct ironpost_config) == PY_CONFIG_SIZE, "ironpost_config layout differs from abi.py");
_Static_assert(sizeof(struct src_way) == PY_SRC_WAY_SIZE, "src_way layout differs from abi.py");
_Static_assert(sizeof(struct dst_way) == PY_DST_WAY_SIZE, "dst_way layout differs from abi.py");
_Static_assert(sizeof(struct exact4_bucket) == PY_EXACT4_SIZE, "exact4_bucket layout differs from abi.py");
_Static_assert(EXACT4_BITS >= 6 && EXACT4_BITS <= 24, "EXACT4 has 2^6 to 2^24 buckets");

#define SRC_SETS (1U << SRC_SETS_BITS)
#define DST_SETS (1U << DST_SETS_BITS)
_Static_assert(SRC_SETS_BITS >= 6 && DST_SETS_BITS >= 6, "sketches have at least 64 sets");

/* DIRTY value: one bit per sketch set touched within one period. */
struct dirty_sets {
	__u64 src[SRC_SETS / 64];
	__u64 dst[DST_SETS / 64];
};

#ifdef IRONPOST_PIN_DIR
#define IRONPOST_MAP(type, key, leaf, name, max, flags) \
	BPF_TABLE_PINNED(type, key, leaf, name, max, IRONPOST_PIN_DIR "/" #name, flags)
#else
#define IRONPOST_MAP(type, key, leaf, name, max, flags) \
	BPF_F_TABLE(type, key, leaf, name, max, flags)
#endif

/* Maps that carry state an operator must not lose: pinned with --persist. */
IRONPOST_MAP("hash", __u32, struct blocklist_value, BLOCKLIST, BLOCKLIST_MAX, 0);
IRONPOST_MAP("array", __u32, struct exact4_bucket, EXACT4, 1U << EXACT4_BITS, 0);
IRONPOST_MAP("lpm_trie", struct lpm_v4_key, struct blocklist_value, SRC4, CIDR_MAX, BPF_F_NO_PREALLOC);
IRONPOST_MAP("lpm_trie", struct lpm_v6_key, struct blocklist_value, SRC6, CIDR_MAX, BPF_F_NO_PREALLOC);
IRONPOST_MAP("hash", struct match_key, struct blocklist_value, MATCH, MATCH_MAX, 0);
IRONPOST_MAP("array", __u32, struct rule_shape, SHAPES, SHAPES_MAX, 0);
IRONPOST_MAP("lpm_trie", struct lpm_v4_key, struct allow_value, ALLOW4, ALLOW_MAX, BPF_F_NO_PREALLOC);
IRONPOST_MAP("lpm_trie", struct lpm_v6_key, struct allow_value, ALLOW6, ALLOW_MAX, BPF_F_NO_PREALLOC);
IRONPOST_MAP("array", __u32, struct ironpost_config, CONFIG, 1, 0);
IRONPOST_MAP("array", __u32, __u64, ADDR_FILTER, ADDR_FILTER_WORDS, 0);
IRONPOST_MAP("array", __u32, __u64, PORT_FILTER, PORT_FILTER_WORDS, 0);
/* Per-CPU counters.  XDP runs with migration disabled and one packet at a
 * time per CPU, so each CPU owns its copy: plain increments, no atomics. */
IRONPOST_MAP("percpu_array", __u32, struct proto_stats, STATS, STATS_MAX, 0);
IRONPOST_MAP("percpu_array", __u32, struct rule_hit, RULE_HITS, RULE_SLOTS, 0);
IRONPOST_MAP("percpu_array", __u32, __u64, EVENT_STATS, EVSTAT_MAX, 0);
IRONPOST_MAP("percpu_array", __u32, struct rate_state, RATE_STATE, 1, 0);


/* Detector sketches (see ironpost_common.h): per program run, never pinned. */
BPF_PERCPU_ARRAY(SRC_SKETCH, struct src_set, SRC_SETS);
BPF_PERCPU_ARRAY(DST_SKETCH, struct dst_set, DST_SETS);
BPF_PERCPU_ARRAY(DIRTY, struct dirty_sets, DIRTY_GENS);
BPF_ARRAY(TICK, struct ironpost_tick, 1);

BPF_RINGBUF_OUTPUT(EVENTS, RINGBUF_PAGES);

#define VLAN_MAX_DEPTH 2
#define IPV6_EXT_MAX 6

struct vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

struct ipv6_opt {
	__u8 nexthdr;
	__u8 hdrlen;
};

struct ipv6_frag {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;
	__be32 id;
};

/* 8-byte aligned (so are map values and the sketch ways' keys): the
 * addresses are then read as two u64 loads, not sixteen byte loads. */
struct pkt {
	__u8 src[16];
	__u8 dst[16];
	__u16 sport; /* network order */
	__u16 dport; /* network order */
	__u8 family;
	__u8 protocol;
	__u8 tcp_flags;
	__u8 has_ports;
} __attribute__((aligned(8)));

#define ALIGNED8(p) __builtin_assume_aligned((p), 8)

struct best_match {
	__u32 rank;
	__u32 slot;
	__u32 from_source; /* the best match is a source-only rule (EXACT4, BLOCKLIST, SRC4, SRC6) */
};

/* The parsed packet and the best match so far live in per-CPU map memory,
 * not on the stack.  The verifier does not track map contents, so every
 * parse path and every path through the shape loop looks alike to it and is
 * pruned; on the stack they would be explored one by one (measured: over a
 * million instructions and 27 s to load with 32 shapes, against the limit). */
struct scratch {
	struct pkt p;
	struct best_match best;
	__u64 seq; /* packets this CPU ran: the sketches' LRU order */
};
BPF_PERCPU_ARRAY(SCRATCH, struct scratch, 1);

static __always_inline __u32 stats_index(__u8 family, __u8 protocol)
{
	if (!family)
		return STATS_OTHER;
	if (protocol == IPPROTO_TCP)
		return STATS_TCP;
	if (protocol == IPPROTO_UDP)
		return STATS_UDP;
	if (protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6)
		return STATS_ICMP;
	return STATS_OTHER;
}

/* Read ports and flags of the L4 header at l4.  A header cut short leaves
 * has_ports at 0: the packet still counts under its IP protocol. */
static __always_inline void parse_l4(struct pkt *p, void *l4, void *data_end)
{
	if (p->protocol == IPPROTO_TCP) {
		struct tcphdr *th = l4;
		if ((void *)(th + 1) > data_end)
			return;
		p->sport = th->source;
		p->dport = th->dest;
		p->tcp_flags = ((__u8 *)th)[13];
		p->has_ports = 1;
	} else if (p->protocol == IPPROTO_UDP) {
		struct udphdr *uh = l4;
		if ((void *)(uh + 1) > data_end)
			return;
		p->sport = uh->source;
		p->dport = uh->dest;
		p->has_ports = 1;
	}
}

/* Parse Ethernet (up to two VLAN tags), IPv4 or IPv6, then L4.  Returns 0
 * when the packet has no parsable IP header (family stays 0). */
static __always_inline int parse(struct xdp_md *ctx, struct pkt *p)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *cur;
	__u16 proto;

	if ((void *)(eth + 1) > data_end)
		return 0;
	proto = eth->h_proto;
	cur = eth + 1;
#pragma unroll
	for (int i = 0; i < VLAN_MAX_DEPTH; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_hdr *vh = cur;
		if ((void *)(vh + 1) > data_end)
			return 0;
		proto = vh->encap_proto;
		cur = vh + 1;
	}

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = cur;
		if ((void *)(iph + 1) > data_end)
			return 0;
		__u32 hlen = iph->ihl * 4;
		if (hlen < sizeof(*iph) || cur + hlen > data_end)
			return 0;
		p->family = FAMILY_V4;
		p->protocol = iph->protocol;
		__builtin_memcpy(p->src, &iph->saddr, 4);
		__builtin_memcpy(p->dst, &iph->daddr, 4);
		/* A non-first fragment carries no L4 header. */
		if (iph->frag_off & bpf_htons(0x1fff))
			return 1;
		parse_l4(p, cur + hlen, data_end);
		return 1;
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6h = cur;
		if ((void *)(ip6h + 1) > data_end)
			return 0;
		p->family = FAMILY_V6;
		__builtin_memcpy(p->src, &ip6h->saddr, 16);
		__builtin_memcpy(p->dst, &ip6h->daddr, 16);
		__u8 nexthdr = ip6h->nexthdr;
		cur = ip6h + 1;
#pragma unroll
		for (int i = 0; i < IPV6_EXT_MAX; i++) {
			if (nexthdr == IPPROTO_HOPOPTS || nexthdr == IPPROTO_ROUTING ||
			    nexthdr == IPPROTO_DSTOPTS) {
				struct ipv6_opt *opt = cur;
				if ((void *)(opt + 1) > data_end)
					goto truncated;
				nexthdr = opt->nexthdr;
				cur += (opt->hdrlen + 1) * 8;
			} else if (nexthdr == IPPROTO_AH) {
				struct ipv6_opt *opt = cur;
				if ((void *)(opt + 1) > data_end)
					goto truncated;
				nexthdr = opt->nexthdr;
				cur += (opt->hdrlen + 2) * 4;
			} else if (nexthdr == IPPROTO_FRAGMENT) {
				struct ipv6_frag *fh = cur;
				if ((void *)(fh + 1) > data_end)
					goto truncated;
				nexthdr = fh->nexthdr;
				cur = fh + 1;
				if (fh->frag_off & bpf_htons(0xfff8)) {
					p->protocol = nexthdr;
					return 1;
				}
			} else {
				break;
			}
		}
		p->protocol = nexthdr;
		parse_l4(p, cur, data_end);
		return 1;
truncated:
		/* Extension headers cut short: the addresses are known, the
		 * upper protocol is not. */
		p->protocol = IPPROTO_NONE;
		return 1;
	}
	return 0;
}

/* A match's rank: its list position, with monitor matches after every drop
 * match, so the lowest rank is the verdict and the rule credited. */
static __always_inline __u32 rank_of(struct blocklist_value *v)
{
	if (v->action == ACTION_DROP)
		return v->priority & ~MONITOR_RANK;
	if (v->action == ACTION_MONITOR)
		return v->priority | MONITOR_RANK;
	return NO_MATCH;
}

static __always_inline void consider(struct blocklist_value *v, struct best_match *best)
{
	__u32 rank = rank_of(v);
	if (rank < best->rank) {
		best->rank = rank;
		best->slot = v->rule_slot;
		best->from_source = 0;
	}
}

/* An exact IPv4 source in EXACT4 (ironpost_common.h): one bucket, no call. */
static __always_inline void match_exact4(__u32 saddr, __u32 seed, struct best_match *best)
{
	__u32 b = ((saddr ^ seed) * 0x9E3779B1U) >> (32 - EXACT4_BITS);
	struct exact4_bucket *bk = EXACT4.lookup(&b);

	if (!bk)
		return;
#pragma unroll
	for (int i = 0; i < EXACT4_WAYS; i++) {
		__u32 rank = bk->rank1[i] - 1; /* a way not in use: NO_MATCH */
		if (bk->addr[i] == saddr && rank < best->rank) {
			best->rank = rank;
			best->slot = bk->slot[i];
		}
	}
}

static __always_inline void mask16(__u8 *out, const __u8 *in, const __u8 *mask)
{
	__u64 a, b, ma, mb;

	__builtin_memcpy(&a, ALIGNED8(in), 8);
	__builtin_memcpy(&b, ALIGNED8(in + 8), 8);
	__builtin_memcpy(&ma, ALIGNED8(mask), 8);
	__builtin_memcpy(&mb, ALIGNED8(mask + 8), 8);
	a &= ma;
	b &= mb;
	__builtin_memcpy(ALIGNED8(out), &a, 8);
	__builtin_memcpy(ALIGNED8(out + 8), &b, 8);
}

/* The ADDR_FILTER bucket of an address: IPv4 by its /24, IPv6 by its /48
 * (ironpost_tui/prefilter.py computes the same). */
static __always_inline __u32 filter_bucket(const __u8 *a, __u8 family)
{
	__u32 x, w0;
	__u16 w1;

	__builtin_memcpy(&w0, ALIGNED8(a), 4);
	if (family == FAMILY_V4) {
		x = bpf_ntohl(w0) >> 8;
	} else {
		__builtin_memcpy(&w1, ALIGNED8(a) + 4, 2);
		x = bpf_ntohl(w0) ^ (bpf_ntohs(w1) * 0x85EBCA6BU) ^ 0x7F4A7C15U;
	}
	return (x * 0x9E3779B1U) >> (32 - ADDR_FILTER_BITS);
}

static __always_inline __u32 filter_bits(__u32 bucket)
{
	__u32 idx = bucket >> 1;
	__u64 *w = ADDR_FILTER.lookup(&idx);

	if (!w)
		return 0xffffffffU; /* cannot happen; would only cost lookups */
	return (__u32)(*w >> ((bucket & 1) * 32));
}

/* Which shapes may hold a rule for this packet: by protocol, source,
 * destination and destination port. */
static __always_inline __u32 candidate_shapes(struct pkt *p, struct ironpost_config *cfg, __u32 src_bits)
{
	__u32 fam = p->family == FAMILY_V6;
	__u32 cand = cfg->proto_shapes[((fam & 1) << 8) | p->protocol];

	cand &= ((src_bits >> FILTER_SRC_SHIFT) & 0xff) | cfg->src_wild;
	if (!cand)
		return 0;
	if (p->has_ports) {
		__u32 port = bpf_ntohs(p->dport);
		__u32 idx = port >> 3;
		__u64 *w = PORT_FILTER.lookup(&idx);
		__u32 pb = w ? (__u32)(*w >> ((port & 7) * 8)) & 0xff : 0xff;
		cand &= pb | cfg->port_wild;
	} else {
		cand &= cfg->port_wild;
	}
	if (!cand)
		return 0;
	__u32 dst_bits = filter_bits(filter_bucket(p->dst, p->family));
	return cand & (((dst_bits >> FILTER_DST_SHIFT) & 0xff) | cfg->dst_wild);
}

/* Tuple-space search over the multi-field rules: rules are grouped by shape
 * (which fields, which prefix lengths), so a packet costs one hash lookup per
 * candidate shape, not one comparison per rule. */
static __always_inline void match_shapes(struct pkt *p, struct best_match *best, __u32 cand, __u32 n)
{
	/* A real loop: unrolled, it would be SHAPES_MAX copies to verify. */
#pragma clang loop unroll(disable)
	for (__u32 i = 0; i < SHAPES_MAX; i++) {
		if (i >= n)
			break;
		if (!(cand & (1U << i)))
			continue;
		__u32 idx = i;
		struct rule_shape *sh = SHAPES.lookup(&idx);
		if (!sh)
			break;
		/* An unused slot has family SHAPE_UNUSED: it never matches. */
		if (sh->family && sh->family != p->family)
			continue;
		if ((sh->fields & FIELD_DPORT) && !p->has_ports)
			continue;
		struct match_key k __attribute__((aligned(8))) = {};
		k.shape = i;
		k.family = sh->family;
		k.protocol = p->protocol & sh->proto_mask;
		k.dst_port = p->dport & sh->port_mask;
		mask16(k.src, p->src, sh->src_mask);
		mask16(k.dst, p->dst, sh->dst_mask);
		struct blocklist_value *v = MATCH.lookup(&k);
		if (v)
			consider(v, best);
	}
}

static __always_inline int is_protected(struct pkt *p, struct ironpost_config *cfg, __u32 src_bits)
{
	if (p->family == FAMILY_V4) {
		if (!(src_bits & FILTER_ALLOW) && !(cfg->flags & CFG_WILD_ALLOW4))
			return 0;
		struct lpm_v4_key k = {.prefixlen = 32};
		__builtin_memcpy(k.addr, p->src, 4);
		return ALLOW4.lookup(&k) != NULL;
	}
	if (!(src_bits & FILTER_ALLOW) && !(cfg->flags & CFG_WILD_ALLOW6))
		return 0;
	struct lpm_v6_key k = {.prefixlen = 128};
	__builtin_memcpy(k.addr, p->src, 16);
	return ALLOW6.lookup(&k) != NULL;
}

/* Token bucket per CPU: EVENT_RATE events/s with a burst of one second. */
static __always_inline int event_allowed(__u64 now)
{
#if EVENT_RATE > 0
	__u32 zero = 0;
	struct rate_state *rs = RATE_STATE.lookup(&zero);
	if (!rs)
		return 0;
	if (now == rs->last_ns) { /* within one tick: nothing to refill */
		if (rs->tokens < 1000000000ULL)
			return 0;
		rs->tokens -= 1000000000ULL;
		return 1;
	}
	__u64 elapsed = now - rs->last_ns;
	if (elapsed > 1000000000ULL)
		elapsed = 1000000000ULL;
	__u64 tokens = rs->tokens + elapsed * EVENT_RATE;
	if (tokens > EVENT_RATE * 1000000000ULL)
		tokens = EVENT_RATE * 1000000000ULL;
	rs->last_ns = now;
	if (tokens < 1000000000ULL) {
		rs->tokens = tokens;
		return 0;
	}
	rs->tokens = tokens - 1000000000ULL;
#endif
	return 1;
}

static __always_inline void count_event(__u32 reason)
{
	__u64 *c = EVENT_STATS.lookup(&reason);
	if (c)
		*c += 1;
}

static __always_inline void emit_event(struct pkt *p, __u64 now, __u32 len, __u32 slot,
				       __u8 verdict)
{
	if (!event_allowed(now)) {
		count_event(EVSTAT_LOST_RATE_LIMITED);
		return;
	}
	struct packet_event *e = EVENTS.ringbuf_reserve(sizeof(*e));
	if (!e) {
		count_event(EVSTAT_LOST_RINGBUF_FULL);
		return;
	}
	e->ts_ns = bpf_ktime_get_ns(); /* precise: events are few (rate-limited) */
	__builtin_memcpy(e->src, p->src, 16);
	__builtin_memcpy(e->dst, p->dst, 16);
	e->src_port = bpf_ntohs(p->sport);
	e->dst_port = bpf_ntohs(p->dport);
	e->pkt_len = len;
	e->rule_slot = slot;
	e->family = p->family;
	e->protocol = p->protocol;
	e->tcp_flags = p->tcp_flags;
	e->verdict = verdict;
	EVENTS.ringbuf_submit(e, 0);
	count_event(EVSTAT_DELIVERED);
}

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_ACK 0x10

/* The sketch set of an address (seeded: an attacker cannot aim at a set). */
static __always_inline __u32 sketch_hash(const __u8 *a, __u32 seed)
{
	__u64 a0, a1;

	__builtin_memcpy(&a0, ALIGNED8(a), 8);
	__builtin_memcpy(&a1, ALIGNED8(a + 8), 8);
	__u64 x = a0 ^ (a1 * 0x9E3779B97F4A7C15ULL);
	return ((__u32)(x ^ (x >> 32)) ^ seed) * 0x9E3779B1U;
}

static __always_inline int same_key(struct agg_key *k, struct pkt *p, const __u8 *addr)
{
	__u64 a0, a1, b0, b1;

	__builtin_memcpy(&a0, ALIGNED8(addr), 8);
	__builtin_memcpy(&a1, ALIGNED8(addr + 8), 8);
	__builtin_memcpy(&b0, ALIGNED8(k->addr), 8);
	__builtin_memcpy(&b1, ALIGNED8(k->addr + 8), 8);
	return a0 == b0 && a1 == b1 && k->family == p->family;
}

/* Count what the SYN-flood and port-scan detectors need.  A probe is what a
 * scanner sends and a reply never is: TCP without ACK (SYN, FIN, NULL, Xmas
 * scans), or UDP that does not come from a service port (< 1024) to an
 * ephemeral one (a DNS or NTP answer). */
static __always_inline void aggregate(struct pkt *p, struct ironpost_tick *tick, __u64 seq, __u32 seed)
{
	int tcp = p->protocol == IPPROTO_TCP;

	if (!tcp && p->protocol != IPPROTO_UDP)
		return;
	int syn = tcp && (p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN;
	__u32 gen = tick->gen; /* a tick count: DIRTY entry gen % DIRTY_GENS */
	__u32 gi = gen & (DIRTY_GENS - 1);
	struct dirty_sets *dirty;

	__u32 set = (sketch_hash(p->src, seed) >> (32 - SRC_SETS_BITS)) & (SRC_SETS - 1);
	struct src_set *ss = SRC_SKETCH.lookup(&set);
	if (!ss)
		return;
	__u32 wi = 0;
	int found = 0;
#pragma unroll
	for (__u32 i = 0; i < SKETCH_WAYS; i++) {
		if (!found && same_key(&ss->way[i].key, p, p->src)) {
			wi = i;
			found = 1;
		}
	}
	if (!found) {
#pragma unroll
		for (__u32 i = 1; i < SKETCH_WAYS; i++)
			if (ss->way[i].last_seq < ss->way[wi & (SKETCH_WAYS - 1)].last_seq)
				wi = i;
	}
	struct src_way *w = &ss->way[wi & (SKETCH_WAYS - 1)];
	if (!found) {
		__builtin_memset(w, 0, sizeof(*w));
		__builtin_memcpy(ALIGNED8(w->key.addr), ALIGNED8(p->src), 16);
		w->key.family = p->family;
	}
	/* Mark the set once per generation per way, not once per packet. */
	if (w->marked != gen + 1) {
		dirty = DIRTY.lookup(&gi);
		if (!dirty)
			return;
		dirty->src[(set >> 6) & (SRC_SETS / 64 - 1)] |= 1ULL << (set & 63);
		w->marked = gen + 1;
	}
	if (tcp)
		w->tcp += 1;
	if (syn)
		w->syn += 1;
	w->last_seq = seq;

	if (p->has_ports) {
		int probe;
		if (tcp)
			probe = !(p->tcp_flags & TCP_ACK);
		else
			probe = !(bpf_ntohs(p->sport) < 1024 && bpf_ntohs(p->dport) >= 1024);
		if (probe) {
			__u64 now = tick->now_ns;
			if (now - w->ports_since > PORT_MEMORY_NS) {
				/* ports_since 0: a new way (bitmap already clear), or ports
				 * seen before the first tick, which still count as seen. */
				if (w->ports_since) {
#pragma unroll
					for (int i = 0; i < PORT_BITS / 64; i++)
						w->ports[i] = 0;
				}
				w->ports_since = now;
			}
			__u32 bit = ((bpf_ntohs(p->dport) | (tcp ? 0 : 0x10000U)) * 0x9E3779B1U) >> (32 - 9);
			__u64 mask = 1ULL << (bit & 63);
			__u64 *word = &w->ports[(bit >> 6) & (PORT_BITS / 64 - 1)];
			if (!(*word & mask)) {
				*word |= mask;
				if (tcp)
					w->new_tcp_ports += 1;
				else
					w->new_udp_ports += 1;
			}
		}
	}

	if (!tcp)
		return;
	set = (sketch_hash(p->dst, seed) >> (32 - DST_SETS_BITS)) & (DST_SETS - 1);
	struct dst_set *ds = DST_SKETCH.lookup(&set);
	if (!ds)
		return;
	wi = 0;
	found = 0;
#pragma unroll
	for (__u32 i = 0; i < SKETCH_WAYS; i++) {
		if (!found && same_key(&ds->way[i].key, p, p->dst)) {
			wi = i;
			found = 1;
		}
	}
	if (!found) {
#pragma unroll
		for (__u32 i = 1; i < SKETCH_WAYS; i++)
			if (ds->way[i].last_seq < ds->way[wi & (SKETCH_WAYS - 1)].last_seq)
				wi = i;
	}
	struct dst_way *d = &ds->way[wi & (SKETCH_WAYS - 1)];
	if (!found) {
		__builtin_memset(d, 0, sizeof(*d));
		__builtin_memcpy(ALIGNED8(d->key.addr), ALIGNED8(p->dst), 16);
		d->key.family = p->family;
	}
	if (d->marked != gen + 1) {
		dirty = DIRTY.lookup(&gi);
		if (!dirty)
			return;
		dirty->dst[(set >> 6) & (DST_SETS / 64 - 1)] |= 1ULL << (set & 63);
		d->marked = gen + 1;
	}
	d->tcp += 1;
	if (syn)
		d->syn += 1;
	d->last_seq = seq;
}

int ironpost_xdp(struct xdp_md *ctx)
{
	__u32 len = ctx->data_end - ctx->data;
	__u8 verdict = VERDICT_PASS;
	__u32 zero = 0;
	struct scratch *sc = SCRATCH.lookup(&zero);
	struct ironpost_config *cfg = CONFIG.lookup(&zero);
	struct ironpost_tick *tick = TICK.lookup(&zero);

	if (!sc || !cfg || !tick)
		return XDP_PASS;
	struct pkt *pp = &sc->p;
	struct best_match *best = &sc->best;
	__builtin_memset(pp, 0, sizeof(*pp));
	best->rank = NO_MATCH;
	best->slot = 0;
	best->from_source = 0;
	__u32 src_bits = 0;

	if (parse(ctx, pp)) {
		src_bits = filter_bits(filter_bucket(pp->src, pp->family));
		if (pp->family == FAMILY_V4) {
			__u32 saddr;
			__builtin_memcpy(&saddr, ALIGNED8(pp->src), 4);
			if (src_bits & FILTER_EXACT4)
				match_exact4(saddr, cfg->hash_seed, best);
			if (src_bits & FILTER_EXACT) {
				struct blocklist_value *v = BLOCKLIST.lookup(&saddr);
				if (v)
					consider(v, best);
			}
			if ((src_bits & FILTER_PREFIX) || (cfg->flags & CFG_WILD_PREFIX4)) {
				struct lpm_v4_key k4 = {.prefixlen = 32};
				__builtin_memcpy(k4.addr, pp->src, 4);
				struct blocklist_value *v = SRC4.lookup(&k4);
				if (v)
					consider(v, best);
			}
		} else if ((src_bits & FILTER_PREFIX) || (cfg->flags & CFG_WILD_PREFIX6)) {
			struct lpm_v6_key k6 = {.prefixlen = 128};
			__builtin_memcpy(k6.addr, pp->src, 16);
			struct blocklist_value *v = SRC6.lookup(&k6);
			if (v)
				consider(v, best);
		}
		best->from_source = best->rank != NO_MATCH;
		/* No multi-field rule can beat a source rule that ranks first. */
		if (cfg->match_rank < best->rank) {
			__u32 cand = candidate_shapes(pp, cfg, src_bits);
			if (cand)
				match_shapes(pp, best, cand, cfg->n_shapes);
		}
	}

	if (best->rank != NO_MATCH) {
		if (!(best->rank & MONITOR_RANK))
			/* The allowlist is consulted only on the way to a drop,
			 * so it costs nothing on the pass path. */
			verdict = is_protected(pp, cfg, src_bits) ? VERDICT_PROTECTED : VERDICT_DROP;
		else
			verdict = VERDICT_MONITOR;
	}

	__u32 idx = stats_index(pp->family, pp->protocol);
	struct proto_stats *s = STATS.lookup(&idx);
	if (s) {
		s->packets += 1;
		s->bytes += len;
		if (verdict == VERDICT_DROP)
			s->drops += 1;
	}
	idx = STATS_TOTAL;
	s = STATS.lookup(&idx);
	if (s) {
		s->packets += 1;
		s->bytes += len;
		if (verdict == VERDICT_DROP)
			s->drops += 1;
	}

	sc->seq += 1;
	/* A source a source rule drops is blocked already: detecting it again
	 * would tell nothing, and skipping it keeps a blocked flood cheap.  Drops
	 * by multi-field rules still count (a spoofed flood to a dropped port is
	 * still an attack on this host). */
	if (!(verdict == VERDICT_DROP && best->from_source))
		aggregate(pp, tick, sc->seq, cfg->hash_seed);

	if (best->rank != NO_MATCH) {
		/* No clock on the way of a packet no rule matched: TICK's time
		 * (the coarse clock before user space publishes one). */
		__u64 now = tick->now_ns ? tick->now_ns : bpf_ktime_get_coarse_ns();
		__u32 slot = best->slot;
		struct rule_hit *h = RULE_HITS.lookup(&slot);
		if (h) {
			h->packets += 1;
			h->last_hit_ns = now;
		}
		/* The verdict is settled before the event: a full ring buffer or
		 * the rate limit never changes what happens to the packet. */
		emit_event(pp, now, len, slot, verdict);
	}

	return verdict == VERDICT_DROP ? XDP_DROP : XDP_PASS;
}
