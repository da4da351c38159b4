/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Top talkers (TOP_SRC, TOP_DST, TOP_PORT; ironpost_common.h describes them): every parsed packet
 * counted by source, destination and destination port, in per-CPU heavy-hitter tables of fixed
 * size.  ironpost_tui/triage/reader.py reads them.
 *
 * Each table is set-associative, as the detector sketches (sketch.h) are: a key hashes (seeded) to
 * one set of TOP_WAYS ways.  A key already in a way counts there.  A new key takes the way with
 * the fewest packets, or one whose key has been silent for TOP_STALE_GENS ticks (a way unused is
 * both), and starts from zero: nothing inherited, so a rate is never credited with another key's
 * packets.  A spoofed flood of one packet per source therefore churns the ways that hold one
 * packet each, and a real sender, whose count grows past theirs with its second packet, keeps its
 * way: memory is fixed at load, and the heavy hitters stay.  Counters are cumulative for a way's
 * tenure; user space diffs them.
 *
 * No clock on the way of a packet: the age of a way is TICK's generation (a tick count).
 */
#ifndef IRONPOST_TOP_TALKERS_H
#define IRONPOST_TOP_TALKERS_H

#include "ironpost_common.h"
#include "hash.h"
#include "packet.h"
#include "sketch.h" /* sketch_hash() */

#define TOP_SRC_SETS (1U << TOP_SRC_BITS)
#define TOP_DST_SETS (1U << TOP_DST_BITS)
#define TOP_PORT_SETS (1U << TOP_PORT_BITS)
_Static_assert(TOP_SRC_BITS >= 4 && TOP_DST_BITS >= 4 && TOP_PORT_BITS >= 4, "top tables have at least 16 sets");

struct top_set {
	struct top_way way[TOP_WAYS];
};

struct top_src_set {
	struct top_src_way way[TOP_WAYS];
};

/* The maps updated here, through lookups ironpost_xdp.c defines beside them (BCC rewrites
 * MAP.lookup() in the file it compiles only). */
static __always_inline struct top_src_set *top_src_lookup(__u32 *set);
static __always_inline struct top_set *top_dst_lookup(__u32 *set);
static __always_inline struct top_set *top_port_lookup(__u32 *set);

/* The way of a key among the TOP_WAYS ways at ways, each stride bytes apart (struct top_way
 * first): the key's own, or the one it takes (*fresh set; the caller clears what it keeps besides
 * struct top_way).  The key is (a0, a1): its address as two loads, and rest: family, protocol and
 * port as the u32 at offset 16 of struct top_key. */
static __always_inline struct top_way *top_way_of(void *ways, __u32 stride, __u64 a0, __u64 a1, __u32 rest,
						  __u32 gen, int *fresh)
{
	/* Compares only, until the key is found: what nearly every packet does. */
#pragma unroll
	for (__u32 i = 0; i < TOP_WAYS; i++) {
		struct top_way *w = ways + i * stride;
		__u64 k0, k1;
		__u32 kr;

		__builtin_memcpy(&k0, ALIGNED8(w->key.addr), 8);
		__builtin_memcpy(&k1, ALIGNED8(w->key.addr + 8), 8);
		__builtin_memcpy(&kr, &w->key.family, 4);
		if (!((k0 ^ a0) | (k1 ^ a1) | (kr ^ rest))) {
			*fresh = 0;
			return w;
		}
	}
	/* A new key: the way with the fewest packets; unused (packets 0) and stale ways score 0. */
	__u32 wi = 0;
	__u64 least = ~0ULL;
#pragma unroll
	for (__u32 i = 0; i < TOP_WAYS; i++) {
		struct top_way *w = ways + i * stride;
		__u64 score = gen - w->seen_gen >= TOP_STALE_GENS ? 0 : w->packets;
		if (score < least) {
			least = score;
			wi = i;
		}
	}
	struct top_way *w = ways + (wi & (TOP_WAYS - 1)) * stride;
	__builtin_memset(w, 0, sizeof(*w));
	__builtin_memcpy(ALIGNED8(w->key.addr), &a0, 8);
	__builtin_memcpy(ALIGNED8(w->key.addr + 8), &a1, 8);
	__builtin_memcpy(&w->key.family, &rest, 4);
	*fresh = 1;
	return w;
}

/* Count a packet ``shift`` stands for 2^shift of (a sampled table's). */
static __always_inline void top_add(struct top_way *w, __u32 len, int syn, int dropped, __u32 seen, __u32 shift)
{
	w->packets += 1U << shift;
	w->bytes += (__u64)len << shift;
	w->syns += (__u32)syn << shift;
	w->drops += (__u32)dropped << shift;
	w->seen_gen = seen;
}

/* A source's destination ports, as count_target() (sketch.h) keeps its targets: a port in a slot
 * counts there; a new one takes the slot with the fewest packets and starts from one. */
static __always_inline void top_src_port(struct top_src_way *s, __u32 port_key)
{
#pragma unroll
	for (__u32 i = 0; i < TOP_PORT_SLOTS; i++) {
		if (s->port_key[i] == port_key) {
			s->port_hits[i] += 1;
			return;
		}
	}
	__u32 pi = 0;
#pragma unroll
	for (__u32 i = 1; i < TOP_PORT_SLOTS; i++)
		if (s->port_hits[i] < s->port_hits[pi & (TOP_PORT_SLOTS - 1)])
			pi = i;
	pi &= TOP_PORT_SLOTS - 1;
	s->port_key[pi] = port_key;
	s->port_hits[pi] = 1;
}

/* Count a parsed packet (family set) by its source, destination and destination port.  gen is
 * TICK's generation; seen, the ways' seen_gen, is gen + 1 so that 0 means never.  seq is the CPU's
 * packet count: TOP_DST and TOP_PORT count one packet in 2^TOP_SAMPLE_LOG2, each for 2^TOP_SAMPLE_LOG2
 * (sampled as sFlow does, to halve the cost), the ones whose seq * 2^64/phi falls in the lowest
 * 2^-TOP_SAMPLE_LOG2 of the range: a Weyl sequence, evenly spread over any traffic pattern, with no
 * random number to draw.  Sources, whose rates the pane ranks and whose drops block decisions follow,
 * count every packet. */
static __always_inline void top_count(struct pkt *p, __u32 gen, __u32 len, int dropped, __u32 seed, __u32 proto_idx,
				      __u64 seq)
{
	if (!p->family)
		return;
	int syn = p->protocol == IPPROTO_TCP && (p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN;
	__u32 seen = gen + 1;
	__u32 port = p->ports == PORTS_READ ? bpf_ntohs(p->dport) : 0;
	/* struct top_key's last four bytes: family, protocol, port (little-endian, as in memory) */
	__u32 rest = p->family;
	__u64 a0, a1;
	int fresh;

	__builtin_memcpy(&a0, ALIGNED8(p->src), 8);
	__builtin_memcpy(&a1, ALIGNED8(p->src + 8), 8);
	__u32 set = hash_bucket(sketch_hash(p->src, seed), TOP_SRC_BITS) & (TOP_SRC_SETS - 1);
	struct top_src_set *ss = top_src_lookup(&set);
	if (ss) {
		struct top_src_way *s = (struct top_src_way *)top_way_of(ss->way, sizeof(ss->way[0]), a0, a1, rest,
									 seen, &fresh);
		if (fresh)
			__builtin_memset((void *)s + sizeof(struct top_way), 0,
					 sizeof(*s) - sizeof(struct top_way));
		top_add(&s->w, len, syn, dropped, seen, 0);
		s->proto_pkts[proto_idx & (TOP_PROTOS - 1)] += 1;
		if (port)
			top_src_port(s, (__u32)p->protocol << 16 | port);
	}

	if ((seq * HASH_MUL64) >> (64 - TOP_SAMPLE_LOG2))
		return;
	__builtin_memcpy(&a0, ALIGNED8(p->dst), 8);
	__builtin_memcpy(&a1, ALIGNED8(p->dst + 8), 8);
	set = hash_bucket(sketch_hash(p->dst, seed), TOP_DST_BITS) & (TOP_DST_SETS - 1);
	struct top_set *ds = top_dst_lookup(&set);
	if (ds)
		top_add(top_way_of(ds->way, sizeof(ds->way[0]), a0, a1, rest, seen, &fresh), len, syn, dropped, seen,
			TOP_SAMPLE_LOG2);

	if (!port)
		return;
	rest |= (__u32)p->protocol << 8 | port << 16;
	set = hash_32(((__u32)p->protocol << 16 | port) ^ seed, TOP_PORT_BITS) & (TOP_PORT_SETS - 1);
	struct top_set *ps = top_port_lookup(&set);
	if (ps)
		top_add(top_way_of(ps->way, sizeof(ps->way[0]), 0, 0, rest, seen, &fresh), len, syn, dropped, seen,
			TOP_SAMPLE_LOG2);
}

#endif /* IRONPOST_TOP_TALKERS_H */
