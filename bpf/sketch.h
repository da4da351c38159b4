/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The detector sketches (SRC_SKETCH, DST_SKETCH, DIRTY; ironpost_common.h describes them): what
 * the SYN-flood and port-scan detectors need, counted per source and per destination.
 * ironpost_tui/detectors/sketch.py reads them.
 */
#ifndef IRONPOST_SKETCH_H
#define IRONPOST_SKETCH_H

#include "ironpost_common.h"
#include "hash.h"
#include "packet.h"

#define SRC_SETS (1U << SRC_SETS_BITS)
#define DST_SETS (1U << DST_SETS_BITS)
_Static_assert(SRC_SETS_BITS >= 6 && DST_SETS_BITS >= 6, "sketches have at least 64 sets");

/* DIRTY value: one bit per sketch set touched within one period. */
struct dirty_sets {
	__u64 src[SRC_SETS / 64];
	__u64 dst[DST_SETS / 64];
};

/* A source's probed ports: a bitmap of PORT_BITS bits, by hash of (protocol, port). */
#define PORT_BITS_LOG2 9
_Static_assert(1 << PORT_BITS_LOG2 == PORT_BITS, "PORT_BITS_LOG2 is log2(PORT_BITS)");
#define PORT_KEY_UDP 0x10000U /* (protocol, port) as one key: UDP's above the 16 port bits */
/* A UDP packet from a port below this to one at or above it is a service's reply (DNS, NTP). */
#define SERVICE_PORTS 1024

/* The maps updated here, through lookups ironpost_xdp.c defines beside them: BCC rewrites
 * MAP.lookup() in the file it compiles, not in the headers that file includes. */
static __always_inline struct src_set *src_sketch_lookup(__u32 *set);
static __always_inline struct dst_set *dst_sketch_lookup(__u32 *set);
static __always_inline struct dirty_sets *dirty_lookup(__u32 *gen);

/* The sketch hash of an address (seeded: an attacker cannot aim at a set); its set is the top
 * bits (hash_bucket()). */
static __always_inline __u32 sketch_hash(const __u8 *a, __u32 seed)
{
	__u64 a0, a1;

	__builtin_memcpy(&a0, ALIGNED8(a), 8);
	__builtin_memcpy(&a1, ALIGNED8(a + 8), 8);
	__u64 x = a0 ^ (a1 * HASH_MUL64);
	return ((__u32)(x ^ (x >> 32)) ^ seed) * HASH_MUL32;
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

/* The destinations a source probes most, for its alert to name: TARGET_SLOTS slots per way.  A
 * destination in a slot counts there; a new one takes the slot with the fewest probes and starts
 * from one (nothing inherited: no destination is credited with another's probes).  The slots are
 * cleared with the port memory, so a source's old targets give way to its current ones.  Four
 * compares of the address, loaded once, and an add: a probe's cost, not every packet's. */
/* One probe to ``port``, the ``total``-th of a slot (a destination): the slot's port is kept while
 * it holds at least half the probes (``*kept_hits`` counts its probes since it became the port), and
 * the next other port probed takes its place once it does not.  So kept_hits * 2 >= total proves
 * the port took at least half; a port probed far more than all others ends as the slot's port. */
static __always_inline void keep_port(__u16 *kept, __u32 *kept_hits, __u32 total, __u16 port)
{
	if (*kept == port)
		*kept_hits += 1;
	else if (*kept_hits * 2 < total) {
		*kept = port;
		*kept_hits = 1;
	}
}

static __always_inline void count_target(struct src_way *w, const __u8 *dst, __u16 port)
{
	__u64 d0, d1;

	__builtin_memcpy(&d0, ALIGNED8(dst), 8);
	__builtin_memcpy(&d1, ALIGNED8(dst + 8), 8);
	/* Each slot's count is added in its own branch, by a constant index, and the search ends
	 * there: the verifier sees fewer distinct paths than with one add by a found index after the
	 * loop (measured: 2% fewer instructions processed; a branch-free search cost it three times more). */
#pragma unroll
	for (__u32 i = 0; i < TARGET_SLOTS; i++) {
		__u64 t0, t1;

		__builtin_memcpy(&t0, ALIGNED8(w->tgt_addr[i]), 8);
		__builtin_memcpy(&t1, ALIGNED8(w->tgt_addr[i] + 8), 8);
		if (!((t0 ^ d0) | (t1 ^ d1))) {
			w->tgt_hits[i] += 1;
			keep_port(&w->tgt_port[i], &w->tgt_port_hits[i], w->tgt_hits[i], port);
			return;
		}
	}
	__u32 ti = 0;
#pragma unroll
	for (__u32 i = 1; i < TARGET_SLOTS; i++)
		if (w->tgt_hits[i] < w->tgt_hits[ti & (TARGET_SLOTS - 1)])
			ti = i;
	ti &= TARGET_SLOTS - 1;
	__builtin_memcpy(ALIGNED8(w->tgt_addr[ti]), &d0, 8);
	__builtin_memcpy(ALIGNED8(w->tgt_addr[ti] + 8), &d1, 8);
	w->tgt_hits[ti] = 1;
	w->tgt_port_hits[ti] = 1;
	w->tgt_port[ti] = port;
}

/* Count what the SYN-flood and port-scan detectors need.  A probe is what a
 * scanner sends and a reply never is: TCP without ACK (SYN, FIN, NULL, Xmas
 * scans), or UDP that does not come from a service port (< SERVICE_PORTS) to an
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

	__u32 set = hash_bucket(sketch_hash(p->src, seed), SRC_SETS_BITS) & (SRC_SETS - 1);
	struct src_set *ss = src_sketch_lookup(&set);
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
		/* The target slots' addresses are left: a slot of no hits is free. */
		__builtin_memset(w, 0, __builtin_offsetof(struct src_way, tgt_addr));
		__builtin_memset(w->tgt_hits, 0, sizeof(w->tgt_hits));
		__builtin_memset(w->tgt_port_hits, 0, sizeof(w->tgt_port_hits));
		__builtin_memcpy(ALIGNED8(w->key.addr), ALIGNED8(p->src), 16);
		w->key.family = p->family;
	}
	/* Mark the set once per generation per way, not once per packet. */
	if (w->marked != gen + 1) {
		dirty = dirty_lookup(&gi);
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

	if (p->ports == PORTS_READ) {
		int probe;
		if (tcp)
			probe = !(p->tcp_flags & TCP_ACK);
		else
			probe = !(bpf_ntohs(p->sport) < SERVICE_PORTS && bpf_ntohs(p->dport) >= SERVICE_PORTS);
		if (probe) {
			__u64 now = tick->now_ns;
			if (now - w->ports_since > PORT_MEMORY_NS) {
				/* ports_since 0: a new way (bitmap already clear), or ports
				 * seen before the first tick, which still count as seen. */
				if (w->ports_since) {
#pragma unroll
					for (int i = 0; i < PORT_BITS / 64; i++)
						w->ports[i] = 0;
#pragma unroll
					for (int i = 0; i < TARGET_SLOTS; i++) {
						w->tgt_hits[i] = 0;
						w->tgt_port_hits[i] = 0;
					}
				}
				w->ports_since = now;
			}
			__u32 bit = hash_32(bpf_ntohs(p->dport) | (tcp ? 0 : PORT_KEY_UDP), PORT_BITS_LOG2);
			__u64 mask = 1ULL << (bit & 63);
			__u64 *word = &w->ports[(bit >> 6) & (PORT_BITS / 64 - 1)];
			if (!(*word & mask)) {
				*word |= mask;
				if (tcp)
					w->new_tcp_ports += 1;
				else
					w->new_udp_ports += 1;
			}
			count_target(w, p->dst, bpf_ntohs(p->dport));
		}
	}

	if (!tcp)
		return;
	set = hash_bucket(sketch_hash(p->dst, seed), DST_SETS_BITS) & (DST_SETS - 1);
	struct dst_set *ds = dst_sketch_lookup(&set);
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
		dirty = dirty_lookup(&gi);
		if (!dirty)
			return;
		dirty->dst[(set >> 6) & (DST_SETS / 64 - 1)] |= 1ULL << (set & 63);
		d->marked = gen + 1;
	}
	d->tcp += 1;
	if (syn) {
		d->syn += 1;
		if (p->ports == PORTS_READ) /* one whose port is not read counts for no port */
			keep_port(&d->port, &d->port_syns, d->syn, bpf_ntohs(p->dport));
	}
	d->last_seq = seq;
}

#endif /* IRONPOST_SKETCH_H */
