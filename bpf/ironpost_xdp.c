/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ironpost_xdp: count every packet by protocol, drop the ones the rules say,
 * report the ones that match a rule through a rate-limited ring buffer.
 *
 * The pipeline is here: parse (packet.h, over the parse_*.h layers), match the rules
 * (rule_match.h), count, feed the detector sketches (sketch.h), report.  The maps are declared
 * here too, with the lookups the headers use.
 *
 * Compiled by BCC at start-up.  Only UAPI headers are included: pulling in
 * <linux/ip.h> instead of <uapi/linux/ip.h> costs seconds of start-up.
 *
 * Knobs arrive as -D flags from ironpost_tui/kernel/datapath.py:
 *   BLOCKLIST_MAX EXACT4_BITS (EXACT4 has 2^bits buckets) PREFIXH_BITS (PREFIX4H, PREFIX6H) CIDR_MAX MATCH_MAX
 *   MATCHH_BITS (MATCHH) SHAPES_MAX ALLOW_MAX RULE_SLOTS
 *   RINGBUF_PAGES EVENT_RATE (events/s per CPU, 0 = unlimited)
 *   SRC_SETS_BITS DST_SETS_BITS PORT_MEMORY_NS (detector sketches: 2^bits sets each)
 *   TOP_SRC_BITS TOP_DST_BITS TOP_PORT_BITS (top talkers: 2^bits sets each)
 *   PY_ABI_VERSION PY_EVENT_SIZE PY_VALUE_SIZE PY_SHAPE_SIZE PY_MATCH_KEY_SIZE
 *   PY_CONFIG_SIZE PY_SRC_WAY_SIZE PY_DST_WAY_SIZE PY_EXACT4_SIZE PY_PREFIX4H_SIZE PY_PREFIX6H_SIZE PY_MATCHH_SIZE
 *   PY_TOP_WAY_SIZE PY_TOP_SRC_WAY_SIZE
 *   PY_CAPTURE_CONFIG_SIZE PY_CAPTURE_META_SIZE
 *   IRONPOST_PIN_DIR (optional: reuse or create the maps pinned there)
 */
#include <uapi/linux/bpf.h>

#include "ironpost_common.h"
#include "packet.h"
#include "rule_match.h"
#include "sketch.h"
#include "top_talkers.h"
#include "capture.h"

#if !defined(PY_ABI_VERSION) || PY_ABI_VERSION != IRONPOST_ABI_VERSION
#error "ironpost_tui/kernel/abi.py and bpf/ironpost_common.h disagree on IRONPOST_ABI_VERSION"
#endif
_Static_assert(sizeof(struct packet_event) == PY_EVENT_SIZE, "packet_event layout differs from abi.py");
_Static_assert(sizeof(struct blocklist_value) == PY_VALUE_SIZE, "blocklist_value layout differs from abi.py");
_Static_assert(sizeof(struct rule_shape) == PY_SHAPE_SIZE, "rule_shape layout differs from abi.py");
_Static_assert(sizeof(struct match_key) == PY_MATCH_KEY_SIZE, "match_key layout differs from abi.py");
_Static_assert(sizeof(struct ironpost_config) == PY_CONFIG_SIZE, "ironpost_config layout differs from abi.py");
_Static_assert(sizeof(struct src_way) == PY_SRC_WAY_SIZE, "src_way layout differs from abi.py");
_Static_assert(sizeof(struct dst_way) == PY_DST_WAY_SIZE, "dst_way layout differs from abi.py");
_Static_assert(sizeof(struct exact4_bucket) == PY_EXACT4_SIZE, "exact4_bucket layout differs from abi.py");
_Static_assert(sizeof(struct top_way) == PY_TOP_WAY_SIZE, "top_way layout differs from abi.py");
_Static_assert(sizeof(struct top_src_way) == PY_TOP_SRC_WAY_SIZE, "top_src_way layout differs from abi.py");
_Static_assert(sizeof(struct prefix4h_bucket) == PY_PREFIX4H_SIZE, "prefix4h_bucket layout differs from abi.py");
_Static_assert(sizeof(struct prefix6h_bucket) == PY_PREFIX6H_SIZE, "prefix6h_bucket layout differs from abi.py");
_Static_assert(sizeof(struct matchh_bucket) == PY_MATCHH_SIZE, "matchh_bucket layout differs from abi.py");
_Static_assert(sizeof(struct match_key) == MATCH_KEY_WORDS * 8, "MATCHH reads a match_key as MATCH_KEY_WORDS u64");
_Static_assert(PREFIXH_BITS >= 6 && PREFIXH_BITS <= 24, "PREFIX4H and PREFIX6H have 2^6 to 2^24 buckets");
_Static_assert(EXACT4_BITS >= 6 && EXACT4_BITS <= 24, "EXACT4 has 2^6 to 2^24 buckets");
_Static_assert(MATCHH_BITS >= 6 && MATCHH_BITS <= 24, "MATCHH has 2^6 to 2^24 buckets");

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
IRONPOST_MAP("array", __u32, struct prefix4h_bucket, PREFIX4H, 1U << PREFIXH_BITS, 0);
IRONPOST_MAP("array", __u32, struct prefix6h_bucket, PREFIX6H, 1U << PREFIXH_BITS, 0);
IRONPOST_MAP("lpm_trie", struct lpm_v4_key, struct blocklist_value, SRC4, CIDR_MAX, BPF_F_NO_PREALLOC);
IRONPOST_MAP("lpm_trie", struct lpm_v6_key, struct blocklist_value, SRC6, CIDR_MAX, BPF_F_NO_PREALLOC);
IRONPOST_MAP("hash", struct match_key, struct blocklist_value, MATCH, MATCH_MAX, 0);
IRONPOST_MAP("array", __u32, struct matchh_bucket, MATCHH, 1U << MATCHH_BITS, 0);
/* Derived from MATCH's drop rules with a port, at most two entries for each (rule_match.h): never full. */
IRONPOST_MAP("hash", struct match_key, struct blocklist_value, FRAG_MATCH, 2 * MATCH_MAX, 0);
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
/* Top talkers (top_talkers.h): per program run, never pinned. */
BPF_PERCPU_ARRAY(TOP_SRC, struct top_src_set, TOP_SRC_SETS);
BPF_PERCPU_ARRAY(TOP_DST, struct top_set, TOP_DST_SETS);
BPF_PERCPU_ARRAY(TOP_PORT, struct top_set, TOP_PORT_SETS);

BPF_RINGBUF_OUTPUT(EVENTS, RINGBUF_PAGES);

/* The parsed packet and the best match so far live in per-CPU map memory,
 * not on the stack.  The verifier does not track map contents, so every
 * parse path and every path through the shape loop looks alike to it and is
 * pruned; on the stack they would be explored one by one (measured: over a
 * million instructions and 27 s to load with 32 shapes, against the limit). */
struct scratch {
	struct pkt p;
	struct best_match best;
	/* The shape loop's key (rule_match.h match_shapes()), here for the same reason (measured with
	 * MATCHH's first version: 78,784 instructions processed with the key on the stack, 69,428 here). */
	struct match_key key __attribute__((aligned(8)));
	__u64 seq; /* packets this CPU ran: the sketches' LRU order */
};
BPF_PERCPU_ARRAY(SCRATCH, struct scratch, 1);

/* The lookups rule_match.h and sketch.h use: BCC rewrites MAP.lookup() in this file only.  Keys go
 * by pointer, as to bpf_map_lookup_elem(): a key passed by value gets a stack slot of its own, which
 * changed the code and cost the verifier 5% more instructions. */
static __always_inline struct exact4_bucket *exact4_lookup(__u32 *bucket)
{
	return EXACT4.lookup(bucket);
}

static __always_inline struct prefix4h_bucket *prefix4h_lookup(__u32 *bucket)
{
	return PREFIX4H.lookup(bucket);
}

static __always_inline struct prefix6h_bucket *prefix6h_lookup(__u32 *bucket)
{
	return PREFIX6H.lookup(bucket);
}

static __always_inline struct blocklist_value *blocklist_lookup(__u32 *saddr)
{
	return BLOCKLIST.lookup(saddr);
}

static __always_inline struct blocklist_value *src4_lookup(struct lpm_v4_key *k)
{
	return SRC4.lookup(k);
}

static __always_inline struct blocklist_value *src6_lookup(struct lpm_v6_key *k)
{
	return SRC6.lookup(k);
}

static __always_inline struct rule_shape *shapes_lookup(__u32 *idx)
{
	return SHAPES.lookup(idx);
}

static __always_inline struct blocklist_value *match_lookup(struct match_key *k)
{
	return MATCH.lookup(k);
}

static __always_inline struct matchh_bucket *matchh_lookup(__u32 *bucket)
{
	return MATCHH.lookup(bucket);
}

static __always_inline struct blocklist_value *frag_match_lookup(struct match_key *k)
{
	return FRAG_MATCH.lookup(k);
}

static __always_inline __u64 *addr_filter_lookup(__u32 *idx)
{
	return ADDR_FILTER.lookup(idx);
}

static __always_inline __u64 *port_filter_lookup(__u32 *idx)
{
	return PORT_FILTER.lookup(idx);
}

static __always_inline int allow4_has(struct lpm_v4_key *k)
{
	return ALLOW4.lookup(k) != NULL;
}

static __always_inline int allow6_has(struct lpm_v6_key *k)
{
	return ALLOW6.lookup(k) != NULL;
}

static __always_inline struct src_set *src_sketch_lookup(__u32 *set)
{
	return SRC_SKETCH.lookup(set);
}

static __always_inline struct dst_set *dst_sketch_lookup(__u32 *set)
{
	return DST_SKETCH.lookup(set);
}

static __always_inline struct dirty_sets *dirty_lookup(__u32 *gen)
{
	return DIRTY.lookup(gen);
}

static __always_inline struct top_src_set *top_src_lookup(__u32 *set)
{
	return TOP_SRC.lookup(set);
}

static __always_inline struct top_set *top_dst_lookup(__u32 *set)
{
	return TOP_DST.lookup(set);
}

static __always_inline struct top_set *top_port_lookup(__u32 *set)
{
	return TOP_PORT.lookup(set);
}

/* Capture (capture.h): off unless a capture is running. */
BPF_ARRAY(CAPTURE_CFG, struct capture_config, 1);
BPF_PERCPU_ARRAY(CAPTURE_STATS, __u64, CAPSTAT_MAX);
BPF_PERCPU_ARRAY(CAPTURE_RATE, struct capture_rate, 1);
BPF_PERF_OUTPUT(CAPTURE_PERF);

static __always_inline struct capture_config *capture_cfg_lookup(void)
{
	__u32 zero = 0;
	return CAPTURE_CFG.lookup(&zero);
}

static __always_inline __u64 *capture_stats_lookup(__u32 *idx)
{
	return CAPTURE_STATS.lookup(idx);
}

static __always_inline struct capture_rate *capture_rate_lookup(void)
{
	__u32 zero = 0;
	return CAPTURE_RATE.lookup(&zero);
}

static __always_inline int capture_output(struct xdp_md *ctx, __u32 caplen, struct capture_meta *meta)
{
	return CAPTURE_PERF.perf_submit_skb(ctx, caplen, meta, sizeof(*meta));
}

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

static __always_inline void count_packet(__u32 idx, __u32 len, int dropped)
{
	struct proto_stats *s = STATS.lookup(&idx);
	if (s) {
		s->packets += 1;
		s->bytes += len;
		if (dropped)
			s->drops += 1;
	}
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
		if (rs->tokens < NSEC_PER_SEC)
			return 0;
		rs->tokens -= NSEC_PER_SEC;
		return 1;
	}
	__u64 elapsed = now - rs->last_ns;
	if (elapsed > NSEC_PER_SEC)
		elapsed = NSEC_PER_SEC;
	__u64 tokens = rs->tokens + elapsed * EVENT_RATE;
	if (tokens > EVENT_RATE * NSEC_PER_SEC)
		tokens = EVENT_RATE * NSEC_PER_SEC;
	rs->last_ns = now;
	if (tokens < NSEC_PER_SEC) {
		rs->tokens = tokens;
		return 0;
	}
	rs->tokens = tokens - NSEC_PER_SEC;
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

	if (parse_packet(ctx, pp)) {
		src_bits = filter_bits(filter_bucket(pp->src, pp->family));
		match_sources(pp, cfg, src_bits, best);
		best->from_source = best->rank != NO_MATCH;
		/* No multi-field rule can beat a source rule that ranks first. */
		if (cfg->match_rank < best->rank) {
			__u32 cand = candidate_shapes(pp, cfg, src_bits);
			if (cand)
				match_shapes(pp, cfg, best, &sc->key, cand);
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

	int dropped = verdict == VERDICT_DROP;
	__u32 proto_idx = stats_index(pp->family, pp->protocol);
	count_packet(proto_idx, len, dropped);
	top_count(pp, tick->gen, len, dropped, cfg->hash_seed, proto_idx, sc->seq);
	count_packet(STATS_TOTAL, len, dropped);
	if (pp->ports == PORTS_HIDDEN)
		count_packet(STATS_FRAGMENTS, len, dropped);

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

	capture_packet(ctx, pp, best->rank, best->slot, len, verdict);
	return verdict == VERDICT_DROP ? XDP_DROP : XDP_PASS;
}
