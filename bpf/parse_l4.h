/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Layer 4: the TCP and UDP headers, for their ports and TCP's flags (parse_eth.h says how the
 * parse_*.h headers work).  ICMP and ICMPv6 are counted by their IP protocol alone.
 */
#ifndef IRONPOST_PARSE_L4_H
#define IRONPOST_PARSE_L4_H

#include <uapi/linux/udp.h>

#include "parse_eth.h"

/* Declared here, not taken from <uapi/linux/tcp.h> (parse_ip.h says why). */
struct tcphdr {
	__be16 source;
	__be16 dest;
	__be32 seq;
	__be32 ack_seq;
	__be16 flags; /* data offset, reserved bits and flags: byte TCP_FLAGS_BYTE holds the flags */
	__be16 window;
	__sum16 check;
	__be16 urg_ptr;
};

#define TCP_FLAGS_BYTE 13
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_ACK 0x10

/* The fixed TCP header, the cursor past it (options are not read); NULL when cut short. */
static __always_inline struct tcphdr *parse_tcphdr(struct hdr_cursor *nh, void *data_end)
{
	struct tcphdr *th = nh->pos;

	if ((void *)(th + 1) > data_end)
		return NULL;
	nh->pos = th + 1;
	return th;
}

static __always_inline __u8 tcp_flags(const struct tcphdr *th)
{
	return ((const __u8 *)th)[TCP_FLAGS_BYTE];
}

/* The UDP header, the cursor past it; NULL when cut short. */
static __always_inline struct udphdr *parse_udphdr(struct hdr_cursor *nh, void *data_end)
{
	struct udphdr *uh = nh->pos;

	if ((void *)(uh + 1) > data_end)
		return NULL;
	nh->pos = uh + 1;
	return uh;
}

#endif /* IRONPOST_PARSE_L4_H */
