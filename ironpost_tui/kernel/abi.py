"""Python's side of bpf/ironpost_common.h: constants and binary layouts.

The XDP program refuses to compile when the sizes here differ from its
structs (they are passed in as -D flags), and tests/test_abi.py checks every
constant against the header.
"""

from __future__ import annotations

import struct

from ironpost_tui.model import FRAGMENTS, StrEnum

IRONPOST_ABI_VERSION = 7

STATS_TCP = 0
STATS_UDP = 1
STATS_ICMP = 2
STATS_OTHER = 3
STATS_TOTAL = 4
STATS_FRAGMENTS = 5  # not a protocol: packets judged without their ports (rules/fragments.py), counted under theirs too
STATS_MAX = 6

ACTION_PASS = 0
ACTION_DROP = 1
ACTION_MONITOR = 2

ORIGIN_IRONPOST = 0  # a BLOCKLIST entry of ironpost's own rules
ORIGIN_EXTERNAL = 1  # another tool's entry, taken in by a controller (rules/external.py)
ORIGIN_DECISION = 2  # a CrowdSec decision's entry (rules/decision_set.py): own_priority is its expiry (Unix s)

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

# Multiplicative hashing (hash_32 below, bpf/hash.h): EXACT4's and ADDR_FILTER's buckets.
HASH_MUL32 = 0x9E3779B1  # 2^32 / the golden ratio, rounded to a prime (Knuth)
HASH_MIX32 = 0x85EBCA6B  # MurmurHash3's fmix32 multiplier: folds bits 32-47 of an IPv6 address in
HASH_SALT32 = 0x7F4A7C15  # the low half of 2^64 / the golden ratio
U32_MASK = 0xFFFFFFFF

ADDR_FILTER_BITS = 18
FILTER_GRANULE4 = 24  # ADDR_FILTER buckets an IPv4 address by its /24
FILTER_GRANULE6 = 48  # and an IPv6 address by its /48
ADDR_FILTER_WORDS = 131072  # 2^(ADDR_FILTER_BITS - 1)
FILTER_EXACT = 0x1
FILTER_PREFIX = 0x2
FILTER_ALLOW = 0x4
FILTER_EXACT4 = 0x8
FILTER_PREFIXH = 0xF0  # bit FILTER_PREFIXH_SHIFT + i: a hashed prefix at probe length i
FILTER_PREFIXH_SHIFT = 4
FILTER_SRC_SHIFT = 8
FILTER_DST_SHIFT = 16
PORT_FILTER_WORDS = 8192

CFG_WILD_PREFIX4 = 0x1
CFG_WILD_PREFIX6 = 0x2
CFG_WILD_ALLOW4 = 0x4
CFG_WILD_ALLOW6 = 0x8

EXACT4_WAYS = 8
# PREFIX4H/PREFIX6H (bpf/ironpost_common.h): 8-way buckets of hashed prefixes; CONFIG lists up to
# PREFIXH_PROBES lengths per family.
PREFIXH_WAYS = 8
PREFIXH_PROBES = 4
HASH_MUL64 = 0x9E3779B97F4A7C15  # bpf/hash.h: folds an IPv6 prefix's halves together, and MATCHH's keys
# MATCHH (bpf/ironpost_common.h): 4-way buckets of MATCH's keys, each read as MATCH_KEY_WORDS u64.
MATCHH_WAYS = 4
MATCH_KEY_WORDS = 5

SKETCH_WAYS = 4
PORT_BITS = 512
DIRTY_GENS = 4
TARGET_SLOTS = 4  # a source way's target slots: the destinations it probes most

# Top talkers (bpf/top_talkers.h): set-associative per-CPU tables by source, destination, destination port.
TOP_WAYS = 4
TOP_STALE_GENS = 20  # a way silent this many TICK generations is taken first
TOP_PORT_SLOTS = 4  # a source's destination ports kept
TOP_PROTOS = 4  # a source's packets by STATS_TCP .. STATS_OTHER
TOP_SAMPLE_LOG2 = 2  # TOP_DST and TOP_PORT count one packet in 4, as 4; TOP_SRC every packet

NSEC_PER_SEC = 1_000_000_000  # the kernel's times (TICK, RULE_HITS, events) are in ns
# Ranks: a match's priority, monitor matches after every drop match; NO_MATCH: none (also
# CONFIG.match_rank with no multi-field rule).
MONITOR_RANK = 0x80000000
# The priority of every CrowdSec decision's entry (rules/decision_set.py), the last drop rank: never a rule's
# (RuleTable._take_priority stops below it), so a restart tells the set's pinned entries from the rules'.
DECISION_PRIORITY = MONITOR_RANK - 1
NO_MATCH = 0xFFFFFFFF

# The protocol of an IPv6 packet whose extension headers the program did not follow to the upper header
# (IPPROTO_NONE): its ports count as hidden (rules/fragments.py).
PROTO_UNKNOWN = 59

FAMILY_ANY = 0
FAMILY_V4 = 4
FAMILY_V6 = 6

# struct proto_stats
PROTO_STATS = struct.Struct("<QQQ")
# struct blocklist_value: action, own_action, origin, pad, rule_slot, priority, own_slot, own_priority
BLOCKLIST_VALUE = struct.Struct("<BBBxIIII")
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
# struct exact4_bucket: addr[EXACT4_WAYS] (the u32 loaded from network order), rank1[] (rank + 1, 0: a way
# not in use), slot[]
EXACT4_BUCKET = struct.Struct(f"<{EXACT4_WAYS}I{EXACT4_WAYS}I{EXACT4_WAYS}I")
# struct prefix4h_bucket: addr[] and mask[] (the prefix and its mask: 4 network-order bytes a way), rank1[],
# slot[], plen[]
PREFIX4H_BUCKET = struct.Struct(f"<{PREFIXH_WAYS * 4}s{PREFIXH_WAYS * 4}s{PREFIXH_WAYS}I{PREFIXH_WAYS}I{PREFIXH_WAYS}B")
# struct prefix6h_bucket: addr[] and mask[] (16 network-order bytes a way), rank1[], slot[], plen[]
PREFIX6H_BUCKET = struct.Struct(
    f"<{PREFIXH_WAYS * 16}s{PREFIXH_WAYS * 16}s{PREFIXH_WAYS}I{PREFIXH_WAYS}I{PREFIXH_WAYS}B"
)
# struct matchh_bucket: key[MATCHH_WAYS * MATCH_KEY_WORDS] (a way's match_key as MATCH_KEY_WORDS u64), rank1[]
# (rank + 1, 0: a way not in use), slot[]
MATCHH_BUCKET = struct.Struct(f"<{MATCHH_WAYS * MATCH_KEY.size}s{MATCHH_WAYS}I{MATCHH_WAYS}I")
# struct ironpost_config: n_shapes, abi_version, flags, hash_seed, match_rank, src_wild, dst_wild, port_wild,
# pad, proto_shapes[512] (IPv4 then IPv6, by protocol), plen4[PREFIXH_PROBES], plen6[PREFIXH_PROBES],
# match_spill (shapes with a MATCH entry MATCHH lacks), pad[3]
CONFIG = struct.Struct(f"<IIIIIBBBx512s{PREFIXH_PROBES}s{PREFIXH_PROBES}sB3x")
# struct agg_key: addr[16], family, pad[3]
AGG_KEY = struct.Struct("<16sB3x")
# struct src_way: key (20 bytes), syn, tcp, new_tcp_ports, new_udp_ports, marked, last_seq, ports_since,
# ports[PORT_BITS / 64] (skipped: only the kernel reads the bitmap), tgt_addr[TARGET_SLOTS][16] (one bytes
# object), tgt_hits[TARGET_SLOTS], tgt_port_hits[TARGET_SLOTS], tgt_port[TARGET_SLOTS]
SRC_WAY = struct.Struct(
    f"<20sIIII4xQQ{PORT_BITS // 8}x{TARGET_SLOTS * 16}s{TARGET_SLOTS}I{TARGET_SLOTS}I{TARGET_SLOTS}H"
)
# struct dst_way: key, syn, tcp, marked (skipped), port, pad, port_syns, last_seq
DST_WAY = struct.Struct("<20sII4xH2xIQ")
# struct ironpost_tick: gen (a tick count), pad, now_ns
TICK = struct.Struct("<I4xQ")
# struct top_way: key (addr[16], family, protocol, port), seen_gen, packets, bytes, syns, drops
TOP_KEY = struct.Struct("<16sBBH")
TOP_WAY = struct.Struct("<20sIQQII")
# struct top_src_way: top_way, proto_pkts[TOP_PROTOS], port_key[TOP_PORT_SLOTS], port_hits[TOP_PORT_SLOTS]
TOP_SRC_WAY = struct.Struct(f"<20sIQQII{TOP_PROTOS}I{TOP_PORT_SLOTS}I{TOP_PORT_SLOTS}I")
# struct packet_event
PACKET_EVENT = struct.Struct("<Q16s16sHHIIBBBB")


class MapName(StrEnum):
    """The program's maps, by name (the names `bpftool map dump name X` takes)."""

    BLOCKLIST = "BLOCKLIST"
    EXACT4 = "EXACT4"
    PREFIX4H = "PREFIX4H"
    PREFIX6H = "PREFIX6H"
    SRC4 = "SRC4"
    SRC6 = "SRC6"
    MATCH = "MATCH"
    MATCHH = "MATCHH"
    FRAG_MATCH = "FRAG_MATCH"
    SHAPES = "SHAPES"
    ALLOW4 = "ALLOW4"
    ALLOW6 = "ALLOW6"
    CONFIG = "CONFIG"
    ADDR_FILTER = "ADDR_FILTER"
    PORT_FILTER = "PORT_FILTER"
    STATS = "STATS"
    RULE_HITS = "RULE_HITS"
    EVENT_STATS = "EVENT_STATS"
    RATE_STATE = "RATE_STATE"
    SRC_SKETCH = "SRC_SKETCH"
    DST_SKETCH = "DST_SKETCH"
    DIRTY = "DIRTY"
    TICK = "TICK"
    EVENTS = "EVENTS"
    TOP_SRC = "TOP_SRC"
    TOP_DST = "TOP_DST"
    TOP_PORT = "TOP_PORT"


# Every map pinned with the program.
PINNED_MAPS = (
    MapName.BLOCKLIST,
    MapName.EXACT4,
    MapName.PREFIX4H,
    MapName.PREFIX6H,
    MapName.SRC4,
    MapName.SRC6,
    MapName.MATCH,
    MapName.MATCHH,
    MapName.FRAG_MATCH,
    MapName.SHAPES,
    MapName.ALLOW4,
    MapName.ALLOW6,
    MapName.CONFIG,
    MapName.ADDR_FILTER,
    MapName.PORT_FILTER,
    MapName.STATS,
    MapName.RULE_HITS,
    MapName.EVENT_STATS,
    MapName.RATE_STATE,
)

# Detector sketches: per program run, never pinned (the windows live in user space).
AGG_MAPS = (MapName.SRC_SKETCH, MapName.DST_SKETCH, MapName.DIRTY, MapName.TICK)
# Top talkers: per program run, never pinned (the rates live in user space).
TOP_MAPS = (MapName.TOP_SRC, MapName.TOP_DST, MapName.TOP_PORT)

# The maps that hold rules, by how placement.py places them (FRAG_MATCH holds what rules/fragments.py
# derives from MATCH's).
RULE_MAPS = (MapName.BLOCKLIST, MapName.SRC4, MapName.SRC6, MapName.MATCH)

PROTOCOL_NAMES = {STATS_TCP: "tcp", STATS_UDP: "udp", STATS_ICMP: "icmp", STATS_OTHER: "other", STATS_TOTAL: "total"}
# bpf/capture.h: what a capture asks for (CAPTURE_CFG, one entry), what precedes each copy (perf sample).
CAPTURE_ANY_RULE = 0xFFFFFFFF
CAPTURE_NO_RULE = 0xFFFFFFFF
CAPTURE_SNAPLEN_MAX = 0xFFFF
CAPSTAT_MATCHED = 0
CAPSTAT_CAPTURED = 1
CAPSTAT_LOST_RATE = 2
CAPSTAT_LOST_PERF = 3
CAPSTAT_MAX = 4
# enabled snaplen rate rule_slot family src_prefix dst_prefix protocol port pad src[16] dst[16]
CAPTURE_CONFIG = struct.Struct("<IIIIBBBBHH16s16s")
# ts_ns pkt_len cap_len rule_slot verdict pad[3]
CAPTURE_META = struct.Struct("<QIIIB3x")

# Every STATS row by name: the protocols, and the fragments judged without their ports.
STATS_ROWS = {**PROTOCOL_NAMES, STATS_FRAGMENTS: FRAGMENTS}
EVENT_LOSS_REASONS = {EVSTAT_LOST_RINGBUF_FULL: "ringbuf_full", EVSTAT_LOST_RATE_LIMITED: "rate_limited"}


def hash_32(x: int, bits: int) -> int:
    """hash_32() of bpf/hash.h: the bucket of ``x`` (a u32) among 2^bits, the top bits of x * HASH_MUL32."""
    return ((x * HASH_MUL32) & U32_MASK) >> (32 - bits)


def size_cflags() -> list[str]:
    """The -D flags that let the C program check these layouts at compile time."""
    return [
        f"-DPY_ABI_VERSION={IRONPOST_ABI_VERSION}",
        f"-DPY_EVENT_SIZE={PACKET_EVENT.size}",
        f"-DPY_VALUE_SIZE={BLOCKLIST_VALUE.size}",
        f"-DPY_SHAPE_SIZE={RULE_SHAPE.size}",
        f"-DPY_MATCH_KEY_SIZE={MATCH_KEY.size}",
        f"-DPY_CONFIG_SIZE={CONFIG.size}",
        f"-DPY_SRC_WAY_SIZE={SRC_WAY.size}",
        f"-DPY_DST_WAY_SIZE={DST_WAY.size}",
        f"-DPY_EXACT4_SIZE={EXACT4_BUCKET.size}",
        f"-DPY_PREFIX4H_SIZE={PREFIX4H_BUCKET.size}",
        f"-DPY_PREFIX6H_SIZE={PREFIX6H_BUCKET.size}",
        f"-DPY_MATCHH_SIZE={MATCHH_BUCKET.size}",
        f"-DPY_TOP_WAY_SIZE={TOP_WAY.size}",
        f"-DPY_TOP_SRC_WAY_SIZE={TOP_SRC_WAY.size}",
        f"-DPY_CAPTURE_CONFIG_SIZE={CAPTURE_CONFIG.size}",
        f"-DPY_CAPTURE_META_SIZE={CAPTURE_META.size}",
    ]
