/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ironpost_xdp: count every packet by protocol, drop the ones the rules say,
 * report the ones that match a rule through a rate-limited ring buffer.
 *
 * Compiled by BCC at start-up.  Only UAPI headers are included: pulling in
 * <linux/ip.h> instead of <uapi/linux/ip.h> costs seconds of start-up.
 *
 * Knobs arrive as -D flags from ironpost_tui/datapath.py:
 *   BLOCKLIST_MAX CIDR_MAX MATCH_MAX SHAPES_MAX ALLOW_MAX RULE_SLOTS
 *   RINGBUF_PAGES EVENT_RATE (events/s per CPU, 0 = unlimited)
 *   SRC_AGG_MAX DST_AGG_MAX PORT_SEEN_MAX PORT_MEMORY_NS (detector aggregates)
 *   PY_ABI_VERSION PY_EVENT_SIZE PY_VALUE_SIZE PY_SHAPE_SIZE PY_MATCH_KEY_SIZE
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
_Static_assert(sizeof(struct agg_value) == PY_AGG_VALUE_SIZE, "agg_value layout differs from abi.py");
_Static_assert(sizeof(struct port_key) == PY_PORT_KEY_SIZE, "port_key layout differs from abi.py");

#ifdef IRONPOST_PIN_DIR
#define IRONPOST_MAP(type, key, leaf, name, max, flags) \
	BPF_TABLE_PINNED(type, key, leaf, name, max, IRONPOST_PIN_DIR "/" #name, flags)
#else
#define IRONPOST_MAP(type, key, leaf, name, max, flags) \
	BPF_F_TABLE(type, key, leaf, name, max, flags)
#endif

/* Maps that carry state an operator must not lose: pinned with --persist. */
IRONPOST_MAP("hash", __u32, struct blocklist_value, BLOCKLIST, BLOCKLIST_MAX, 0);
IRONPOST_MAP("lpm_trie", struct lpm_v4_key, struct blocklist_value, SRC4, CIDR_MAX, BPF_F_NO_PREALLOC);
IRONPOST_MAP("lpm_trie", struct lpm_v6_key, struct blocklist_value, SRC6, CIDR_MAX, BPF_F_NO_PREALLOC);
IRONPOST_MAP("hash", struct match_key, struct blocklist_value, MATCH, MATCH_MAX, 0);
IRONPOST_MAP("array", __u32, struct rule_shape, SHAPES, SHAPES_MAX, 0);
IRONPOST_MAP("lpm_trie", struct lpm_v4_key, struct allow_value, ALLOW4, ALLOW_MAX, BPF_F_NO_PREALLOC);
IRONPOST_MAP("lpm_trie", struct lpm_v6_key, struct allow_value, ALLOW6, ALLOW_MAX, BPF_F_NO_PREALLOC);
IRONPOST_MAP("array", __u32, struct ironpost_config, CONFIG, 1, 0);
/* Per-CPU counters.  XDP runs with migration disabled and one packet at a
 * time per CPU, so each CPU owns its copy: plain increments, no atomics. */
IRONPOST_MAP("percpu_array", __u32, struct proto_stats, STATS, STATS_MAX, 0);
IRONPOST_MAP("percpu_array", __u32, struct rule_hit, RULE_HITS, RULE_SLOTS, 0);
IRONPOST_MAP("percpu_array", __u32, __u64, EVENT_STATS, EVSTAT_MAX, 0);
IRONPOST_MAP("percpu_array", __u32, struct rate_state, RATE_STATE, 1, 0);


/* Detector aggregates: LRU, so a flood of spoofed sources evicts the oldest
 * instead of filling the map.  Shared by all CPUs: counters use atomic adds. */
BPF_TABLE("lru_hash", struct agg_key, struct agg_value, SRC_AGG, SRC_AGG_MAX);
BPF_TABLE("lru_hash", struct agg_key, struct agg_value, DST_AGG, DST_AGG_MAX);
BPF_TABLE("lru_hash", struct port_key, __u64, PORT_SEEN, PORT_SEEN_MAX);

BPF_RINGBUF_OUTPUT(EVENTS, RINGBUF_PAGES);

#define VLAN_MAX_DEPTH 2
#define IPV6_EXT_MAX 6
#define NO_MATCH 0xffffffffU
/* Monitor matches rank after every drop match. */
#define MONITOR_RANK 0x80000000U

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

struct pkt {
	__u8 src[16];
	__u8 dst[16];
	__u16 sport; /* network order */
	__u16 dport; /* network order */
	__u8 family;
	__u8 protocol;
	__u8 tcp_flags;
	__u8 has_ports;
};

struct best_match {
	__u32 rank;
	__u32 slot;
};

/* The parsed packet and the best match so far live in per-CPU map memory,
 * not on the stack.  The verifier does not track map contents, so every
 * parse path and every path through the shape loop looks alike to it and is
 * pruned; on the stack they would be explored one by one (measured: over a
 * million instructions and 27 s to load with 32 shapes, against the limit). */
struct scratch {
	struct pkt p;
	struct best_match best;
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
	}
}

static __always_inline void mask16(__u8 *out, const __u8 *in, const __u8 *mask)
{
	__u64 a, b, ma, mb;

	__builtin_memcpy(&a, in, 8);
	__builtin_memcpy(&b, in + 8, 8);
	__builtin_memcpy(&ma, mask, 8);
	__builtin_memcpy(&mb, mask + 8, 8);
	a &= ma;
	b &= mb;
	__builtin_memcpy(out, &a, 8);
	__builtin_memcpy(out + 8, &b, 8);
}

/* Tuple-space search over the multi-field rules: rules are grouped by shape
 * (which fields, which prefix lengths), so a packet costs one hash lookup per
 * shape in use, not one comparison per rule. */
static __always_inline void match_shapes(struct pkt *p, struct best_match *best)
{
	__u32 zero = 0;
	struct ironpost_config *cfg = CONFIG.lookup(&zero);
	if (!cfg)
		return;
	__u32 n = cfg->n_shapes;

	/* A real loop: unrolled, it would be SHAPES_MAX copies to verify. */
#pragma clang loop unroll(disable)
	for (__u32 i = 0; i < SHAPES_MAX; i++) {
		if (i >= n)
			break;
		__u32 idx = i;
		struct rule_shape *sh = SHAPES.lookup(&idx);
		if (!sh)
			break;
		/* An unused slot has family SHAPE_UNUSED: it never matches. */
		if (sh->family && sh->family != p->family)
			continue;
		if ((sh->fields & FIELD_DPORT) && !p->has_ports)
			continue;
		struct match_key k = {};
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

static __always_inline int is_protected(struct pkt *p)
{
	if (p->family == FAMILY_V4) {
		struct lpm_v4_key k = {.prefixlen = 32};
		__builtin_memcpy(k.addr, p->src, 4);
		return ALLOW4.lookup(&k) != NULL;
	}
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
	e->ts_ns = now;
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

/* One function per map: BCC rewrites MAP.lookup() only on a map named in
 * place, not on a map passed as an argument or through a macro. */
static __always_inline struct agg_value *src_agg(struct agg_key *k)
{
	struct agg_value *v = SRC_AGG.lookup(k);
	if (v)
		return v;
	struct agg_value zero = {};
	SRC_AGG.insert(k, &zero);
	return SRC_AGG.lookup(k);
}

static __always_inline struct agg_value *dst_agg(struct agg_key *k)
{
	struct agg_value *v = DST_AGG.lookup(k);
	if (v)
		return v;
	struct agg_value zero = {};
	DST_AGG.insert(k, &zero);
	return DST_AGG.lookup(k);
}

/* Count what the SYN-flood and port-scan detectors need.  A probe is what a
 * scanner sends and a reply never is: TCP without ACK (SYN, FIN, NULL, Xmas
 * scans), or UDP that does not come from a service port (< 1024) to an
 * ephemeral one (a DNS or NTP answer). */
static __always_inline void aggregate(struct pkt *p, __u64 now)
{
	int tcp = p->protocol == IPPROTO_TCP;

	if (!tcp && p->protocol != IPPROTO_UDP)
		return;
	int syn = tcp && (p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN;
	struct agg_key k = {};
	__builtin_memcpy(k.addr, p->src, 16);
	k.family = p->family;
	struct agg_value *v = src_agg(&k);
	if (!v)
		return;
	if (tcp)
		__sync_fetch_and_add(&v->tcp, 1);
	if (syn)
		__sync_fetch_and_add(&v->syn, 1);
	v->last_ns = now;

	if (p->has_ports) {
		int probe;
		if (tcp)
			probe = !(p->tcp_flags & TCP_ACK);
		else
			probe = !(bpf_ntohs(p->sport) < 1024 && bpf_ntohs(p->dport) >= 1024);
		if (probe) {
			struct port_key pk = {};
			__builtin_memcpy(pk.addr, p->src, 16);
			pk.family = p->family;
			pk.protocol = p->protocol;
			pk.port = p->dport;
			__u64 *seen = PORT_SEEN.lookup(&pk);
			if (!seen || now - *seen > PORT_MEMORY_NS) {
				if (tcp)
					__sync_fetch_and_add(&v->new_tcp_ports, 1);
				else
					__sync_fetch_and_add(&v->new_udp_ports, 1);
			}
			if (seen)
				*seen = now;
			else
				PORT_SEEN.update(&pk, &now);
		}
	}

	if (!tcp)
		return;
	__builtin_memcpy(k.addr, p->dst, 16);
	v = dst_agg(&k);
	if (!v)
		return;
	__sync_fetch_and_add(&v->tcp, 1);
	if (syn)
		__sync_fetch_and_add(&v->syn, 1);
	v->last_ns = now;
}

int ironpost_xdp(struct xdp_md *ctx)
{
	__u32 len = ctx->data_end - ctx->data;
	__u8 verdict = VERDICT_PASS;
	__u32 zero = 0;
	struct scratch *sc = SCRATCH.lookup(&zero);

	if (!sc)
		return XDP_PASS;
	struct pkt *pp = &sc->p;
	struct best_match *best = &sc->best;
	__builtin_memset(pp, 0, sizeof(*pp));
	best->rank = NO_MATCH;
	best->slot = 0;

	if (parse(ctx, pp)) {
		if (pp->family == FAMILY_V4) {
			__u32 saddr;
			__builtin_memcpy(&saddr, pp->src, 4);
			struct blocklist_value *v = BLOCKLIST.lookup(&saddr);
			if (v)
				consider(v, best);
			struct lpm_v4_key k4 = {.prefixlen = 32};
			__builtin_memcpy(k4.addr, pp->src, 4);
			v = SRC4.lookup(&k4);
			if (v)
				consider(v, best);
		} else {
			struct lpm_v6_key k6 = {.prefixlen = 128};
			__builtin_memcpy(k6.addr, pp->src, 16);
			struct blocklist_value *v = SRC6.lookup(&k6);
			if (v)
				consider(v, best);
		}
		match_shapes(pp, best);
	}

	if (best->rank != NO_MATCH) {
		if (!(best->rank & MONITOR_RANK))
			/* The allowlist is consulted only on the way to a drop,
			 * so it costs nothing on the pass path. */
			verdict = is_protected(pp) ? VERDICT_PROTECTED : VERDICT_DROP;
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

	__u64 now = bpf_ktime_get_ns();
	aggregate(pp, now);

	if (best->rank != NO_MATCH) {
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
