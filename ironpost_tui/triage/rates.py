"""Rates over 1 s, 10 s and 60 s windows, from the reader's deltas (the clock passed in).

Each read's deltas cover the time since the previous read.  A window takes the reads whose interval
lies within it (with a little slack for a read a little late) and sums their counts, so a rate is what
was counted divided by exactly the time it was counted over: reads a little early or late change the
span, not the accuracy.

Memory is allocated at construction and a flood does not add to it (top_ring.py, seen.py): each read
keeps its KEEP_PER_READ busiest keys per list (by packets: a spoofed flood's others are noise) in a
ring of the last READ_SLOTS reads, which the 1 s and 10 s windows are summed from.  The 60 s window is
summed from buckets of about BUCKET_SECS of reads, each keeping the KEEP_PER_READ busiest keys of its
reads, and from the reads not yet in a bucket.  First/last-seen times and tenures are kept for
SEEN_MAX keys.  The sums are made when a snapshot is asked for, from the few thousand entries a window
holds, and dropped with it.
"""

from __future__ import annotations

import heapq
import ipaddress
from collections.abc import Callable, Sequence

from ironpost_tui.detectors.counters import Counts
from ironpost_tui.kernel import abi
from ironpost_tui.model import PROTOCOLS
from ironpost_tui.triage.reader import TopDeltas, TopKey
from ironpost_tui.triage.seen import SEEN_MAX, SeenTable
from ironpost_tui.triage.top_ring import KINDS, Sums, TopRing
from ironpost_tui.triage.values import RateWindow, SourceDetail, TopColumn, TopLists, TopRow, TopSnapshot

__all__ = ["KEEP_PER_READ", "SEEN_MAX", "TopRates", "address_of", "port_name"]

KEEP_PER_READ = 256  # keys per list a read (and a bucket) keeps (the most packets)
LIST_ROWS = 50  # rows per list and window: the top by each column, together
# A window takes the reads whose interval started within its length ago, give or take this much for a read
# a little late (the engine reads every 0.5 s, on a loaded machine not to the millisecond).
SLACK = 0.25
READ_SLOTS = 32  # the last reads kept whole: 10.25 s of reads every 0.5 s is 21, and a bucket's reads
BUCKET_SECS = 5.0  # the 60 s window's buckets: a bucket closes once its reads span this, less SLACK...
BUCKET_READS = 16  # ... or it holds this many reads (reads more often than 3 a second: shorter buckets)
BUCKET_SLOTS = 14  # 60.25 s of buckets of 4.75 s or more is 13, and one
_COLUMN_INDEX = {TopColumn.PPS: 0, TopColumn.BPS: 1, TopColumn.SYN_PS: 2, TopColumn.DROP_PS: 3}
_IP_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}
_SRC, _DST, _PORT = range(3)  # KINDS' order


def address_of(key: TopKey) -> str:
    """A source's or destination's key as ipaddress prints the address."""
    if key[16] == abi.FAMILY_V4:
        return str(ipaddress.IPv4Address(key[:4]))
    return str(ipaddress.IPv6Address(key[:16]))


def port_name(protocol: int, port: int) -> str:
    return f"{_IP_NAMES.get(protocol, str(protocol))}/{port}"


def _port_of(key: TopKey) -> str:
    return port_name(key[17], int.from_bytes(key[18:20], "little"))


class TopRates:
    """Feed it each read's deltas; ask it for the snapshot of every window."""

    def __init__(self) -> None:
        self._reads = TopRing(READ_SLOTS, KEEP_PER_READ)
        self._buckets = TopRing(BUCKET_SLOTS, KEEP_PER_READ)
        self._open = 0  # the newest reads, not yet in a bucket
        self._last: float | None = None
        self._seen = SeenTable()

    def add(self, deltas: TopDeltas, now: float, wall: float) -> None:
        """``now``: monotonic seconds of the read; ``wall``: the same moment on the wall clock.  The
        first read is the baseline: what it finds was counted over an unknown time, and only dates
        the keys."""
        lists = (_keep(deltas.sources), _keep(deltas.destinations), _keep(_by_port(deltas.ports)))
        for items in lists[_SRC], lists[_DST]:
            for key, _c in items:
                self._seen.touch(key, wall)
        tenures = deltas.tenures
        for key in tenures:
            if self._seen.find(key) >= 0:  # only a held key's is kept: the others are not made
                self._seen.set_tenure(key, tenures[key])
        if self._last is not None:
            self._reads.put(self._last, now, lists)
            self._open += 1
            self._bucket()
        self._last = now

    def _bucket(self) -> None:
        """Merge the open reads into a bucket once they span BUCKET_SECS (or are BUCKET_READS)."""
        reads = self._reads
        oldest = reads.newest(self._open - 1)
        newest = reads.newest(0)
        if reads.at[newest] - reads.since[oldest] < BUCKET_SECS - SLACK and self._open < BUCKET_READS:
            return
        lists = []
        for kind in range(len(KINDS)):
            sums: Sums = {}
            for back in range(self._open):
                reads.add_to(sums, reads.newest(back), kind)
            lists.append(_keep(sums))
        self._buckets.put(reads.since[oldest], reads.at[newest], lists)
        self._open = 0

    def _slots(self, window: RateWindow) -> tuple[list[tuple[TopRing, int]], float]:
        """The slots a window sums, and the time they span (0: none)."""
        reads = self._reads
        if not reads.used:
            return [], 0.0
        at = reads.at[reads.newest(0)]
        limit = window + min(SLACK, window / 10)
        slots: list[tuple[TopRing, int]] = []
        since = at
        rings = [(reads, reads.used)]
        if window == RateWindow.S60:
            rings = [(reads, min(self._open, reads.used)), (self._buckets, self._buckets.used)]
        for ring, n in rings:
            for back in range(n):
                slot = ring.newest(back)
                if at - ring.since[slot] > limit:
                    return slots, at - since
                slots.append((ring, slot))
                since = ring.since[slot]
        return slots, at - since

    def snapshot(self, wall: float) -> TopSnapshot:
        windows = []
        listed: dict[str, TopKey] = {}  # the sources listed in any window, for their details
        for w in RateWindow:
            slots, span = self._slots(w)
            sources, destinations, ports = (self._rows(slots, span, kind) for kind in range(len(KINDS)))
            listed.update((row.key, key) for row, key in sources)
            windows.append(TopLists(w, *(tuple(row for row, _key in rows) for rows in (sources, destinations, ports))))
        details = tuple(self._detail(name, listed[name]) for name in sorted(listed))
        return TopSnapshot(wall, tuple(windows), details)

    def _rows(self, slots: list[tuple[TopRing, int]], span: float, kind: int) -> list[tuple[TopRow, TopKey]]:
        """A window's rows of one list, with their keys: the top LIST_ROWS by each column, by pps."""
        if not slots:
            return []
        sums: Sums = {}
        for ring, slot in slots:
            ring.add_to(sums, slot, kind)
        picked: set[TopKey] = set()
        for i in _COLUMN_INDEX.values():
            picked.update(k for k, _ in heapq.nlargest(LIST_ROWS, sums.items(), key=_counter(i)))
        rows = []
        for key in picked:
            packets, nbytes, syns, drops = sums[key]
            name = _port_of(key) if kind == _PORT else address_of(key)
            first, last = self._seen.seen(key) if kind != _PORT else (0.0, 0.0)
            rows.append((TopRow(name, packets / span, nbytes * 8 / span, syns / span, drops / span, first, last), key))
        rows.sort(key=lambda rk: (-rk[0].pps, rk[0].key))
        return rows

    def _detail(self, name: str, key: TopKey) -> SourceDetail:
        first, last = self._seen.seen(key)
        tenure = self._seen.tenure(key)
        if tenure is None:
            return SourceDetail(name, (), (), first, last)
        ports = sorted(((port_name(pk >> 16, pk & 0xFFFF), n) for pk, n in tenure.ports.items()), key=_most)
        protos = sorted(((PROTOCOLS[i], n) for i, n in enumerate(tenure.protocols) if n), key=_most)
        return SourceDetail(name, tuple(ports), tuple(protos), first, last)


def _counter(i: int) -> Callable[[tuple[TopKey, list[int]]], int]:
    def get(kv: tuple[TopKey, list[int]]) -> int:
        return kv[1][i]

    return get


def _most(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


def _keep(counts: dict[TopKey, Counts] | Sums) -> Sequence[tuple[TopKey, Sequence[int]]]:
    """The KEEP_PER_READ keys with the most packets."""
    if len(counts) <= KEEP_PER_READ:
        return list(counts.items())
    return heapq.nlargest(KEEP_PER_READ, counts.items(), key=_packets)


def _packets(kv: tuple[TopKey, Sequence[int]]) -> int:
    return kv[1][0]


def _by_port(ports: dict[TopKey, Counts]) -> dict[TopKey, Counts]:
    """TOP_PORT's keys are per family: one row per (protocol, port), its key's family byte cleared."""
    out: dict[TopKey, Counts] = {}
    for k, c in ports.items():
        name = k[:16] + b"\0" + k[17:]
        acc = out.get(name)
        out[name] = c if acc is None else tuple(a + b for a, b in zip(acc, c, strict=True))
    return out
