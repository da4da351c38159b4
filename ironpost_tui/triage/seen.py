"""When the counting first and last saw each address, and a source's latest tenure, for a fixed number
of addresses in storage allocated at construction.

A set-associative table, as the kernel's (SEEN_SETS sets of SEEN_WAYS ways, a key in the set its hash
names): a key not held takes a free way of its set or, the set full, the way seen longest ago (of two
seen in the same read, the one that arrived last).  A heavy hitter, seen at every read since it
arrived, keeps its way; a spoofed flood's one-read sources churn the others.  Nothing is allocated per
key: a flood leaves the memory as it was at the attach.
"""

from __future__ import annotations

from array import array

from ironpost_tui.kernel import abi
from ironpost_tui.triage.reader import TOP_KEY_SIZE, SourceTenure, TopKey

SEEN_SETS = 1_024
SEEN_WAYS = 4
SEEN_MAX = SEEN_SETS * SEEN_WAYS  # keys whose first/last seen and tenure are kept
# A tenure's ports kept, the busiest first: the kernel keeps TOP_PORT_SLOTS a way, a way per CPU holding
# the source; 16 are all of them on up to 4 CPUs.
TENURE_PORTS = 16
_FAMILY = 16  # struct top_key's family byte: 0 in a free way (a real key's is FAMILY_V4 or FAMILY_V6)


class SeenTable:
    def __init__(self) -> None:
        self.keys = bytearray(SEEN_MAX * TOP_KEY_SIZE)
        self.first = array("d", bytes(SEEN_MAX * 8))  # wall-clock seconds
        self.last = array("d", bytes(SEEN_MAX * 8))
        self.protocols = array("Q", bytes(SEEN_MAX * abi.TOP_PROTOS * 8))  # a tenure's, per way
        self.port_keys = array("I", bytes(SEEN_MAX * TENURE_PORTS * 4))  # protocol << 16 | port
        self.port_hits = array("Q", bytes(SEEN_MAX * TENURE_PORTS * 8))  # 0: no port
        self.has_tenure = bytearray(SEEN_MAX)

    def find(self, key: TopKey) -> int:
        """The way holding ``key``, or -1."""
        way = (hash(key) & (SEEN_SETS - 1)) * SEEN_WAYS
        keys = self.keys
        for w in range(way, way + SEEN_WAYS):
            if keys.startswith(key, w * TOP_KEY_SIZE):
                return w
        return -1

    def touch(self, key: TopKey, wall: float) -> None:
        """``key`` seen at ``wall``: its last seen, and its first if it is new here."""
        start = SEEN_WAYS * (hash(key) & (SEEN_SETS - 1))
        keys, first, last = self.keys, self.first, self.last
        victim, rank = start, (2, 0.0, 0.0)
        for w in range(start, start + SEEN_WAYS):
            off = w * TOP_KEY_SIZE
            if keys.startswith(key, off):
                last[w] = wall
                return
            # A free way first; then the one seen longest ago, of those seen together the newest arrival.
            r = (1, last[w], -first[w]) if keys[off + _FAMILY] else (0, 0.0, 0.0)
            if r < rank:
                victim, rank = w, r
        keys[victim * TOP_KEY_SIZE : (victim + 1) * TOP_KEY_SIZE] = key
        first[victim] = last[victim] = wall
        self.has_tenure[victim] = 0

    def seen(self, key: TopKey) -> tuple[float, float]:
        """(first, last) seen, wall-clock seconds; (0.0, 0.0) for a key not held."""
        w = self.find(key)
        return (self.first[w], self.last[w]) if w >= 0 else (0.0, 0.0)

    def set_tenure(self, key: TopKey, tenure: SourceTenure) -> None:
        """A held key's latest tenure (a key not held has none kept)."""
        w = self.find(key)
        if w < 0:
            return
        self.protocols[w * abi.TOP_PROTOS : (w + 1) * abi.TOP_PROTOS] = array("Q", tenure.protocols)
        busiest = sorted(tenure.ports.items(), key=lambda kv: (-kv[1], kv[0]))[:TENURE_PORTS]
        base = w * TENURE_PORTS
        for i in range(TENURE_PORTS):
            pk, hits = busiest[i] if i < len(busiest) else (0, 0)
            self.port_keys[base + i] = pk
            self.port_hits[base + i] = hits
        self.has_tenure[w] = 1

    def tenure(self, key: TopKey) -> SourceTenure | None:
        w = self.find(key)
        if w < 0 or not self.has_tenure[w]:
            return None
        base = w * TENURE_PORTS
        ports = {self.port_keys[i]: self.port_hits[i] for i in range(base, base + TENURE_PORTS) if self.port_hits[i]}
        return SourceTenure(tuple(self.protocols[w * abi.TOP_PROTOS : (w + 1) * abi.TOP_PROTOS]), ports)

    def held(self) -> int:
        """Keys held (for tests: never more than SEEN_MAX)."""
        return sum(1 for w in range(SEEN_MAX) if self.keys[w * TOP_KEY_SIZE + _FAMILY])
