/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Packet capture from inside the program (issue 17): copies of the packets a capture asks for,
 * taken once the verdict is known and before it takes effect, so the packets the rules drop are
 * captured too, each with its verdict and rule slot.
 *
 * Who captures writes CAPTURE_CFG (one entry) and opens the per-CPU perf buffers of CAPTURE_PERF:
 * the program of a running console or agent serves a capture started beside it (`ironpost-tui
 * capture`), no second XDP program.  Off by default: the pass path then costs one map read and a
 * branch.  The packet bytes are copied by bpf_perf_event_output() itself, from the XDP context
 * (the upper 32 bits of its flags, as xdpdump does): no stack buffer, any snap length up to the
 * frame.
 *
 * Every matched packet is counted once in CAPSTAT_MATCHED and once in exactly one of CAPTURED,
 * LOST_RATE (the token bucket) or LOST_PERF (the reader's buffer was full): captured + lost =
 * matched, exactly.
 */
#ifndef IRONPOST_CAPTURE_H
#define IRONPOST_CAPTURE_H

#include "ironpost_common.h"
#include "packet.h"

#define CAPTURE_ANY_RULE 0xffffffffU /* capture_config.rule_slot: any packet, matched by a rule or not */
#define CAPTURE_NO_RULE 0xffffffffU  /* capture_meta.rule_slot: no rule matched the packet */
#define CAPTURE_SNAPLEN_MAX 0xffffU

/* CAPTURE_STATS indices (per CPU). */
#define CAPSTAT_MATCHED 0
#define CAPSTAT_CAPTURED 1
#define CAPSTAT_LOST_RATE 2
#define CAPSTAT_LOST_PERF 3
#define CAPSTAT_MAX 4

/* What to capture: every field set must match (an AND), 0 / CAPTURE_ANY_RULE is "any". */
struct capture_config {
	__u32 enabled;    /* 0: no capture (the default) */
	__u32 snaplen;    /* bytes of each packet copied, 1 to CAPTURE_SNAPLEN_MAX */
	__u32 rate;       /* copies per second per CPU, burst of one second; 0: no limit */
	__u32 rule_slot;  /* the rule slot that matched the packet, or CAPTURE_ANY_RULE */
	__u8 family;      /* FAMILY_V4, FAMILY_V6, or FAMILY_ANY (then src and dst are not compared) */
	__u8 src_prefix;  /* leading bits of src compared (0: any source) */
	__u8 dst_prefix;  /* leading bits of dst compared (0: any destination) */
	__u8 protocol;    /* IP protocol, 0: any */
	__u16 port;       /* source or destination port, host order; 0: any */
	__u16 pad;
	__u8 src[16];
	__u8 dst[16];
};

/* What precedes the packet bytes in each perf sample. */
struct capture_meta {
	__u64 ts_ns;     /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 pkt_len;   /* the frame's length */
	__u32 cap_len;   /* bytes that follow */
	__u32 rule_slot; /* CAPTURE_NO_RULE when no rule matched */
	__u8 verdict;    /* VERDICT_* */
	__u8 pad[3];
};

/* Token bucket state, per CPU (one packet at a time per CPU: no atomics). */
struct capture_rate {
	__u64 tokens; /* in ns units: NSEC_PER_SEC is one copy */
	__u64 last_ns;
};

_Static_assert(sizeof(struct capture_config) == PY_CAPTURE_CONFIG_SIZE, "capture_config layout differs from abi.py");
_Static_assert(sizeof(struct capture_meta) == PY_CAPTURE_META_SIZE, "capture_meta layout differs from abi.py");

/* The maps (CAPTURE_CFG, CAPTURE_STATS, CAPTURE_RATE, CAPTURE_PERF) are declared in ironpost_xdp.c with
 * these accessors: BCC rewrites map calls in the main file only. */
static __always_inline struct capture_config *capture_cfg_lookup(void);
static __always_inline __u64 *capture_stats_lookup(__u32 *idx);
static __always_inline struct capture_rate *capture_rate_lookup(void);
static __always_inline int capture_output(struct xdp_md *ctx, __u32 caplen, struct capture_meta *meta);

static __always_inline void capture_count(__u32 idx)
{
	__u64 *c = capture_stats_lookup(&idx);
	if (c)
		*c += 1;
}

/* The leading ``bits`` of a and b are equal (bits <= 128).  No early exit: the loop unrolls. */
static __always_inline int prefix_equal(const __u8 *a, const __u8 *b, __u32 bits)
{
	__u8 diff = 0;
#pragma unroll
	for (int i = 0; i < 16; i++) {
		__u32 left = bits > 8 * i ? bits - 8 * i : 0;
		__u8 mask = left >= 8 ? 0xff : (__u8)(0xff00 >> left);
		diff |= (a[i] ^ b[i]) & mask;
	}
	return diff == 0;
}

static __always_inline int capture_wanted(const struct capture_config *c, const struct pkt *p, __u32 slot)
{
	if (c->rule_slot != CAPTURE_ANY_RULE && c->rule_slot != slot)
		return 0;
	if (c->family) {
		if (p->family != c->family)
			return 0;
		if (c->src_prefix && !prefix_equal(p->src, c->src, c->src_prefix))
			return 0;
		if (c->dst_prefix && !prefix_equal(p->dst, c->dst, c->dst_prefix))
			return 0;
	}
	if (c->protocol && p->protocol != c->protocol)
		return 0;
	if (c->port) {
		if (p->ports != PORTS_READ)
			return 0;
		if (bpf_ntohs(p->sport) != c->port && bpf_ntohs(p->dport) != c->port)
			return 0;
	}
	return 1;
}

static __always_inline int capture_allowed(__u32 rate, __u64 now)
{
	if (!rate)
		return 1;
	struct capture_rate *rs = capture_rate_lookup();
	if (!rs)
		return 0;
	__u64 elapsed = now - rs->last_ns;
	if (elapsed > NSEC_PER_SEC)
		elapsed = NSEC_PER_SEC;
	__u64 cap = (__u64)rate * NSEC_PER_SEC;
	__u64 tokens = rs->tokens + elapsed * rate;
	if (tokens > cap)
		tokens = cap;
	rs->last_ns = now;
	if (tokens < NSEC_PER_SEC) {
		rs->tokens = tokens;
		return 0;
	}
	rs->tokens = tokens - NSEC_PER_SEC;
	return 1;
}

/* Called once per packet with its verdict settled; ``rank`` and ``slot`` are the best match's. */
static __always_inline void capture_packet(struct xdp_md *ctx, const struct pkt *p, __u32 rank, __u32 slot,
					   __u32 len, __u8 verdict)
{
	struct capture_config *c = capture_cfg_lookup();
	if (!c || !c->enabled)
		return;
	if (rank == NO_MATCH)
		slot = CAPTURE_NO_RULE;
	if (!capture_wanted(c, p, slot))
		return;
	capture_count(CAPSTAT_MATCHED);
	struct capture_meta meta = {};
	meta.ts_ns = bpf_ktime_get_ns();
	if (!capture_allowed(c->rate, meta.ts_ns)) {
		capture_count(CAPSTAT_LOST_RATE);
		return;
	}
	__u32 caplen = c->snaplen;
	if (caplen > len)
		caplen = len;
	caplen &= CAPTURE_SNAPLEN_MAX;
	meta.pkt_len = len;
	meta.cap_len = caplen;
	meta.rule_slot = slot;
	meta.verdict = verdict;
	if (capture_output(ctx, caplen, &meta) == 0)
		capture_count(CAPSTAT_CAPTURED);
	else
		capture_count(CAPSTAT_LOST_PERF);
}

#endif
