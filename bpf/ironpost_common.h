/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Layouts shared by the XDP program (bpf/ironpost_xdp.c) and user space
 * (ironpost_tui/kernel/abi.py).  Every struct here crosses the kernel/user
 * boundary through a map or the ring buffer, and both sides compute with every
 * value here, so a change of a layout or a value in this file is a change of
 * IRONPOST_ABI_VERSION, which pinned maps carry (CONFIG.abi_version), save for
 * the detector sketches and the ring buffer record, which live as long as the
 * program that made them and are never adopted (the size checks below cover them).  User space passes its own idea of the sizes as -D
 * flags and the program refuses to compile when they disagree (the pattern
 * of BCC's tools/netqtop.c), so Python and C cannot drift apart silently.
 */
#ifndef IRONPOST_COMMON_H
#define IRONPOST_COMMON_H

#define IRONPOST_ABI_VERSION 7

/* STATS indices (the seed's layout, 0-4).  FRAGMENTS is not a protocol (its packets count under
 * theirs as well): the packets judged without their ports (PORTS_HIDDEN in packet.h: TCP and UDP
 * fragments without them, IPv6 of unknown protocol). */
#define STATS_TCP 0
#define STATS_UDP 1
#define STATS_ICMP 2
#define STATS_OTHER 3
#define STATS_TOTAL 4
#define STATS_FRAGMENTS 5
#define STATS_MAX 6

/* Rule actions, as stored in BLOCKLIST and the other rule maps. */
#define ACTION_PASS 0
#define ACTION_DROP 1
#define ACTION_MONITOR 2

/* Verdicts reported in events.  PROTECTED: a drop rule matched but the
 * source is on the allowlist, so the packet passed. */
#define VERDICT_PASS 0
#define VERDICT_DROP 1
#define VERDICT_MONITOR 2
#define VERDICT_PROTECTED 3

/* EVENT_STATS indices: events delivered, and events not delivered by reason. */
#define EVSTAT_DELIVERED 0
#define EVSTAT_LOST_RINGBUF_FULL 1
#define EVSTAT_LOST_RATE_LIMITED 2
#define EVSTAT_MAX 3

/* Fields a multi-field rule shape matches on (AND-ed). */
#define FIELD_SRC 0x1
#define FIELD_DST 0x2
#define FIELD_DPORT 0x4
#define FIELD_PROTO 0x8
/* A shape slot that is not in use. */
#define SHAPE_UNUSED 0x80

/* Ranks: a match's priority; monitor matches rank after every drop match.  NO_MATCH: none
 * (also CONFIG.match_rank with no multi-field rule). */
#define MONITOR_RANK 0x80000000U
#define NO_MATCH 0xffffffffU

/* The protocol of an IPv6 packet whose extension headers the program did not follow to the upper
 * header (cut short, or more than it follows): IPPROTO_NONE.  Its ports count as hidden, and
 * FRAG_MATCH has an entry under this protocol for every drop rule with a port and a protocol. */
#define PROTO_UNKNOWN 59

#define FAMILY_ANY 0
#define FAMILY_V4 4
#define FAMILY_V6 6

/* STATS value. */
struct proto_stats {
	__u64 packets;
	__u64 bytes;
	__u64 drops;
};

/* Value of every rule map (BLOCKLIST, SRC4, SRC6, MATCH): the seed's
 * BlocklistValue (action first) extended with the rule credited (its hit
 * counter slot) and its rank among matches of one action (priority: its
 * position in the rule list, lower wins).  action/rule_slot/priority are what
 * the datapath acts on.  An LPM lookup returns only the longest prefix, so in
 * SRC4/SRC6 user space writes there the best of all the prefixes covering the
 * entry (a drop /16 is not undone by a monitor /24 inside it); the own_*
 * fields keep the entry's own rule, for adopting pinned maps.
 *
 * origin is user space's alone (the program never reads it): ORIGIN_EXTERNAL marks a BLOCKLIST entry
 * another tool wrote and a controller took in (ironpost_tui/rules/external.py), so a --persist
 * restart knows it for one.  It was padding before, always 0 = ORIGIN_IRONPOST: pinned maps of this
 * ABI version read the same either way.  Another tool writes the seed's value, action first and the
 * rest 0 (own_action 0: never written by ironpost).  ORIGIN_DECISION marks a CrowdSec decision's entry
 * (ironpost_tui/rules/decision_set.py), whose own_priority then holds the decision's expiry (Unix
 * seconds): a --persist restart holds it until then. */
#define ORIGIN_IRONPOST 0
#define ORIGIN_EXTERNAL 1
#define ORIGIN_DECISION 2

struct blocklist_value {
	__u8 action;
	__u8 own_action;
	__u8 origin;
	__u8 _pad;
	__u32 rule_slot;
	__u32 priority;
	__u32 own_slot;
	__u32 own_priority;
};

struct lpm_v4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct lpm_v6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* Allowlist value: why the prefix is protected (user-space code). */
struct allow_value {
	__u32 reason;
};

/* One multi-field rule shape: which fields, which family, and the masks
 * that keep only those fields of a packet (all-zero for an unused field),
 * so building the MATCH key takes no branches. */
struct rule_shape {
	__u8 fields;
	__u8 family;
	__u8 proto_mask;
	__u8 _pad;
	__u16 port_mask;
	__u8 _pad2[2];
	__u8 src_mask[16];
	__u8 dst_mask[16];
};

/* MATCH key: the packet's fields masked by one shape.  FRAG_MATCH has the same keys with dst_port
 * 0: a drop rule with a port stands for its key less the port (and that key with protocol
 * PROTO_UNKNOWN if it names a protocol and may match IPv6); the value is the best-ranked rule that
 * stands for it. */
struct match_key {
	__u32 shape;
	__u8 family;
	__u8 protocol;
	__u16 dst_port; /* network byte order */
	__u8 src[16];
	__u8 dst[16];
};

/* RULE_HITS value (per CPU). last_hit_ns is TICK time (CLOCK_MONOTONIC, tick steps). */
struct rule_hit {
	__u64 packets;
	__u64 last_hit_ns;
};

/* Hashing, computed alike by the program and user space (ironpost_tui/kernel/abi.py hash_32):
 * multiplicative (Fibonacci) hashing, x * HASH_MUL32 mod 2^32, whose top bits are the bucket, so a
 * table of 2^bits buckets takes the product >> (32 - bits).  An IPv6 address's bits beyond the
 * first 32 are folded in first, by HASH_MIX32 and HASH_SALT32 (ADDR_FILTER below). */
#define HASH_MUL32 0x9E3779B1U  /* 2^32 / the golden ratio, rounded to a prime (Knuth) */
#define HASH_MIX32 0x85EBCA6BU  /* MurmurHash3's fmix32 multiplier */
#define HASH_SALT32 0x7F4A7C15U /* the low half of 2^64 / the golden ratio */

/* ADDR_FILTER: a filter in front of the rule maps, so a packet whose
 * addresses no rule can concern costs one array read, not a lookup per map.
 * Addresses hash into ADDR_FILTER_BUCKETS buckets of 32 bits (two per u64
 * array element): IPv4 by their /24, IPv6 by their /48.  A prefix sets the
 * bits of every bucket it overlaps (up to 256: /16 to /24, /40 to /48); a
 * shorter one is "wild" and sets a CONFIG flag or mask instead.  Bits are only
 * ever a superset of what the maps hold (user space sets them before writing
 * a rule and clears them after removing it): a set bit costs a lookup, a
 * clear one proves no entry can match. */
#define ADDR_FILTER_BITS 18
#define FILTER_GRANULE4 24 /* an IPv4 address's bucket: hash_32() of its first 24 bits */
#define FILTER_GRANULE6 48 /* an IPv6 address's: of bits 0-31 ^ (bits 32-47 * HASH_MIX32) ^ HASH_SALT32 */
#define ADDR_FILTER_WORDS 131072 /* 2^(ADDR_FILTER_BITS - 1) */
#define FILTER_EXACT 0x1     /* BLOCKLIST may hold an address of this bucket (looked up) */
#define FILTER_PREFIX 0x2    /* SRC4/SRC6 may hold a prefix covering one */
#define FILTER_ALLOW 0x4     /* ALLOW4/ALLOW6 may */
#define FILTER_EXACT4 0x8    /* EXACT4 may */
#define FILTER_PREFIXH 0xf0  /* bit 4 + i: PREFIX4H/PREFIX6H may hold a prefix covering one, at probe length i */
#define FILTER_PREFIXH_SHIFT 4
#define FILTER_SRC_SHIFT 8   /* bits 8..15: shapes whose source field may match */
#define FILTER_DST_SHIFT 16  /* bits 16..23: shapes whose destination field may match */
/* PORT_FILTER: per destination port, the shapes with a rule on it (one byte
 * per port, eight ports per u64 element). */
#define PORT_FILTER_WORDS 8192

/* EXACT4: BLOCKLIST's entries again, in buckets of EXACT4_WAYS the program
 * reads inline.  BLOCKLIST is a hash map, and its lookup is a real function
 * call (__htab_map_lookup_elem and memcmp): ~25 ns here, more than the rest of
 * a dropped packet's path; a bucket is one array read and eight compares.
 * An address lands in bucket hash_32(addr ^ CONFIG.hash_seed, EXACT4_BITS), addr the u32
 * loaded from its network-order bytes.
 * User space (ironpost_tui/rules/exact4.py) writes every BLOCKLIST entry it can
 * here too and sets FILTER_EXACT4 for it; an entry whose bucket is full stays
 * in BLOCKLIST alone, with FILTER_EXACT, as does anything an outside tool
 * writes into BLOCKLIST.  rank1 is the rank the program compares plus one
 * (drop: the rule's list position; monitor: the position | 0x80000000), 0 for
 * a way not in use, so a new (zeroed) map holds nothing; slot is the rule
 * credited.  User space writes a way's address and slot before its rank1 and
 * retires a way by its rank1 alone, so a bucket read half-written never
 * matches an address with another rule's slot. */
#define EXACT4_WAYS 8

struct exact4_bucket {
	__u32 addr[EXACT4_WAYS];
	__u32 rank1[EXACT4_WAYS];
	__u32 slot[EXACT4_WAYS];
};

/* PREFIX4H, PREFIX6H: SRC4's and SRC6's prefixes again, in hashed buckets of PREFIXH_WAYS the program
 * reads inline, as EXACT4's: an LPM trie lookup is a real function call (trie_lookup_elem walks the
 * trie), the cost of a prefix-blocked packet.  User space files a prefix of length L under a probe
 * length P <= L (ironpost_tui/rules/prefilter.py probe_length(): a fixed ladder, IPv4 16/20/24/28,
 * IPv6 40/48/56/64), in bucket hash_32(fold(the prefix masked to P) ^ CONFIG.hash_seed ^
 * P * HASH_MIX32, PREFIXH_BITS), fold() the u32 loaded from an IPv4 prefix's network-order bytes, or
 * for IPv6, of its two u64 halves h0, h1 so loaded, lo32(x) ^ hi32(x) with x = h0 ^ h1 * HASH_MUL64
 * (rule_match.h prefixh6_fold()).  A way holds the prefix and its mask (as loaded), so a source
 * matches it when source & mask == addr.  Probe length i of the ladder is CONFIG.plen4/plen6[i] (0
 * while no prefix uses it); the program probes it only where ADDR_FILTER's bit FILTER_PREFIXH_SHIFT + i
 * says a prefix filed under it may cover the source, so a source costs a probe per length actually
 * near it, not per length in use, and takes
 * the best rank among the ways that match: a way holds its prefix's own rule (rank1 as EXACT4's, slot),
 * so that is the best of the covering prefixes, what the trie's entry for the longest one holds.
 * User space (ironpost_tui/rules/prefixh.py) writes a prefix here when its bucket has a free way, with
 * EXACT4's write order; any other prefix (its bucket full, or shorter than ADDR_FILTER lists) stays in
 * the trie alone, looked up as before (FILTER_PREFIX or CFG_WILD_PREFIX*).  SRC4/SRC6 keep every
 * prefix either way: they are the record, and the fallback. */
#define PREFIXH_WAYS 8
#define PREFIXH_PROBES 4

struct prefix4h_bucket {
	__u32 addr[PREFIXH_WAYS]; /* the prefix, as loaded from network order */
	__u32 mask[PREFIXH_WAYS]; /* its mask, likewise */
	__u32 rank1[PREFIXH_WAYS];
	__u32 slot[PREFIXH_WAYS];
	__u8 plen[PREFIXH_WAYS];
};

/* addr and mask: two u64 halves per way, way w at 2w and 2w + 1 (one dimension: BCC sizes a map's
 * value by its own reading of the struct, and reads a [8][2] array as 8 elements). */
struct prefix6h_bucket {
	__u64 addr[2 * PREFIXH_WAYS];
	__u64 mask[2 * PREFIXH_WAYS];
	__u32 rank1[PREFIXH_WAYS];
	__u32 slot[PREFIXH_WAYS];
	__u8 plen[PREFIXH_WAYS];
};

/* MATCHH: MATCH's entries again, in hashed buckets of MATCHH_WAYS the program reads inline, as EXACT4's:
 * MATCH is a hash map of 40-byte keys, and its lookup is a real function call (jhash2 over the key,
 * __htab_map_lookup_elem and memcmp), some 30-45 ns a shape here, the cost of a packet a multi-field rule
 * matches.  A key (struct match_key, the shape index in it) lands in bucket hash_32(lo32(x) ^ hi32(x),
 * MATCHH_BITS), x = CONFIG.hash_seed, then x = (x ^ w) * HASH_MUL64 for each of the key's five u64 words w
 * in order (as loaded: rule_match.h matchh_bucket_of(), ironpost_tui/rules/matchh.py).  A way holds the
 * whole key, so a packet matches it only where every field is equal.  User space writes every MATCH entry
 * it can here too, with EXACT4's write order (a way's key and slot before its rank1; a way retired by its
 * rank1 alone); a key whose bucket is full stays in MATCH alone, and sets its shape's bit in
 * CONFIG.match_spill, for which the program looks that shape's keys up in MATCH instead of here.  MATCH
 * keeps every entry either way: it is the record, and the fallback.  FRAG_MATCH (a packet that hides its
 * ports) is looked up as before. */
#define MATCHH_WAYS 4
#define MATCH_KEY_WORDS 5

/* key: MATCH_KEY_WORDS u64 a way, way w at [w * MATCH_KEY_WORDS] (one dimension, as prefix6h_bucket's). */
struct matchh_bucket {
	__u64 key[MATCHH_WAYS * MATCH_KEY_WORDS];
	__u32 rank1[MATCHH_WAYS];
	__u32 slot[MATCHH_WAYS];
};

/* CONFIG flags: prefixes too short for ADDR_FILTER, looked up for every packet. */
#define CFG_WILD_PREFIX4 0x1
#define CFG_WILD_PREFIX6 0x2
#define CFG_WILD_ALLOW4 0x4
#define CFG_WILD_ALLOW6 0x8

/* CONFIG[0]: state user space publishes for the datapath. */
struct ironpost_config {
	__u32 n_shapes;    /* shape slots 0..n_shapes-1 are scanned */
	__u32 abi_version; /* IRONPOST_ABI_VERSION of whoever wrote it: checked on adopting pins */
	__u32 flags;       /* CFG_* */
	__u32 hash_seed;   /* detector sketches: where a source lands (random per map set) */
	__u32 match_rank;  /* the best rank in MATCH (NO_MATCH: none): a better source match skips the shapes */
	__u8 src_wild;     /* shapes ADDR_FILTER cannot rule out by source (no source field, short prefix) */
	__u8 dst_wild;     /* ... by destination */
	__u8 port_wild;    /* shapes without a destination port field */
	__u8 _pad;
	__u8 proto_shapes[512]; /* [IPv4 0..255, IPv6 256..511] by protocol: shapes with a rule that may match it */
	__u8 plen4[PREFIXH_PROBES]; /* the prefix lengths PREFIX4H holds (0: a slot not in use) */
	__u8 plen6[PREFIXH_PROBES]; /* ... PREFIX6H */
	__u8 match_spill; /* shapes with a MATCH entry MATCHH lacks (its bucket was full): MATCH looked up */
	__u8 _pad2[3];
};

#define NSEC_PER_SEC 1000000000ULL

/* Per-CPU token bucket for the event rate limit. */
struct rate_state {
	__u64 tokens; /* in event-nanoseconds: one event costs NSEC_PER_SEC */
	__u64 last_ns;
};

/* Detector aggregates, counted in the kernel so that detection stays exact
 * whatever the event sampling does: per-CPU sketches, set-associative, so a
 * packet costs one array read and no atomic operation, and memory is fixed
 * whatever the number of (spoofed) sources.  A source (destination) hashes to
 * one set of SKETCH_WAYS ways; a new one takes the least recently used way.
 * Counters are cumulative from when the way was taken: user space diffs them
 * (a way taken over restarts from zero).  DIRTY says which sets changed since
 * user space last moved TICK's generation (DIRTY_GENS in turn), so user space
 * reads only those.  A set's ways are replaced least recently used first, by a
 * per-CPU packet sequence number. */
#define SKETCH_WAYS 4
#define PORT_BITS 512
#define DIRTY_GENS 4
/* A source's target slots: the destinations it probes most, so that an alert names the address
 * attacked (sketch.h count_target()). */
#define TARGET_SLOTS 4

/* TICK[0]: the detection tick user space publishes (ironpost_tui/detectors/sketch.py),
 * so the per-packet path reads no clock: the tick count (DIRTY entry
 * gen % DIRTY_GENS is the one to mark; 0 before the first tick), and
 * the time of the tick (CLOCK_MONOTONIC ns, 0 before the first), used for
 * the port memory, rule last-hit times and the event rate limit.  While it is
 * 0 (no reader: a bare Datapath) those fall back to the kernel's coarse
 * clock. */
struct ironpost_tick {
	__u32 gen;
	__u32 _pad;
	__u64 now_ns;
};

struct agg_key {
	__u8 addr[16];
	__u8 family;
	__u8 _pad[3];
};

struct src_way {
	struct agg_key key;  /* family 0: unused */
	__u32 syn;           /* TCP with SYN and without ACK: connection attempts */
	__u32 tcp;           /* all TCP */
	__u32 new_tcp_ports; /* probes (TCP without ACK) to a port not probed since ports_since */
	__u32 new_udp_ports; /* UDP to a port not hit since ports_since (replies from services excluded) */
	__u32 marked;        /* 1 + the TICK count in which this way last marked its set in DIRTY (0: never) */
	__u64 last_seq;      /* per-CPU packet sequence number of the last packet */
	__u64 ports_since;   /* TICK time: the port bitmap is cleared every PORT_MEMORY_NS */
	__u64 ports[PORT_BITS / 64]; /* ports probed, by hash of (protocol, port) */
	__u8 tgt_addr[TARGET_SLOTS][16]; /* destinations probed (as agg_key.addr; the source's family) */
	__u32 tgt_hits[TARGET_SLOTS];    /* probes to each since the slot took it (0: unused) */
	/* Each slot's port (host order) and the probes to it since it became the slot's port: a port is
	 * kept while it holds at least half the slot's probes, and the next port probed takes its place
	 * once it does not (sketch.h keep_port), so tgt_port_hits * 2 >= tgt_hits proves it took at
	 * least half.  Cleared with the hits. */
	__u32 tgt_port_hits[TARGET_SLOTS];
	__u16 tgt_port[TARGET_SLOTS];
};

struct dst_way {
	struct agg_key key;
	__u32 syn;
	__u32 tcp;
	__u32 marked;
	__u16 port;      /* the SYNs' destination port (host order), kept as src_way's tgt_port is */
	__u16 _pad;
	__u32 port_syns; /* SYNs to port since it became the way's port: * 2 >= syn, it took half */
	__u64 last_seq;
};

struct src_set {
	struct src_way way[SKETCH_WAYS];
};

struct dst_set {
	struct dst_way way[SKETCH_WAYS];
};

/* Top talkers (bpf/top_talkers.h): per-CPU heavy-hitter tables of fixed size, set-associative, by
 * source (TOP_SRC), destination (TOP_DST) and destination port (TOP_PORT), for every parsed packet.
 * Per program run, never pinned, like the detector sketches.  A key new to its set takes the way
 * with the fewest packets, or one silent for TOP_STALE_GENS TICK generations, and starts from
 * zero.  Counters are cumulative for the tenure of a way: user space (ironpost_tui/triage) diffs. */
#define TOP_WAYS 4
#define TOP_STALE_GENS 20 /* TICK generations (detection ticks, 0.5 s by default): 10 s */
#define TOP_PORT_SLOTS 4  /* a source's destination ports kept */
#define TOP_PROTOS 4      /* a source's packets by STATS_TCP, STATS_UDP, STATS_ICMP, STATS_OTHER */
#define TOP_SAMPLE_LOG2 2 /* TOP_DST and TOP_PORT count one packet in 4, as 4 (top_talkers.h); TOP_SRC all */

/* A top table's key: an address (TOP_SRC, TOP_DST; IPv4 in the first 4 bytes), or for TOP_PORT
 * none and (protocol, port).  family 0: a way not in use. */
struct top_key {
	__u8 addr[16];
	__u8 family;
	__u8 protocol; /* TOP_PORT only */
	__u16 port;    /* TOP_PORT only, host byte order */
};

struct top_way {
	struct top_key key;
	__u32 seen_gen; /* 1 + the TICK generation of its last packet (0: never) */
	__u64 packets;
	__u64 bytes;
	__u32 syns;  /* TCP with SYN and without ACK */
	__u32 drops; /* packets the program dropped */
};

/* TOP_SRC's way: the source's counters, its packets by protocol and its top destination ports. */
struct top_src_way {
	struct top_way w;
	__u32 proto_pkts[TOP_PROTOS];
	__u32 port_key[TOP_PORT_SLOTS];  /* protocol << 16 | port (0: unused) */
	__u32 port_hits[TOP_PORT_SLOTS]; /* packets to it since the slot took it */
};

/* EVENTS record, the seed's PacketEventData widened for IPv6. */
struct packet_event {
	__u64 ts_ns;      /* bpf_ktime_get_ns() */
	__u8 src[16];     /* IPv4 in the first 4 bytes */
	__u8 dst[16];
	__u16 src_port;   /* host byte order */
	__u16 dst_port;   /* host byte order */
	__u32 pkt_len;
	__u32 rule_slot;
	__u8 family;      /* 4 or 6 */
	__u8 protocol;
	__u8 tcp_flags;
	__u8 verdict;
};

#endif /* IRONPOST_COMMON_H */
