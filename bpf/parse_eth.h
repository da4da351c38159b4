/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Layer 2: Ethernet and up to VLAN_MAX_DEPTH VLAN tags (802.1Q, 802.1ad).
 *
 * The parse_*.h headers read one layer each over a cursor, in the manner of xdp-tools'
 * parsing_helpers.h: a parser checks that its header lies wholly before data_end before reading
 * it, returns it (or what it announces) and moves the cursor past it; a header cut short returns
 * failure, and parsing stops there.  They know nothing of the program's maps or of struct pkt
 * (packet.h puts the layers together).
 */
#ifndef IRONPOST_PARSE_ETH_H
#define IRONPOST_PARSE_ETH_H

#include <uapi/linux/if_ether.h>

/* Where parsing has got to: the first byte of the next header. */
struct hdr_cursor {
	void *pos;
};

#define VLAN_MAX_DEPTH 2

struct vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

static __always_inline int proto_is_vlan(__u16 h_proto)
{
	return h_proto == bpf_htons(ETH_P_8021Q) || h_proto == bpf_htons(ETH_P_8021AD);
}

/* The Ethernet header and the VLAN tags after it.  Returns the EtherType they announce (network
 * order), with the cursor on its header, or -1 when the frame is cut short. */
static __always_inline int parse_ethhdr(struct hdr_cursor *nh, void *data_end)
{
	struct ethhdr *eth = nh->pos;
	__u16 proto;

	if ((void *)(eth + 1) > data_end)
		return -1;
	proto = eth->h_proto;
	nh->pos = eth + 1;
#pragma unroll
	for (int i = 0; i < VLAN_MAX_DEPTH; i++) {
		if (!proto_is_vlan(proto))
			break;
		struct vlan_hdr *vh = nh->pos;
		if ((void *)(vh + 1) > data_end)
			return -1;
		proto = vh->encap_proto;
		nh->pos = vh + 1;
	}
	return proto;
}

#endif /* IRONPOST_PARSE_ETH_H */
