"""The top talkers' rates in storage allocated at construction (triage/rates.py, top_ring.py, seen.py),
without the kernel: a flood of distinct keys adds no object and grows no buffer; the 1 s and 10 s
windows give the rows the per-read dicts they replace gave (kept here as the reference, as it was),
and the 60 s window, summed from buckets, lists the heavy hitters the reference lists, at its rates."""

from __future__ import annotations

import gc
import heapq
import ipaddress
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from ironpost_tui.detectors.counters import Counts
from ironpost_tui.kernel import abi
from ironpost_tui.model import PROTOCOLS
from ironpost_tui.triage import rates
from ironpost_tui.triage.reader import SourceTenure, TopDeltas, TopKey
from ironpost_tui.triage.values import RateWindow, SourceDetail, TopColumn, TopKind, TopLists, TopRow, TopSnapshot

# --------------------------------------------------------------------------- #
# the reference

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


class ReferenceRates:
    """The TopRates the ring replaced: dicts of str keys per read and per window."""

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


# --------------------------------------------------------------------------- #
# a flood: heavy hitters at steady rates among thousands of one-read spoofed sources


HEAVY = [abi.TOP_KEY.pack(bytes([198, 19, 0, i]).ljust(16, b"\0"), 4, 0, 0) for i in range(1, 6)]
HEAVY_PORT = abi.TOP_KEY.pack(bytes(16), 6, 6, 22)


class Flood:
    """Reads of a flood: heavy hitters at steady rates among spoofed sources (each in one read only),
    destinations and ports, each with a count of its own (no ties: which of equal keys a list keeps is
    arbitrary, in the reference as here)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.addresses = 0
        self.ports = 0
        self.unique = iter(self.rng.sample(range(1, 10_000_000), 2_000_000))

    def key(self) -> bytes:
        self.addresses += 1
        return abi.TOP_KEY.pack(bytes([10]) + self.addresses.to_bytes(3, "big") + bytes(12), 4, 0, 0)

    def counts(self) -> Counts:
        n = next(self.unique)
        return (n, n * 60 + 7, n ^ 0x5555, n ^ 0xAAAA)  # each column its own order, no two keys alike

    def read(self, spoofed: int) -> TopDeltas:
        src = {self.key(): self.counts() for _ in range(spoofed)}
        dst = {self.key(): self.counts() for _ in range(spoofed // 4)}
        ports = {}
        for _ in range(spoofed):
            self.ports += 1
            family = self.rng.choice((4, 6))
            ports[abi.TOP_KEY.pack(bytes(16), family, 6, self.ports % 65_535 + 1)] = self.counts()
        ports[HEAVY_PORT] = (40_000_000, 2_400_000_000, 40_000_000, 0)
        for i, h in enumerate(HEAVY):
            src[h] = (50_000_000 * (i + 1), 3_000_000_000 * (i + 1), 10 * i, i)
            dst[h] = (10_000_000 * (i + 1), 600_000_000 * (i + 1), 0, 0)
        tenures = {k: SourceTenure((c[0], 0, 0, 0), {6 << 16 | 22: c[0], 6 << 16 | 80: 1}) for k, c in src.items()}
        return TopDeltas(src, dst, ports, tenures)


def reachable(obj: object) -> int:
    """How many objects ``obj`` holds, itself included, following every reference: what a flood must not
    add to.  Numbers aside (an attribute's int may be one cached object or two), and types and modules."""
    seen: set[int] = set()
    todo = [obj]
    while todo:
        o = todo.pop()
        if id(o) in seen or isinstance(o, (type, int, float)) or type(o).__name__ == "module":
            continue
        seen.add(id(o))
        todo.extend(gc.get_referents(o))
    return len(seen)


def test_a_flood_of_distinct_keys_allocates_nothing_after_construction() -> None:
    top = rates.TopRates()
    top.add(TopDeltas({}, {}, {}, {}), 0.0, 1e9)
    sizes = (
        [len(getattr(r, a)) for r in (top._reads, top._buckets) for a in ("keys", "counts", "lens", "since", "at")],
        [len(getattr(top._seen, a)) for a in ("keys", "first", "last", "protocols", "port_keys", "port_hits")],
    )
    objects = reachable(top)
    fl = Flood(3)
    for i in range(1, 161):  # 80 s of reads (every ring wraps), 1,024 new sources each
        top.add(fl.read(1_024), i * 0.5, 1e9 + i * 0.5)
        if i % 40 == 0:
            snap = top.snapshot(1e9 + i * 0.5)
    assert reachable(top) == objects
    assert sizes == (
        [len(getattr(r, a)) for r in (top._reads, top._buckets) for a in ("keys", "counts", "lens", "since", "at")],
        [len(getattr(top._seen, a)) for a in ("keys", "first", "last", "protocols", "port_keys", "port_hits")],
    )
    assert top._seen.held() <= rates.SEEN_MAX
    for w in RateWindow:
        assert [r.key for r in snap.lists(w).sources[:5]] == [address_of(h) for h in reversed(HEAVY)]


@pytest.mark.parametrize("seed", range(2))
def test_the_windows_list_what_the_per_read_dicts_listed(seed: int) -> None:
    fl = Flood(seed)
    rng = random.Random(seed)
    new, ref = rates.TopRates(), ReferenceRates()
    t = 1_000.0
    for d in (new, ref):
        d.add(TopDeltas({}, {}, {}, {}), t, 1e9)
    for i in range(130):  # past 60 s: the 60 s window made of buckets
        t += 0.5 + rng.uniform(-0.1, 0.2)  # early or late
        # The first reads few enough for every key to be kept and seen; then a flood.
        d = fl.read(100 if i < 20 else 1_000)
        for r in (new, ref):
            r.add(d, t, 1e9 + t)
        if i % 7:
            continue
        got, want = new.snapshot(1e9 + t), ref.snapshot(1e9 + t)
        for w in (RateWindow.S1, RateWindow.S10):
            for kind in TopKind:
                g, x = got.lists(w).rows(kind), want.lists(w).rows(kind)
                assert [rates_of(r) for r in g] == [rates_of(r) for r in x]
        heavy = {address_of(h) for h in HEAVY}
        for kind in (TopKind.SOURCES, TopKind.DESTINATIONS):
            for w in RateWindow:
                g = {r.key: r for r in got.lists(w).rows(kind)}
                x = {r.key: r for r in want.lists(w).rows(kind)}
                assert [r.key for r in got.lists(w).rows(kind)[:5]] == [r.key for r in want.lists(w).rows(kind)[:5]]
                for k in heavy:
                    assert (g[k].first_seen, g[k].last_seen) == (x[k].first_seen, x[k].last_seen)
                    assert g[k].pps == pytest.approx(x[k].pps, rel=0.02)
        s60 = got.lists(RateWindow.S60).ports[0]
        assert (s60.key, s60.pps) == (
            want.lists(RateWindow.S60).ports[0].key,
            pytest.approx(want.lists(RateWindow.S60).ports[0].pps, rel=0.02),
        )
        for k in heavy:
            assert got.detail(k) == want.detail(k)


def rates_of(r: TopRow) -> tuple[str, float, float, float, float]:
    return r.key, r.pps, r.bps, r.syn_ps, r.drop_ps
