/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Rule matching: the best match of a packet among the source rules (EXACT4, BLOCKLIST, SRC4,
 * SRC6) and the multi-field rules (MATCHH, then MATCH where a shape spilled, by shape; FRAG_MATCH for a
 * fragment that hides its ports), the filters in front of them (ADDR_FILTER, PORT_FILTER, CONFIG's masks) and the
 * allowlist (ALLOW4, ALLOW6).  ironpost_common.h describes the maps.
 */
#ifndef IRONPOST_RULE_MATCH_H
#define IRONPOST_RULE_MATCH_H

#include "ironpost_common.h"
#include "hash.h"
#include "packet.h"

/* NO_MATCH and MONITOR_RANK come from ironpost_common.h (shared with abi.py). */

struct best_match {
	__u32 rank;
	__u32 slot;
	__u32 from_source; /* the best match is a source-only rule (EXACT4, BLOCKLIST, SRC4, SRC6) */
};

/* The maps read here, through lookups ironpost_xdp.c defines beside them: BCC rewrites
 * MAP.lookup() in the file it compiles, not in the headers that file includes. */
static __always_inline struct exact4_bucket *exact4_lookup(__u32 *bucket);
static __always_inline struct prefix4h_bucket *prefix4h_lookup(__u32 *bucket);
static __always_inline struct prefix6h_bucket *prefix6h_lookup(__u32 *bucket);
static __always_inline struct blocklist_value *blocklist_lookup(__u32 *saddr);
static __always_inline struct blocklist_value *src4_lookup(struct lpm_v4_key *k);
static __always_inline struct blocklist_value *src6_lookup(struct lpm_v6_key *k);
static __always_inline struct rule_shape *shapes_lookup(__u32 *idx);
static __always_inline struct blocklist_value *match_lookup(struct match_key *k);
static __always_inline struct matchh_bucket *matchh_lookup(__u32 *bucket);
static __always_inline struct blocklist_value *frag_match_lookup(struct match_key *k);
static __always_inline __u64 *addr_filter_lookup(__u32 *idx);
static __always_inline __u64 *port_filter_lookup(__u32 *idx);
static __always_inline int allow4_has(struct lpm_v4_key *k);
static __always_inline int allow6_has(struct lpm_v6_key *k);

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

/* The verifier walks the code after a branch once for each of its sides that it cannot prove alike (and
 * the shape loop's body once for each state that reaches it), so where several tests decide one thing
 * they are folded into one value and one branch.  The values in between go through OPAQUE, an empty asm
 * clang cannot see into, or clang would make branches of them again (a select is a branch in BPF). */
#define OPAQUE(x) asm volatile("" : "+r"(x))

/* 1 when the u64 ``diff`` is not 0, else 0: without a branch. */
static __always_inline __u64 differs64(__u64 diff)
{
	__u64 neg = 0 - diff;

	OPAQUE(neg);
	return (diff | neg) >> 63;
}

/* An exact IPv4 source in EXACT4 (ironpost_common.h): one bucket, no call. */
static __always_inline void match_exact4(__u32 saddr, __u32 seed, struct best_match *best)
{
	__u32 b = hash_32(saddr ^ seed, EXACT4_BITS);
	struct exact4_bucket *bk = exact4_lookup(&b);

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

/* The mask of a prefix of n bits (0..64) over a u64 loaded from network order. */
static __always_inline __u64 mask64(__u32 n)
{
	if (n == 0)
		return 0;
	if (n >= 64)
		return ~0ULL;
	return __builtin_bswap64(~0ULL << (64 - n)); /* the program runs on little-endian hosts only */
}

/* PREFIX4H (ironpost_common.h): a bucket per probe length CONFIG lists, best rank across them.  A
 * real loop over PREFIXH_PROBES slots, each unrolled over its ways: unrolled, it would be four copies
 * of the ways for the verifier to walk. */
static __always_inline void match_prefix4h(__u32 saddr, struct ironpost_config *cfg, __u32 src_bits,
					   struct best_match *best)
{
#pragma clang loop unroll(disable)
	for (__u32 i = 0; i < PREFIXH_PROBES; i++) {
		__u32 plen = cfg->plen4[i];
		if (!(src_bits & (1U << (FILTER_PREFIXH_SHIFT + i))) || plen == 0 || plen > 32)
			continue;
		__u32 a = saddr & bpf_htonl(0xffffffffU << (32 - plen));
		__u32 b = hash_32(a ^ cfg->hash_seed ^ (plen * HASH_MIX32), PREFIXH_BITS);
		struct prefix4h_bucket *bk = prefix4h_lookup(&b);
		if (!bk)
			continue;
#pragma unroll
		for (int w = 0; w < PREFIXH_WAYS; w++) {
			__u32 rank = bk->rank1[w] - 1; /* a way not in use: NO_MATCH */
			if ((saddr & bk->mask[w]) == bk->addr[w] && rank < best->rank) {
				best->rank = rank;
				best->slot = bk->slot[w];
			}
		}
	}
}

/* An IPv6 prefix's bucket key (ironpost_tui/rules/prefixh.py computes the same). */
static __always_inline __u32 prefixh6_fold(__u64 h0, __u64 h1)
{
	__u64 x = h0 ^ (h1 * HASH_MUL64);
	return (__u32)x ^ (__u32)(x >> 32);
}

/* PREFIX6H, as match_prefix4h() reads PREFIX4H. */
static __always_inline void match_prefix6h(const __u8 *src, struct ironpost_config *cfg, __u32 src_bits,
					   struct best_match *best)
{
	__u64 s0, s1;

	__builtin_memcpy(&s0, ALIGNED8(src), 8);
	__builtin_memcpy(&s1, ALIGNED8(src + 8), 8);
#pragma clang loop unroll(disable)
	for (__u32 i = 0; i < PREFIXH_PROBES; i++) {
		__u32 plen = cfg->plen6[i];
		if (!(src_bits & (1U << (FILTER_PREFIXH_SHIFT + i))) || plen == 0 || plen > 128)
			continue;
		__u64 a0 = s0 & mask64(plen);
		__u64 a1 = s1 & mask64(plen > 64 ? plen - 64 : 0);
		__u32 b = hash_32(prefixh6_fold(a0, a1) ^ cfg->hash_seed ^ (plen * HASH_MIX32), PREFIXH_BITS);
		struct prefix6h_bucket *bk = prefix6h_lookup(&b);
		if (!bk)
			continue;
#pragma unroll
		for (int w = 0; w < PREFIXH_WAYS; w++) {
			__u32 rank = bk->rank1[w] - 1;
			if ((s0 & bk->mask[2 * w]) == bk->addr[2 * w] && (s1 & bk->mask[2 * w + 1]) == bk->addr[2 * w + 1] &&
			    rank < best->rank) {
				best->rank = rank;
				best->slot = bk->slot[w];
			}
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

_Static_assert(FILTER_GRANULE6 == 32 + 16, "filter_bucket() reads an IPv6 /48 as a u32 and a u16");

/* The ADDR_FILTER bucket of an address: IPv4 by its /24, IPv6 by its /48
 * (ironpost_tui/rules/prefilter.py computes the same). */
static __always_inline __u32 filter_bucket(const __u8 *a, __u8 family)
{
	__u32 x, w0;
	__u16 w1;

	__builtin_memcpy(&w0, ALIGNED8(a), 4);
	if (family == FAMILY_V4) {
		x = bpf_ntohl(w0) >> (32 - FILTER_GRANULE4);
	} else {
		__builtin_memcpy(&w1, ALIGNED8(a) + 4, 2);
		x = bpf_ntohl(w0) ^ (bpf_ntohs(w1) * HASH_MIX32) ^ HASH_SALT32;
	}
	return hash_32(x, ADDR_FILTER_BITS);
}

static __always_inline __u32 filter_bits(__u32 bucket)
{
	__u32 idx = bucket >> 1;
	__u64 *w = addr_filter_lookup(&idx);

	if (!w)
		return 0xffffffffU; /* cannot happen; would only cost lookups */
	return (__u32)(*w >> ((bucket & 1) * 32));
}

/* The source rules: EXACT4, BLOCKLIST, PREFIX4H and SRC4 for IPv4, PREFIX6H and SRC6 for IPv6, each
 * looked up only where ADDR_FILTER's bits (src_bits) or a wild prefix say an entry may be. */
static __always_inline void match_sources(struct pkt *p, struct ironpost_config *cfg, __u32 src_bits,
					  struct best_match *best)
{
	if (p->family == FAMILY_V4) {
		__u32 saddr;
		__builtin_memcpy(&saddr, ALIGNED8(p->src), 4);
		if (src_bits & FILTER_EXACT4)
			match_exact4(saddr, cfg->hash_seed, best);
		if (src_bits & FILTER_EXACT) {
			struct blocklist_value *v = blocklist_lookup(&saddr);
			if (v)
				consider(v, best);
		}
		if (src_bits & FILTER_PREFIXH)
			match_prefix4h(saddr, cfg, src_bits, best);
		if ((src_bits & FILTER_PREFIX) || (cfg->flags & CFG_WILD_PREFIX4)) {
			struct lpm_v4_key k4 = {.prefixlen = 32};
			__builtin_memcpy(k4.addr, p->src, 4);
			struct blocklist_value *v = src4_lookup(&k4);
			if (v)
				consider(v, best);
		}
	} else {
		if (src_bits & FILTER_PREFIXH)
			match_prefix6h(p->src, cfg, src_bits, best);
		if ((src_bits & FILTER_PREFIX) || (cfg->flags & CFG_WILD_PREFIX6)) {
			struct lpm_v6_key k6 = {.prefixlen = 128};
			__builtin_memcpy(k6.addr, p->src, 16);
			struct blocklist_value *v = src6_lookup(&k6);
			if (v)
				consider(v, best);
		}
	}
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
	if (p->ports == PORTS_READ) {
		__u32 port = bpf_ntohs(p->dport);
		__u32 idx = port >> 3;
		__u64 *w = port_filter_lookup(&idx);
		__u32 pb = w ? (__u32)(*w >> ((port & 7) * 8)) & 0xff : 0xff;
		cand &= pb | cfg->port_wild;
	} else if (p->ports == PORTS_NONE) {
		cand &= cfg->port_wild;
	}
	/* PORTS_HIDDEN: a shape with a port field stays a candidate (match_shapes()). */
	if (!cand)
		return 0;
	__u32 dst_bits = filter_bits(filter_bucket(p->dst, p->family));
	return cand & (((dst_bits >> FILTER_DST_SHIFT) & 0xff) | cfg->dst_wild);
}

/* A u64 that may alias any other type: the key's words are read through it, after its fields were
 * written as u32, u8 and u16 (without may_alias, clang's type-based aliasing rules would let it read a
 * word before those writes). */
typedef __u64 __attribute__((may_alias)) u64_any;

/* MATCHH's bucket of a key read as its MATCH_KEY_WORDS u64 (ironpost_common.h; rules/matchh.py computes
 * the same). */
static __always_inline __u32 matchh_bucket_of(const u64_any *w, __u32 seed)
{
	__u64 x = seed;

#pragma unroll
	for (int i = 0; i < MATCH_KEY_WORDS; i++)
		x = (x ^ w[i]) * HASH_MUL64;
	return hash_32((__u32)x ^ (__u32)(x >> 32), MATCHH_BITS);
}

/* The key in MATCHH: a way that holds it is considered, as its MATCH entry would be.  A way's words are
 * compared in order, and the compare ends at the first that differs: what nearly every way does. */
static __always_inline void match_inline(struct match_key *k, __u32 seed, struct best_match *best)
{
	const u64_any *w = (const u64_any *)k; /* 8-aligned: MATCH_KEY_WORDS words */
	__u32 b = matchh_bucket_of(w, seed);
	struct matchh_bucket *bk = matchh_lookup(&b);
	if (!bk)
		return;
#pragma unroll
	for (int j = 0; j < MATCHH_WAYS; j++) {
		const __u64 *kw = &bk->key[j * MATCH_KEY_WORDS];
		__u32 rank = bk->rank1[j] - 1; /* a way not in use: NO_MATCH, never better */
		if (kw[0] == w[0] && kw[1] == w[1] && kw[2] == w[2] && kw[3] == w[3] && kw[4] == w[4] &&
		    rank < best->rank) {
			best->rank = rank;
			best->slot = bk->slot[j];
			best->from_source = 0;
		}
	}
}

/* Tuple-space search over the multi-field rules: rules are grouped by shape
 * (which fields, which prefix lengths), so a packet costs one hash lookup per
 * candidate shape, not one comparison per rule.
 *
 * A packet that hides its ports (PORTS_HIDDEN: a fragment without them, or IPv6 of unknown
 * protocol) cannot be shown to lie outside a flow that a drop rule with a destination port blocks,
 * and the stack would reassemble it behind the filter: for a shape with a port field it is looked
 * up in FRAG_MATCH, under the same key with the port 0, where every drop rule with a port has an
 * entry (and one under PROTO_UNKNOWN when it names a protocol: ironpost_tui/rules/fragments.py).
 * Monitor rules have none: they report what a packet shows, and these show no port.
 *
 * Otherwise the key is looked up in MATCHH, read inline, or in MATCH (which holds every key) for a shape
 * that spilled (CONFIG.match_spill: one of its keys found its bucket full).
 *
 * The key is built in per-CPU map memory (``k``, SCRATCH's), not on the stack, for the reason
 * ironpost_xdp.c gives for the packet's. */
static __always_inline void match_shapes(struct pkt *p, struct ironpost_config *cfg, struct best_match *best,
					 struct match_key *k, __u32 cand)
{
	__u32 n = cfg->n_shapes;

	/* The slots past n are not in use: their bits go here, not by a test in the loop (a branch on n
	 * there gave the verifier a state of its own for every n an iteration ruled out). */
	cand &= n >= SHAPES_MAX ? ~0U : (1U << n) - 1;
	/* A real loop: unrolled, it would be SHAPES_MAX copies to verify. */
#pragma clang loop unroll(disable)
	for (__u32 i = 0; i < SHAPES_MAX; i++) {
		if (!(cand & (1U << i)))
			continue;
		__u32 idx = i;
		struct rule_shape *sh = shapes_lookup(&idx);
		if (!sh)
			break;
		/* Missed, with one branch (see differs64()): a shape of the other family (an unused slot has
		 * SHAPE_UNUSED in its fields and family 0xff, which no packet has: it never matches), or one
		 * with a port field when the packet has no ports (it misses it, unless it hides them). */
		__u64 family_miss = differs64(sh->family ^ p->family) & differs64(sh->family);
		__u64 port_miss = (sh->fields / FIELD_DPORT) & 1 & (differs64(p->ports ^ PORTS_NONE) ^ 1);
		__u64 miss = family_miss | port_miss;
		OPAQUE(miss);
		if (miss)
			continue;
		/* Every field written: the key has no padding. */
		k->shape = i;
		k->family = sh->family;
		k->protocol = p->protocol & sh->proto_mask;
		k->dst_port = p->dport & sh->port_mask; /* 0 when the ports are hidden */
		mask16(k->src, p->src, sh->src_mask);
		mask16(k->dst, p->dst, sh->dst_mask);
		/* A hash map for a packet that hides its ports from a shape with a port field (FRAG_MATCH),
		 * and for a shape that spilled (MATCH, which holds all of its keys); else MATCHH alone.  One
		 * branch decides (see differs64()). */
		__u64 hidden = (differs64(p->ports ^ PORTS_HIDDEN) ^ 1) & (sh->fields / FIELD_DPORT) & 1;
		__u64 by_map = hidden | ((cfg->match_spill >> i) & 1);
		OPAQUE(by_map);
		if (!by_map) {
			match_inline(k, cfg->hash_seed, best);
			continue;
		}
		struct blocklist_value *v;
		if (hidden) {
			v = frag_match_lookup(k);
			/* Keeps clang from merging the two lookups into one call on a map chosen at run
			 * time: the verifier turns a lookup into the map's own (a direct call to
			 * __htab_map_lookup_elem) only where the call's map is one; else it stays
			 * bpf_map_lookup_elem(), an indirect call through the map's ops (a retpoline
			 * here): measured 7-13 ns more per shape looked up (tests/test_verdicts.py). */
			asm volatile("" : "+r"(v));
		} else {
			v = match_lookup(k);
		}
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
		return allow4_has(&k);
	}
	if (!(src_bits & FILTER_ALLOW) && !(cfg->flags & CFG_WILD_ALLOW6))
		return 0;
	struct lpm_v6_key k = {.prefixlen = 128};
	__builtin_memcpy(k.addr, p->src, 16);
	return allow6_has(&k);
}

#endif /* IRONPOST_RULE_MATCH_H */
