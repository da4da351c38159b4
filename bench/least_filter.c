/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The least a source filter does per packet, for prog-profile (bench/b_profile.py) to measure beside
 * the empty program and ironpost_xdp: parse Ethernet (one VLAN tag) and the IPv4 or IPv6 header, look
 * the source up in one set-associative array read inline (as EXACT4 is), count the packet once by
 * protocol (as STATS does), drop a source found.  No allowlist, no prefixes, no ports, no fragments,
 * no IPv6 extension headers, no top talkers, no detectors: a reference, not a product.
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>

/* LEAST_BITS4, LEAST_BITS6 (the tables have 2^bits buckets) and LEAST_MUL32 (the hash's multiplier)
 * arrive as -D flags from bench/b_profile.py, which fills the IPv4 table by the same hash. */

struct least_counts {
	__u64 packets;
	__u64 bytes;
	__u64 drops;
};

struct least_bucket4 {
	__u32 addr[8]; /* network order; 0 is an empty way */
};

struct least_bucket6 {
	__u64 addr[4][2]; /* as loaded from the packet; 0, 0 is an empty way */
};

BPF_ARRAY(LEAST_SRC4, struct least_bucket4, 1U << LEAST_BITS4);
BPF_ARRAY(LEAST_SRC6, struct least_bucket6, 1U << LEAST_BITS6);
BPF_PERCPU_ARRAY(LEAST_COUNTS, struct least_counts, 4);

struct least_vlan {
	__be16 tci;
	__be16 proto;
};

int least_filter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 len = end - data;
	struct ethhdr *eth = data;
	__u8 l4;
	int found = 0;

	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	__u16 proto = eth->h_proto;
	void *l3 = eth + 1;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct least_vlan *vh = l3;
		if ((void *)(vh + 1) > end)
			return XDP_PASS;
		proto = vh->proto;
		l3 = vh + 1;
	}
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;
		if ((void *)(ip + 1) > end)
			return XDP_PASS;
		l4 = ip->protocol;
		__u32 src = ip->saddr;
		__u32 k = (src * LEAST_MUL32) >> (32 - LEAST_BITS4);
		struct least_bucket4 *b = LEAST_SRC4.lookup(&k);
		if (b) {
#pragma unroll
			for (int i = 0; i < 8; i++)
				found |= src && b->addr[i] == src;
		}
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;
		if ((void *)(ip6 + 1) > end)
			return XDP_PASS;
		l4 = ip6->nexthdr;
		__u64 a0, a1;
		__builtin_memcpy(&a0, &ip6->saddr, 8);
		__builtin_memcpy(&a1, (void *)&ip6->saddr + 8, 8);
		__u64 x = a0 ^ a1;
		__u32 k = ((__u32)(x ^ (x >> 32)) * LEAST_MUL32) >> (32 - LEAST_BITS6);
		struct least_bucket6 *b = LEAST_SRC6.lookup(&k);
		if (b) {
#pragma unroll
			for (int i = 0; i < 4; i++)
				found |= (a0 | a1) && b->addr[i][0] == a0 && b->addr[i][1] == a1;
		}
	} else {
		return XDP_PASS;
	}
	__u32 idx = l4 == 6 ? 0 : l4 == 17 ? 1 : (l4 == 1 || l4 == 58) ? 2 : 3;
	struct least_counts *c = LEAST_COUNTS.lookup(&idx);
	if (c) {
		c->packets += 1;
		c->bytes += len;
		c->drops += found;
	}
	return found ? XDP_DROP : XDP_PASS;
}
