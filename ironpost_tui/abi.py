"""Python's side of bpf/ironpost_common.h: constants and binary layouts.

The XDP program refuses to compile when the sizes here differ from its
structs (they are passed in as -D flags), and tests/test_abi.py checks every
constant against the header.
"""

from __future__ import annotations

import struct

IRONPOST_ABI_VERSION = 1

STATS_TCP = 0
STATS_UDP = 1
STATS_ICMP = 2
STATS_OTHER = 3
STATS_TOTAL = 4
STATS_MAX = 5

ACTION_PASS = 0
ACTION_DROP = 1
ACTION_MONITOR = 2

VERDICT_PASS = 0
VERDICT_DROP = 1
VERDICT_MONITOR = 2
VERDICT_PROTECTED = 3

EVSTAT_DELIVERED = 0
EVSTAT_LOST_RINGBUF_FULL = 1
EVSTAT_LOST_RATE_LIMITED = 2
EVSTAT_MAX = 3

FIELD_SRC = 0x1
FIELD_DST = 0x2
FIELD_DPORT = 0x4
FIELD_PROTO = 0x8
SHAPE_UNUSED = 0x80

FAMILY_ANY = 0
FAMILY_V4 = 4
FAMILY_V6 = 6

# struct proto_stats
PROTO_STATS = struct.Struct("<QQQ")
# struct blocklist_value: action, own_action, pad[2], rule_slot, priority, own_slot, own_priority
BLOCKLIST_VALUE = struct.Struct("<BB2xIIII")
# struct lpm_v4_key / lpm_v6_key
LPM_V4_KEY = struct.Struct("<I4s")
LPM_V6_KEY = struct.Struct("<I16s")
# struct allow_value
ALLOW_VALUE = struct.Struct("<I")
# struct rule_shape: fields, family, proto_mask, pad, port_mask, pad[2], src_mask[16], dst_mask[16]
RULE_SHAPE = struct.Struct("<BBBxH2x16s16s")
# struct match_key: shape, family, protocol, dst_port (network order), src[16], dst[16]
MATCH_KEY = struct.Struct("<IBB2s16s16s")
# struct rule_hit
RULE_HIT = struct.Struct("<QQ")
# struct ironpost_config
CONFIG = struct.Struct("<II")
# struct agg_key: addr[16], family, pad[3]
AGG_KEY = struct.Struct("<16sB3x")
# struct agg_value: syn, tcp, new_tcp_ports, new_udp_ports, last_ns
AGG_VALUE = struct.Struct("<QQQQQ")
# struct port_key: addr[16], family, protocol, port (network order)
PORT_KEY = struct.Struct("<16sBB2s")
# struct packet_event
PACKET_EVENT = struct.Struct("<Q16s16sHHIIBBBB")

# Every map the program owns, by name (the names `bpftool map dump name X` takes).
PINNED_MAPS = (
    "BLOCKLIST",
    "SRC4",
    "SRC6",
    "MATCH",
    "SHAPES",
    "ALLOW4",
    "ALLOW6",
    "CONFIG",
    "STATS",
    "RULE_HITS",
    "EVENT_STATS",
    "RATE_STATE",
)

# Detector aggregates: per program run, never pinned (the windows live in user space).
AGG_MAPS = ("SRC_AGG", "DST_AGG", "PORT_SEEN")

PROTOCOL_NAMES = {STATS_TCP: "tcp", STATS_UDP: "udp", STATS_ICMP: "icmp", STATS_OTHER: "other", STATS_TOTAL: "total"}
EVENT_LOSS_REASONS = {EVSTAT_LOST_RINGBUF_FULL: "ringbuf_full", EVSTAT_LOST_RATE_LIMITED: "rate_limited"}


def size_cflags() -> list[str]:
    """The -D flags that let the C program check these layouts at compile time."""
    return [
        f"-DPY_ABI_VERSION={IRONPOST_ABI_VERSION}",
        f"-DPY_EVENT_SIZE={PACKET_EVENT.size}",
        f"-DPY_VALUE_SIZE={BLOCKLIST_VALUE.size}",
        f"-DPY_SHAPE_SIZE={RULE_SHAPE.size}",
        f"-DPY_MATCH_KEY_SIZE={MATCH_KEY.size}",
        f"-DPY_AGG_VALUE_SIZE={AGG_VALUE.size}",
        f"-DPY_PORT_KEY_SIZE={PORT_KEY.size}",
    ]
