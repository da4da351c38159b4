/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the program keeps of a packet (struct pkt), and parse_packet(), which fills it from the
 * parse_*.h layers: Ethernet (and VLAN tags), IPv4 or IPv6, then TCP or UDP.
 */
#ifndef IRONPOST_PACKET_H
#define IRONPOST_PACKET_H

#include "ironpost_common.h"
#include "parse_eth.h"
#include "parse_ip.h"
#include "parse_l4.h"

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
	__u8 ports; /* PORTS_* */
} __attribute__((aligned(8)));

/* struct pkt.ports: what the packet tells of its TCP or UDP ports. */
#define PORTS_NONE 0   /* no ports: not TCP or UDP, or a header cut short in a packet that is no fragment */
#define PORTS_HIDDEN 1 /* a TCP or UDP fragment without them (a later fragment, or a first one whose
			* header is cut short), or an IPv6 packet of unknown protocol (PROTO_UNKNOWN);
			* judged by its addresses and protocol (rule_match.h) */
#define PORTS_READ 2   /* sport and dport hold them */

#define ALIGNED8(p) __builtin_assume_aligned((p), 8)

/* Read ports and flags of the L4 header at the cursor.  A header cut short leaves
 * ports at PORTS_NONE: the packet still counts under its IP protocol. */
static __always_inline void parse_l4(struct pkt *p, struct hdr_cursor *nh, void *data_end)
{
	if (p->protocol == IPPROTO_TCP) {
		struct tcphdr *th = parse_tcphdr(nh, data_end);
		if (!th)
			return;
		p->sport = th->source;
		p->dport = th->dest;
		p->tcp_flags = tcp_flags(th);
		p->ports = PORTS_READ;
	} else if (p->protocol == IPPROTO_UDP) {
		struct udphdr *uh = parse_udphdr(nh, data_end);
		if (!uh)
			return;
		p->sport = uh->source;
		p->dport = uh->dest;
		p->ports = PORTS_READ;
	}
}

/* Parse Ethernet (up to two VLAN tags), IPv4 or IPv6, then L4.  Returns 0 when the packet has no
 * parsable IP header (family stays 0).  A fragment starts as PORTS_HIDDEN, which parse_l4()
 * overwrites when the fragment holds the ports; parse_packet() settles the rest. */
static __always_inline int parse_ip(struct xdp_md *ctx, struct pkt *p)
{
	void *data_end = (void *)(long)ctx->data_end;
	struct hdr_cursor nh = {.pos = (void *)(long)ctx->data};
	int proto = parse_ethhdr(&nh, data_end);

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = parse_iphdr(&nh, data_end);
		if (!iph)
			return 0;
		p->family = FAMILY_V4;
		p->protocol = iph->protocol;
		__builtin_memcpy(p->src, &iph->saddr, 4);
		__builtin_memcpy(p->dst, &iph->daddr, 4);
		int later = ip_is_later_fragment(iph);
		if (ip_is_fragment(iph))
			p->ports = PORTS_HIDDEN;
		if (!later)
			parse_l4(p, &nh, data_end);
		return 1;
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6h = parse_ipv6hdr(&nh, data_end);
		if (!ip6h)
			return 0;
		p->family = FAMILY_V6;
		__builtin_memcpy(p->src, &ip6h->saddr, 16);
		__builtin_memcpy(p->dst, &ip6h->daddr, 16);
		__u8 nexthdr = ip6h->nexthdr;
		int has_l4 = skip_ipv6_ext(&nh, data_end, &nexthdr, &p->ports); /* sets PORTS_HIDDEN */
		p->protocol = nexthdr;
		if (has_l4)
			parse_l4(p, &nh, data_end);
		return 1;
	}
	return 0;
}

_Static_assert(PORTS_HIDDEN == 1, "skip_ipv6_ext() sets *hidden to 1");
_Static_assert(PROTO_UNKNOWN == IPPROTO_NONE, "skip_ipv6_ext() says IPPROTO_NONE for an unknown protocol");

/* The packet as parse_ip() left it, with its ports hidden only if it is a TCP or UDP fragment that
 * does not hold them (they are in another fragment, or cut short in this one, which no sender
 * does: RFC 1858, RFC 7112), or an IPv6 packet whose upper header was not reached.  Settled once
 * parse_ip()'s paths have met, so that the verifier walks this once, not once per path through the
 * headers; the barrier keeps the compiler from copying it back into each path (it knows what each
 * path stored). */
static __always_inline int parse_packet(struct xdp_md *ctx, struct pkt *p)
{
	if (!parse_ip(ctx, p))
		return 0;
	asm volatile("" ::: "memory");
	if (p->ports == PORTS_HIDDEN && p->protocol != IPPROTO_TCP && p->protocol != IPPROTO_UDP &&
	    p->protocol != PROTO_UNKNOWN)
		p->ports = PORTS_NONE;
	return 1;
}

#endif /* IRONPOST_PACKET_H */
