"""Read the top-talker tables (TOP_SRC, TOP_DST, TOP_PORT; bpf/top_talkers.h) as deltas since the
last read.

Each table is read whole, in one batch call per table (its size is fixed at load: 512 source sets
of 4 ways of 96 bytes per CPU by default).  A way whose bytes did not change since the last read is
skipped unparsed, BLOCK_WAYS of them at a time first (an idle table is a compare per block).  A way
that holds the key it held at the last read gives what its counters grew by; a way taken over by
another key gives all it holds (it started from zero).  What a way counted between the last read and
its being taken over is lost: the tables keep the heavy hitters, not every key.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from struct import Struct
from typing import NamedTuple

from ironpost_tui.detectors.counters import Counts
from ironpost_tui.kernel import abi, libbpf
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.kernel.datapath import Datapath

# Ways compared at once before one by one: an idle table (or the CPUs a flood does not reach) is read in
# a compare per block.  Ways one by one cost 1.3 ms a read of the default tables on 2 CPUs, 51 ms on 64
# (python -m bench.read_cost).
BLOCK_WAYS = 64

TopKey = bytes  # struct top_key's 20 bytes: addr[16], family, protocol, port
TOP_KEY_SIZE = abi.TOP_KEY.size


class SourceTenure(NamedTuple):
    """What a source's way holds since it took the way, summed over CPUs."""

    protocols: Counts  # packets by STATS_TCP .. STATS_OTHER
    ports: dict[int, int]  # protocol << 16 | port -> packets


class TopDeltas(NamedTuple):
    """(packets, bytes, syns, drops) per key since the last read."""

    sources: dict[TopKey, Counts]
    destinations: dict[TopKey, Counts]
    ports: dict[TopKey, Counts]
    tenures: Mapping[TopKey, SourceTenure]  # the sources whose ways changed, as their ways now hold them


class _Table:
    """One table and what each of its ways held at the last read, in one buffer the size of the map's
    values, allocated here: a flood that fills the table costs no memory after the attach (a dict of
    the ways seen would grow with them).  Way i's bytes are at ``i * way.size`` in the read's values
    and in the buffer alike; a way never seen is zeros there (family 0, never a key)."""

    def __init__(self, dp: Datapath, name: MapName, way: Struct, sets: int) -> None:
        self.fd = dp.map_fd(name)
        self.way = way
        self.sets = sets
        self.ncpu = dp.possible_cpus
        self.set_size = way.size * abi.TOP_WAYS  # a multiple of 8: per-CPU values need no padding
        self.set_ways = abi.TOP_WAYS * self.ncpu  # one set's value: every CPU's ways
        self.prev = bytearray(self.set_size * self.ncpu * sets)
        self._prev = memoryview(self.prev)
        self._batch = libbpf.BatchReader(self.fd, 4, self.set_size * self.ncpu, sets)  # as prev: allocated here
        self.reads = 0

    def read(self, out: dict[TopKey, Counts]) -> dict[TopKey, int]:
        """Add each key's growth since the last read to ``out``; the keys whose ways changed, with their set."""
        count = self._batch.read()
        self.reads += 1
        values = self._batch.values
        size = self.way.size
        pv = self._prev
        changed: dict[TopKey, int] = {}
        ways = count * self.set_ways
        for first in range(0, ways, BLOCK_WAYS):
            start, end = first * size, min(first + BLOCK_WAYS, ways) * size
            if values.startswith(pv[start:end], start):  # a block unchanged: compared at once, in C
                continue
            self._block(values, first, min(first + BLOCK_WAYS, ways), out, changed)
        return changed

    def _block(
        self, values: bytearray, first: int, last: int, out: dict[TopKey, Counts], changed: dict[TopKey, int]
    ) -> None:
        """Ways ``first`` to ``last`` (excluded) of a read, compared one by one (read())."""
        size = self.way.size
        # struct top_way alone: the start of every table's way (a source way's protocols and ports after it are
        # read by tenure(), for the sources asked for): a spoofed flood changes every way of every read.
        unpack = abi.TOP_WAY.unpack_from
        prev, pv, vv = self.prev, self._prev, memoryview(values)
        for i in range(first, last):
            off = i * size
            if values.startswith(pv[off : off + size], off):  # unchanged: skipped unparsed
                continue
            fields = unpack(values, off)
            key = fields[0]
            if not key[16]:  # family 0: never used
                continue
            counts: Counts = fields[2:6]
            # The same key as at the last read: what it grew by since (what it held then decoded only now it
            # is needed); another key's, or none: all it holds, a tenure from zero.
            delta = way_growth(unpack(prev, off)[2:6], counts) if prev.startswith(key, off) else counts
            pv[off : off + size] = vv[off : off + size]
            changed[key] = i // self.set_ways
            if any(delta):
                acc = out.get(key)
                out[key] = delta if acc is None else tuple(a + d for a, d in zip(acc, delta, strict=True))

    def tenure(self, key: TopKey, s: int) -> SourceTenure:
        """``key``'s tenure as the last read left it: the sum of every CPU's way holding it, changed or
        not.  Its ways are all in the set its key hashes to (bpf/top_talkers.h), ``s``."""
        size, unpack, prev = self.way.size, self.way.unpack_from, self.prev
        acc: dict[TopKey, SourceTenure] = {}
        for i in range(s * self.set_ways, (s + 1) * self.set_ways):
            if prev.startswith(key, i * size):
                _tenure(acc, key, unpack(prev, i * size)[6:])
        return acc[key]

    def ways_holding(self, key: TopKey) -> int:
        """How many ways (of every CPU) held ``key`` at the last read."""
        size = self.way.size
        return sum(1 for off in range(0, len(self.prev), size) if self.prev.startswith(key, off))


U32 = 0xFFFFFFFF


def way_growth(old: Counts | None, cur: Counts) -> Counts:
    """(packets, bytes, syns, drops) grown from ``old`` to ``cur`` in one way.  Packets and bytes are u64
    and never wrap: packets going down is a new tenure (the key evicted and back), counted whole.  SYNs
    and drops are u32 and do wrap (4.3 billion SYNs, about 70 minutes at 1 Mpps on one CPU): their
    growth is modulo 2^32, not a reset that would count a whole tenure as one read's rate."""
    if old is None or cur[0] < old[0] or cur[1] < old[1]:
        return cur
    return (cur[0] - old[0], cur[1] - old[1], (cur[2] - old[2]) & U32, (cur[3] - old[3]) & U32)


def _tenure(tenures: dict[TopKey, SourceTenure], key: TopKey, extra: tuple[int, ...]) -> None:
    protos = extra[: abi.TOP_PROTOS]
    slots = abi.TOP_PORT_SLOTS
    port_keys = extra[abi.TOP_PROTOS : abi.TOP_PROTOS + slots]
    hits = extra[abi.TOP_PROTOS + slots :]
    t = tenures.get(key)
    if t is None:  # per CPU ways of one source add up
        t = tenures[key] = SourceTenure((0,) * abi.TOP_PROTOS, {})
    ports = t.ports
    for pk, h in zip(port_keys, hits, strict=True):
        if h:
            ports[pk] = ports.get(pk, 0) + h
    tenures[key] = SourceTenure(tuple(a + b for a, b in zip(t.protocols, protos, strict=True)), ports)


class Tenures(Mapping[TopKey, SourceTenure]):
    """The tenures of the sources whose ways changed in one read, each made when it is asked for: a
    spoofed flood changes thousands of sources' ways a read, and only the few a pane lists are kept.
    Valid until the table's next read (it reads the ways the read left)."""

    def __init__(self, table: _Table, changed: dict[TopKey, int], reads: int) -> None:
        self._table = table
        self._changed = changed
        self._reads = reads

    def __getitem__(self, key: TopKey) -> SourceTenure:
        s = self._changed[key]
        if self._table.reads != self._reads:
            raise RuntimeError("a top-talker read's tenures asked for after the next read")
        return self._table.tenure(key, s)

    def __iter__(self) -> Iterator[TopKey]:
        return iter(self._changed)

    def __len__(self) -> int:
        return len(self._changed)


class TopReader:
    """Deltas per source, destination and (family, protocol, port), and the changed sources' tenures."""

    def __init__(self, dp: Datapath) -> None:
        cfg = dp.cfg
        self._src = _Table(dp, MapName.TOP_SRC, abi.TOP_SRC_WAY, cfg.top_src_sets)
        self._dst = _Table(dp, MapName.TOP_DST, abi.TOP_WAY, cfg.top_dst_sets)
        self._port = _Table(dp, MapName.TOP_PORT, abi.TOP_WAY, cfg.top_port_sets)

    def read(self) -> TopDeltas:
        sources: dict[TopKey, Counts] = {}
        changed = self._src.read(sources)
        out = TopDeltas(sources, {}, {}, Tenures(self._src, changed, self._src.reads))
        self._dst.read(out.destinations)
        self._port.read(out.ports)
        return out
