"""Rates over 1 s, 10 s and 60 s windows, from the reader's deltas (the clock passed in).

Each read's deltas cover the time since the previous read.  A window keeps the reads whose interval
lies within it (with a little slack for a read a little late) and a running sum of their counts,
so a rate is what was counted divided by exactly the time it was counted over: reads a little early
or late change the span, not the accuracy.  Memory is bounded whatever the traffic: each read keeps
its KEEP_PER_READ busiest keys per list, and first/last-seen times are kept for SEEN_MAX keys.
"""

from __future__ import annotations

import heapq
import ipaddress
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ironpost_tui.detectors.counters import Counts
from ironpost_tui.kernel import abi
from ironpost_tui.model import PROTOCOLS
from ironpost_tui.triage.reader import SourceTenure, TopDeltas, TopKey
from ironpost_tui.triage.values import RateWindow, SourceDetail, TopColumn, TopKind, TopLists, TopRow, TopSnapshot

KEEP_PER_READ = 256  # keys per list a read keeps (the most packets): a spoofed flood's others are noise
LIST_ROWS = 50  # rows per list and window: the top by each column, together
SEEN_MAX = 4_096  # keys whose first/last seen and tenure are kept
# A window takes the reads whose interval started within its length ago, give or take this much for a read
# a little late (the engine reads every 0.5 s, on a loaded machine not to the millisecond).
SLACK = 0.25
_COLUMN_INDEX = {TopColumn.PPS: 0, TopColumn.BPS: 1, TopColumn.SYN_PS: 2, TopColumn.DROP_PS: 3}
_IP_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}


def address_of(key: TopKey) -> str:
    """A source's or destination's key as ipaddress prints the address."""
    if key[16] == abi.FAMILY_V4:
        return str(ipaddress.IPv4Address(key[:4]))
    return str(ipaddress.IPv6Address(key[:16]))


def port_name(protocol: int, port: int) -> str:
    return f"{_IP_NAMES.get(protocol, str(protocol))}/{port}"


def _port_of(key: TopKey) -> str:
    return port_name(key[17], int.from_bytes(key[18:20], "little"))


@dataclass
class _Read:
    since: float  # monotonic seconds: the previous read
    at: float
    counts: dict[TopKind, dict[str, Counts]]


@dataclass
class _Window:
    window: RateWindow
    reads: deque[_Read] = field(default_factory=deque)
    sums: dict[TopKind, dict[str, list[int]]] = field(default_factory=lambda: {k: {} for k in TopKind})

    def add(self, read: _Read) -> None:
        self.reads.append(read)
        for kind, counts in read.counts.items():
            sums = self.sums[kind]
            for key, c in counts.items():
                acc = sums.get(key)
                if acc is None:
                    sums[key] = list(c)
                else:
                    for i, v in enumerate(c):
                        acc[i] += v
        while self.reads and read.at - self.reads[0].since > self.window + min(SLACK, self.window / 10):
            self._drop(self.reads.popleft())

    def _drop(self, read: _Read) -> None:
        for kind, counts in read.counts.items():
            sums = self.sums[kind]
            for key, c in counts.items():
                acc = sums[key]
                for i, v in enumerate(c):
                    acc[i] -= v
                if not any(acc):
                    del sums[key]

    def rows(self, kind: TopKind, seen: dict[str, tuple[float, float]]) -> tuple[TopRow, ...]:
        if not self.reads:
            return ()
        span = self.reads[-1].at - self.reads[0].since
        sums = self.sums[kind]
        picked: set[str] = set()
        for i in _COLUMN_INDEX.values():
            picked.update(k for k, _ in heapq.nlargest(LIST_ROWS, sums.items(), key=_counter(i)))
        rows = []
        for key in picked:
            packets, nbytes, syns, drops = sums[key]
            first, last = seen.get(key, (0.0, 0.0))
            rows.append(TopRow(key, packets / span, nbytes * 8 / span, syns / span, drops / span, first, last))
        rows.sort(key=lambda r: (-r.pps, r.key))
        return tuple(rows)


class TopRates:
    """Feed it each read's deltas; ask it for the snapshot of every window."""

    def __init__(self) -> None:
        self._windows = [_Window(w) for w in RateWindow]
        self._last: float | None = None
        self._seen: dict[str, tuple[float, float]] = {}  # key -> (first, last) wall-clock seconds
        self._tenures: dict[str, SourceTenure] = {}

    def add(self, deltas: TopDeltas, now: float, wall: float) -> None:
        """``now``: monotonic seconds of the read; ``wall``: the same moment on the wall clock.  The
        first read is the baseline: what it finds was counted over an unknown time, and only dates
        the keys."""
        counts = {
            TopKind.SOURCES: _keep({address_of(k): c for k, c in deltas.sources.items()}),
            TopKind.DESTINATIONS: _keep({address_of(k): c for k, c in deltas.destinations.items()}),
            TopKind.PORTS: _keep(_by_port(deltas.ports)),
        }
        for kind in (TopKind.SOURCES, TopKind.DESTINATIONS):
            for key in counts[kind]:
                first = self._seen.get(key, (wall, wall))[0]
                self._seen[key] = (first, wall)
        for k, tenure in deltas.tenures.items():
            key = address_of(k)
            if key in self._seen:
                self._tenures[key] = tenure
        self._bound()
        if self._last is not None:
            read = _Read(self._last, now, counts)
            for w in self._windows:
                w.add(read)
        self._last = now

    def _bound(self) -> None:
        if len(self._seen) <= SEEN_MAX:
            return
        keep = heapq.nlargest(SEEN_MAX * 3 // 4, self._seen.items(), key=lambda kv: kv[1][1])
        self._seen = dict(keep)
        self._tenures = {k: t for k, t in self._tenures.items() if k in self._seen}

    def snapshot(self, wall: float) -> TopSnapshot:
        windows = []
        listed: set[str] = set()
        for w in self._windows:
            lists = TopLists(
                w.window,
                w.rows(TopKind.SOURCES, self._seen),
                w.rows(TopKind.DESTINATIONS, self._seen),
                w.rows(TopKind.PORTS, {}),
            )
            listed.update(r.key for r in lists.sources)
            windows.append(lists)
        details = tuple(self._detail(k) for k in sorted(listed))
        return TopSnapshot(wall, tuple(windows), details)

    def _detail(self, key: str) -> SourceDetail:
        first, last = self._seen.get(key, (0.0, 0.0))
        tenure = self._tenures.get(key)
        if tenure is None:
            return SourceDetail(key, (), (), first, last)
        ports = sorted(((port_name(pk >> 16, pk & 0xFFFF), n) for pk, n in tenure.ports.items()), key=_most)
        protos = sorted(((PROTOCOLS[i], n) for i, n in enumerate(tenure.protocols) if n), key=_most)
        return SourceDetail(key, tuple(ports), tuple(protos), first, last)


def _counter(i: int) -> Callable[[tuple[str, list[int]]], int]:
    def get(kv: tuple[str, list[int]]) -> int:
        return kv[1][i]

    return get


def _most(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


def _keep(counts: dict[str, Counts]) -> dict[str, Counts]:
    if len(counts) <= KEEP_PER_READ:
        return counts
    return dict(heapq.nlargest(KEEP_PER_READ, counts.items(), key=lambda kv: kv[1][0]))


def _by_port(ports: dict[TopKey, Counts]) -> dict[str, Counts]:
    """TOP_PORT's keys are per family: one row per (protocol, port)."""
    out: dict[str, Counts] = {}
    for k, c in ports.items():
        name = _port_of(k)
        acc = out.get(name)
        out[name] = c if acc is None else tuple(a + b for a, b in zip(acc, c, strict=True))
    return out
