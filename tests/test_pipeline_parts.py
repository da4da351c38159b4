"""The engine feeds the detectors a sketch read a part at a time (SketchReader.read_parts: a spoofed
flood changes every way at every read, and a part's objects are freed before the next part's are made).
Each key is whole in one part (its ways are in one set).  The reference is the whole read fed at once
(feed_deltas): over random ticks with flooders, scanners, slow sources and a spoofed crowd, split into
parts at random, the alerts, their targets and ports and what the windows hold are the same, with
sources entering the windows and windows expiring whole over gaps.  (Not covered: a window full, where
a source shed by an earlier part is new to a later one; see DetectionPipeline.tick.)"""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterator
from dataclasses import asdict

import pytest

from ironpost_tui.detectors import DetectionPipeline
from ironpost_tui.detectors.counters import Counts
from ironpost_tui.detectors.settings import PortScanConfig, SynFloodConfig
from ironpost_tui.detectors.sketch import SketchDeltas
from ironpost_tui.detectors.targets import MANY_PORTS
from ironpost_tui.kernel import abi


def key(i: int) -> bytes:
    return abi.AGG_KEY.pack((0xC6120000 + i).to_bytes(4, "big").ljust(16, b"\0"), abi.FAMILY_V4)


def dest(i: int) -> bytes:
    return (0xC6130000 + i).to_bytes(4, "big").ljust(16, b"\0")


class PartsReader:
    """What SketchReader.read_parts yields, from a whole read split into parts."""

    def __init__(self) -> None:
        self.parts: list[SketchDeltas] = []

    def read_parts(self, _now_ns: int) -> Iterator[SketchDeltas]:
        yield from self.parts


def a_tick(rng: random.Random, t: int) -> SketchDeltas:
    sources: dict[Hashable, Counts] = {}
    probes: dict[tuple[Hashable, bytes], int] = {}
    ports: dict[tuple[Hashable, bytes], int] = {}
    heavy = {1: (60, 60, 0, 0), 2: (2, 3, 4, 1), 3: (12, 14, 0, 0), 4: (1, 1, 3, 0)}  # flood, scan, slow ones
    for i, d in heavy.items():
        if (t + i) % 5:  # each pauses now and then (an alert goes quiet)
            sources[key(i)] = d
            probes[(key(i), dest(i % 3))] = d[1]
            ports[(key(i), dest(i % 3))] = rng.choice([22, 80, MANY_PORTS])
    for _ in range(rng.randrange(400)):  # a crowd: mostly a packet each, some enough to enter the windows
        i = 100 + rng.randrange(3000)
        tcp = rng.choice([1, 1, 1, 30, 60])
        sources[key(i)] = (tcp, tcp, rng.choice([0, 0, 1, 6]), 0)
        probes[(key(i), dest(0))] = 1
        ports[(key(i), dest(0))] = rng.randrange(1, 65536)
    targets = {key(9000): (len(sources) * 2, len(sources) * 2)} if t % 3 else {}
    return SketchDeltas(sources, targets, probes, ports, {k: 443 for k in targets})


def split(rng: random.Random, whole: SketchDeltas) -> list[SketchDeltas]:
    """Parts as read_parts makes them: runs of the read's keys in its order (the sets'), every key
    whole in one, the destinations with the first."""
    n = rng.choice([1, 2, 5, 16])
    cuts = sorted(rng.randrange(len(whole.sources) + 1) for _ in range(n - 1))
    part_of = {k: sum(i >= c for c in cuts) for i, k in enumerate(whole.sources)}
    parts = []
    for p in range(n):
        sources = {k: d for k, d in whole.sources.items() if part_of[k] == p}
        probes = {pair: h for pair, h in whole.probes.items() if part_of[pair[0]] == p}
        ports = {pair: port for pair, port in whole.probe_ports.items() if pair in probes}
        first = p == 0
        parts.append(SketchDeltas(sources, whole.destinations if first else {}, probes, ports,
                                  whole.destination_ports if first else {}))  # fmt: skip
    return parts


def pipeline() -> DetectionPipeline:
    p = DetectionPipeline(SynFloodConfig(threshold=200), PortScanConfig(port_threshold=20), "eth9")
    for admit in (p._syn_admit, p._scan_admit):
        admit._pending._salt = 1  # the same sets in both: a full set loses the same way
    return p


@pytest.mark.parametrize("seed", range(6))
def test_a_read_in_parts_raises_what_the_whole_read_raised(seed: int) -> None:
    rng = random.Random(seed)
    whole, parted = pipeline(), pipeline()
    reader = PartsReader()
    parted._reader = reader  # type: ignore[assignment]
    raised = 0
    entered = [0, 0]
    now = 0.0
    for t in range(120):
        read = a_tick(rng, t)
        now += 11.0 if rng.random() < 0.05 else 0.5  # now and then a gap longer than the SYN window
        want = whole.feed_deltas(read.sources, read.destinations, now, now, read.probes, None, read.probe_ports,
                                 read.destination_ports)  # fmt: skip
        reader.parts = split(rng, read)
        got = parted.tick(None, now, now)  # type: ignore[arg-type]
        assert [asdict(c) for c in got] == [asdict(c) for c in want]
        assert whole._syn_src.sums == parted._syn_src.sums and whole._scan_src.sums == parted._scan_src.sums
        raised += len(want)
        entered = [max(e, len(w)) for e, w in zip(entered, (whole._syn_src, whole._scan_src), strict=True)]
    assert raised  # the ticks did raise, update and clear alerts
    assert min(entered) > 100  # the crowd entered the windows
