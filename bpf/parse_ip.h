/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Layer 3: IPv4 with its options, IPv6 with its extension headers (parse_eth.h says how the
 * parse_*.h headers work).
 */
#ifndef IRONPOST_PARSE_IP_H
#define IRONPOST_PARSE_IP_H

#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>

#include "parse_eth.h"

/* Not <uapi/linux/in.h> nor <uapi/linux/tcp.h>: both include <linux/socket.h>, which BCC
 * resolves to the kernel's own header and, through it, much of the kernel; they were half of
 * the compile time (bench/: `make bench BENCH_ARGS=--only=startup`).  What the program uses
 * of them (the IPv6 ones come from <linux/in6.h>, through ipv6.h; struct tcphdr is in
 * parse_l4.h): */
#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_AH 51

/* iphdr.frag_off (host order): more fragments follow (MF), and the fragment offset in 8-byte units.
 * Either set: a fragment; an offset: a later fragment. */
#define IP_MF_BIT 0x2000
#define IP_OFFSET_MASK 0x1fff
/* ipv6_frag.frag_off (host order): the fragment offset, above three flag bits. */
#define IPV6_FRAG_OFFSET_MASK 0xfff8

/* Extension headers skipped at most before giving up on the upper protocol. */
#define IPV6_EXT_MAX 6

/* The start of hop-by-hop, routing, destination-options and AH headers. */
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

/* An IPv4 header with its options, the cursor past them; NULL when cut short or shorter than an
 * IPv4 header can be (ihl < 5). */
static __always_inline struct iphdr *parse_iphdr(struct hdr_cursor *nh, void *data_end)
{
	struct iphdr *iph = nh->pos;

	if ((void *)(iph + 1) > data_end)
		return NULL;
	__u32 hlen = iph->ihl * 4;
	if (hlen < sizeof(*iph) || nh->pos + hlen > data_end)
		return NULL;
	nh->pos += hlen;
	return iph;
}

/* A fragment of a larger datagram: the first (MF set, offset 0) or a later one. */
static __always_inline int ip_is_fragment(const struct iphdr *iph)
{
	return (iph->frag_off & bpf_htons(IP_MF_BIT | IP_OFFSET_MASK)) != 0;
}

/* A non-first fragment carries no L4 header. */
static __always_inline int ip_is_later_fragment(const struct iphdr *iph)
{
	return (iph->frag_off & bpf_htons(IP_OFFSET_MASK)) != 0;
}

/* The fixed IPv6 header, the cursor past it; NULL when cut short. */
static __always_inline struct ipv6hdr *parse_ipv6hdr(struct hdr_cursor *nh, void *data_end)
{
	struct ipv6hdr *ip6h = nh->pos;

	if ((void *)(ip6h + 1) > data_end)
		return NULL;
	nh->pos = ip6h + 1;
	return ip6h;
}

static __always_inline int ipv6_is_ext(__u8 next)
{
	return next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING || next == IPPROTO_DSTOPTS ||
	       next == IPPROTO_AH || next == IPPROTO_FRAGMENT;
}

/* Skip the extension headers (hop-by-hop, routing, destination options, fragment, AH; at most
 * IPV6_EXT_MAX) from the one *nexthdr names.  Returns 1 with *nexthdr the upper protocol and the
 * cursor on its header, or 0 when no upper header follows:
 * - a non-first fragment: *nexthdr is its Fragment header's Next Header;
 * - a chain not followed to its end, cut short or longer than IPV6_EXT_MAX: *nexthdr is
 *   IPPROTO_NONE, the protocol unknown (the stack may still follow it: Linux accepts a first
 *   fragment whose chain goes on in the next one, and chains of any length).
 * Sets *hidden to 1 (and leaves it alone otherwise) when the ports may lie where this packet does
 * not show them: past a Fragment header, or in a chain not followed to its end.  A store, not a
 * variable carried through the loop, which the verifier would have to tell apart path by path. */
static __always_inline int skip_ipv6_ext(struct hdr_cursor *nh, void *data_end, __u8 *nexthdr,
					 __u8 *hidden)
{
	__u8 next = *nexthdr;

#pragma unroll
	for (int i = 0; i < IPV6_EXT_MAX; i++) {
		if (next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING || next == IPPROTO_DSTOPTS) {
			struct ipv6_opt *opt = nh->pos;
			if ((void *)(opt + 1) > data_end)
				goto unknown;
			next = opt->nexthdr;
			nh->pos += (opt->hdrlen + 1) * 8;
		} else if (next == IPPROTO_AH) {
			struct ipv6_opt *opt = nh->pos;
			if ((void *)(opt + 1) > data_end)
				goto unknown;
			next = opt->nexthdr;
			nh->pos += (opt->hdrlen + 2) * 4;
		} else if (next == IPPROTO_FRAGMENT) {
			struct ipv6_frag *fh = nh->pos;
			if ((void *)(fh + 1) > data_end)
				goto unknown;
			next = fh->nexthdr;
			nh->pos = fh + 1;
			*hidden = 1;
			if (fh->frag_off & bpf_htons(IPV6_FRAG_OFFSET_MASK)) {
				*nexthdr = next;
				return 0;
			}
		} else {
			break;
		}
	}
	if (ipv6_is_ext(next))
		goto unknown;
	*nexthdr = next;
	return 1;
unknown:
	*nexthdr = IPPROTO_NONE;
	*hidden = 1;
	return 0;
}

#endif /* IRONPOST_PARSE_IP_H */
