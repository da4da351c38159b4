"""``python -m bench.read_cost [--cpus 2,16,64] [--rounds 3]``: what a detection tick's read of the per-CPU
tables costs user space on a host of more CPUs than this one.  Not part of ``python -m bench``: a tool for
sizing, whose figures need no kernel.

The detector sketch of sources (``SRC_SKETCH``) and the three top tables are per-CPU arrays of a fixed size
per CPU (bench's default sizes, ``DatapathConfig``): a host of N CPUs holds N copies, and a tick reads every
CPU's ways.  The readers (``detectors.sketch``, ``triage.reader``) are run here on buffers filled as a batch
read fills them, for N CPUs: a read where every way changed (a spoofed flood's, each way a new source of one
packet to one port) and a read where none did (an idle host's; the sketch's whole read, which a read takes
when more than an eighth of its sets are marked).  The figure is the best of ``--rounds`` (ms of one read).

Beside the flood's sketch read, what the detectors then do with what it found: the read's deltas and probes,
part by part, through the detection pipeline's admission (``DetectionPipeline._admit``, as a tick feeds it:
each source into the SYN-flood admission's pending table, its probes to the target tables; a flood's way of
one packet's one port credits no port, so the port-scan admission gets none of them),
read after read of new keys, so that the pending tables are full and each new key evicts a way, as in a
flood that lasts (the sketch's figures are the best of ``--rounds`` after those two).  The alerts' evaluation
(the watched sources only) is not in it.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from ironpost_tui.detectors import sketch
from ironpost_tui.detectors.pipeline import DetectionPipeline
from ironpost_tui.detectors.settings import PortScanConfig, SynFloodConfig
from ironpost_tui.kernel import abi
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.kernel.datapath import DatapathConfig
from ironpost_tui.triage import reader


@dataclass
class FakeDatapath:
    """What the readers take from a Datapath: the CPU count (the maps' fds are never used)."""

    possible_cpus: int

    def map_fd(self, name: MapName) -> int:
        return -1


class FilledBatch:
    """A batch read that gives what the caller wrote into ``values``."""

    def __init__(self, values: bytearray, sets: int) -> None:
        self.values, self.sets = values, sets

    def read(self) -> int:
        return self.sets


WayMaker = Callable[[random.Random, int, int], bytes]


def key_of(rng: random.Random, keys: int) -> bytes:
    """struct top_key (and a sketch way's key): an IPv4 address among ``keys``, TCP."""
    return rng.randrange(keys).to_bytes(4, "big") + bytes(12) + bytes([abi.FAMILY_V4, 6, 0, 0])


def top_src_way(rng: random.Random, keys: int, packets: int) -> bytes:
    return abi.TOP_SRC_WAY.pack(
        key_of(rng, keys), 1, packets, packets * 60, packets // 2, 0, packets, 0, 0, 0, 6 << 16 | 80, 0, 0, 0,
        packets, 0, 0, 0,
    )  # fmt: skip


def top_way(rng: random.Random, keys: int, packets: int) -> bytes:
    return abi.TOP_WAY.pack(key_of(rng, keys), 1, packets, packets * 60, packets // 2, 0)


def src_way(rng: random.Random, keys: int, packets: int, slots: int | None = None) -> bytes:
    """A source way: ``packets`` SYNs, to ``slots`` destinations (random: 1 to all of them)."""
    dst = rng.randrange(4).to_bytes(4, "big") + bytes(12)
    slots = rng.randrange(1, abi.TARGET_SLOTS + 1) if slots is None else slots
    hits = [packets if i < slots else 0 for i in range(abi.TARGET_SLOTS)]
    return abi.SRC_WAY.pack(
        key_of(rng, keys), packets, packets, min(packets, 3), 0, 0, 0, dst * abi.TARGET_SLOTS, *hits, *hits,
        *([80] * abi.TARGET_SLOTS),
    )  # fmt: skip


def flood_way(rng: random.Random, keys: int, packets: int) -> bytes:
    """A spoofed flood's source way: one SYN to one port of one destination."""
    return src_way(rng, keys, 1, slots=1)


def fill(values: bytearray, size: int, make: WayMaker, rng: random.Random) -> None:
    """Every way of ``values`` a new key."""
    values[:] = b"".join(make(rng, 1 << 30, 1) for _ in range(len(values) // size))


def _timed(read: Callable[[], object]) -> float:
    t = time.perf_counter()
    read()
    return time.perf_counter() - t


def sketch_read_ms(cpus: int, sets: int, rounds: int) -> tuple[float, float, float]:
    """(every way changed, none) of SRC_SKETCH: ms of one whole read; and the admission of the flood's read."""
    s = sketch._Sketch(FakeDatapath(cpus), MapName.SRC_SKETCH, abi.SRC_WAY, sets, 4)
    values = bytearray(len(s.prev))
    s._batch = FilledBatch(values, sets)  # type: ignore[assignment]
    rng = random.Random(cpus)
    everything = list(range(sets))
    pipeline = DetectionPipeline(SynFloodConfig(), PortScanConfig(), "bench")
    found: list[tuple[dict[bytes, tuple[int, ...]], dict[tuple[bytes, bytes], int]]] = []

    def read() -> None:
        for part in s.read_parts(everything, sketch.PART_SETS):
            found.append((part, s.probes))  # type: ignore[arg-type]

    def admit() -> None:
        for sources, probes in found:
            pipeline._admit(sources, {}, now, probes, {}, {})  # type: ignore[arg-type]

    churned, unchanged, admitted = [], [], []
    now = 1000.0
    for _ in range(rounds + 2):  # the first two fill the pending tables (a flood that lasts): not counted
        fill(values, abi.SRC_WAY.size, flood_way, rng)
        found.clear()
        churned.append(_timed(read))
        now += 1.0
        pipeline._expire(now)
        admitted.append(_timed(admit))
        found.clear()
        unchanged.append(_timed(read))
    return min(churned[2:]) * 1e3, min(unchanged[2:]) * 1e3, min(admitted[2:]) * 1e3


def top_read_ms(cpus: int, cfg: DatapathConfig, rounds: int) -> tuple[float, float]:
    """(every way changed, none) of the three top tables: ms of one read of all three."""
    churned, unchanged = [], []
    rng = random.Random(cpus)
    for name, way, sets, make in (
        (MapName.TOP_SRC, abi.TOP_SRC_WAY, cfg.top_src_sets, top_src_way),
        (MapName.TOP_DST, abi.TOP_WAY, cfg.top_dst_sets, top_way),
        (MapName.TOP_PORT, abi.TOP_WAY, cfg.top_port_sets, top_way),
    ):
        t = reader._Table(FakeDatapath(cpus), name, way, sets)
        values = bytearray(len(t.prev))
        t._batch = FilledBatch(values, sets)  # type: ignore[assignment]
        c, u = [], []
        for _ in range(rounds):
            fill(values, way.size, make, rng)
            c.append(_timed(lambda t=t: t.read({})))
            u.append(_timed(lambda t=t: t.read({})))
        churned.append(min(c))
        unchanged.append(min(u))
    return sum(churned) * 1e3, sum(unchanged) * 1e3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.read_cost", description=__doc__.split("\n\n")[0])
    p.add_argument("--cpus", default="2,16,64", help="comma-separated CPU counts (default 2,16,64)")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    cfg = DatapathConfig()
    print("cpus  SRC_SKETCH ways  flood ms  admitted ms  unchanged ms  top ways  flood ms  unchanged ms")
    for cpus in (int(c) for c in args.cpus.split(",")):
        sketch_ways = cfg.src_sketch_sets * abi.SKETCH_WAYS * cpus
        top_ways = (cfg.top_src_sets + cfg.top_dst_sets + cfg.top_port_sets) * abi.TOP_WAYS * cpus
        sf, su, sa = sketch_read_ms(cpus, cfg.src_sketch_sets, args.rounds)
        tf, tu = top_read_ms(cpus, cfg, args.rounds)
        sketch_cols = f"{cpus:>4}  {sketch_ways:>15,}  {sf:>8.1f}  {sa:>11.1f}  {su:>12.1f}"
        print(f"{sketch_cols}  {top_ways:>8,}  {tf:>8.1f}  {tu:>12.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
