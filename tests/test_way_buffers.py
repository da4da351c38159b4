"""The readers' previous-read buffers (triage/reader.py ``_Table``, detectors/sketch.py ``_Sketch``),
without the kernel: random sequences of map images give the same deltas, tenures and ports as the
dict-of-ways algorithm they replace (kept here as the reference), and reading them allocates nothing
that stays: the buffer is the map's size from the start."""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Iterator
from struct import Struct
from types import SimpleNamespace
from typing import Any

import pytest

from ironpost_tui.detectors.counters import Counts, growth
from ironpost_tui.detectors.sketch import _Sketch
from ironpost_tui.detectors.targets import MANY_PORTS
from ironpost_tui.kernel import abi, libbpf
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.triage.reader import SourceTenure, Tenures, TopKey, _Table, _tenure, way_growth

NCPU, SETS = 2, 16
S = abi.TARGET_SLOTS


class Images:
    """What libbpf's lookups return: the image set last, per fd."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.by_fd: dict[int, bytes] = {}
        images = self

        def batch_read(reader: libbpf.BatchReader) -> int:  # into the reader's own buffer, as the kernel does
            img = images.by_fd[reader.fd]
            reader.values[: len(img)] = img
            return len(img) // reader.value_size

        monkeypatch.setattr(libbpf.BatchReader, "read", batch_read)
        monkeypatch.setattr(libbpf, "map_lookup", self.lookup)

    def lookup(self, fd: int, key: bytes, size: int) -> bytes:
        s = int.from_bytes(key, "little")
        return self.by_fd[fd][s * size : (s + 1) * size]


def fake_dp(fd: int) -> Any:
    return SimpleNamespace(map_fd=lambda _name: fd, possible_cpus=NCPU)


def addr_key(rng: random.Random, s: int) -> bytes:
    """One of three addresses of set ``s`` (the kernel puts a key in the set its hash names), IPv4
    or IPv6, as struct top_key / agg_key (family at byte 16)."""
    n = s + SETS * rng.randrange(3)
    return bytes([198, 18, 0, n]).ljust(16, b"\0") + bytes([4 if n % 3 else 6, 0, 0, 0])


def images(way: Struct, fresh: Callable[[random.Random, int], list[Any]], grow: Callable[[list[Any]], None],
           seed: int, reads: int) -> Iterator[bytes]:  # fmt: skip
    """A table of SETS x NCPU x 4 ways through ``reads`` reads: ways unused (zeros), taken over, grown,
    counted down (a new tenure), left alone, or changed only in bytes the reader skips."""
    rng = random.Random(seed)
    ways: list[list[Any] | None] = [None] * (SETS * NCPU * 4)
    for _ in range(reads):
        for i, w in enumerate(ways):
            r = rng.random()
            if r < 0.15:
                ways[i] = fresh(rng, i // (NCPU * 4))
            elif w is not None and r < 0.5:
                grow(w)
            elif w is not None and r < 0.55:
                w[1] += 1  # seen_gen / a skipped field: bytes changed, nothing counted
        yield b"".join(way.pack(*w) if w is not None else bytes(way.size) for w in ways)


# --------------------------------------------------------------------------- #
# TOP_SRC: the reference is the dict-of-ways read


def reference_table_read(
    prev: dict[int, tuple[bytes, bytes, Counts, tuple[int, ...]]], way: Struct, values: bytes, count: int,
    out: dict[TopKey, Counts], tenures: dict[TopKey, SourceTenure],
) -> None:  # fmt: skip
    changed: set[TopKey] = set()
    for i in range(count * NCPU * abi.TOP_WAYS):
        off = i * way.size
        raw = values[off : off + way.size]
        old = prev.get(i)
        if old is not None and old[0] == raw:
            continue
        fields = way.unpack_from(values, off)
        key = fields[0]
        if not key[16]:
            continue
        counts: Counts = (fields[2], fields[3], fields[4], fields[5])
        before = old[2] if old is not None and old[1] == key else None
        prev[i] = (raw, key, counts, fields[6:])
        changed.add(key)
        delta = way_growth(before, counts)
        if any(delta):
            acc = out.get(key)
            out[key] = delta if acc is None else tuple(a + d for a, d in zip(acc, delta, strict=True))
    if changed:
        for _raw, key, _counts, extra in prev.values():
            if key in changed:
                _tenure(tenures, key, extra)


def top_src_way(rng: random.Random, s: int) -> list[Any]:
    n = rng.randrange(1, 4)
    ports = [6 << 16 | rng.randrange(1, 4), 17 << 16 | 53, 0, 0]
    return [addr_key(rng, s), 1, n, 60 * n, n, rng.randrange(2), n, 0, 0, 0, *ports, n, 1, 0, 0]


def grow_top(w: list[Any]) -> None:
    w[2] += 3
    w[3] += 180
    w[4] = (w[4] + 2) & 0xFFFFFFFF
    w[6] += 3
    w[14] += 2


@pytest.mark.parametrize("seed", range(4))
def test_top_table_gives_what_the_dict_of_ways_gave(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    imgs = Images(monkeypatch)
    table = _Table(fake_dp(7), MapName.TOP_SRC, abi.TOP_SRC_WAY, SETS)
    ref: dict[int, tuple[bytes, bytes, Counts, tuple[int, ...]]] = {}
    for img in images(abi.TOP_SRC_WAY, top_src_way, grow_top, seed, 30):
        imgs.by_fd[7] = img
        got: tuple[dict[TopKey, Counts], dict[TopKey, SourceTenure]] = ({}, {})
        want: tuple[dict[TopKey, Counts], dict[TopKey, SourceTenure]] = ({}, {})
        changed = table.read(got[0])
        got[1].update((k, table.tenure(k, s)) for k, s in changed.items())
        reference_table_read(ref, abi.TOP_SRC_WAY, img, SETS, *want)
        assert got == want
    assert len(table.prev) == SETS * NCPU * abi.TOP_WAYS * abi.TOP_SRC_WAY.size  # as allocated


def test_a_reads_tenures_are_made_from_what_it_left_and_refused_after_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    imgs = Images(monkeypatch)
    table = _Table(fake_dp(7), MapName.TOP_SRC, abi.TOP_SRC_WAY, SETS)
    reads = images(abi.TOP_SRC_WAY, top_src_way, grow_top, 1, 2)
    imgs.by_fd[7] = next(reads)
    tenures = Tenures(table, table.read({}), table.reads)
    assert tenures  # the first image's sources
    some = next(iter(tenures))
    assert tenures[some].protocols  # asked in time: made (control)
    imgs.by_fd[7] = next(reads)
    table.read({})
    with pytest.raises(RuntimeError):
        tenures[some]


# --------------------------------------------------------------------------- #
# SRC_SKETCH and DST_SKETCH: the reference is the dict-of-ways _ways and port_of

_Way = tuple[bytes, Counts, bytes, Counts, Counts, Counts]


class ReferenceSketch:
    def __init__(self, way: Struct, counters: int) -> None:
        self.way, self.counters, self.ports = way, counters, counters == 4
        self.prev: dict[tuple[int, int, int], _Way] = {}
        self.probes: dict[tuple[Hashable, bytes], int] = {}
        self.grown: dict[Hashable, int] = {}

    def read(self, values: bytes, out: dict[Hashable, Counts]) -> None:
        stride = self.way.size * abi.SKETCH_WAYS * NCPU
        for s in range(SETS):
            self._ways(s, values, s * stride, out)

    def _ways(self, s: int, raw: bytes, base: int, out: dict[Hashable, Counts]) -> None:
        size, n = self.way.size, self.counters
        for cpu in range(NCPU):
            off = base + cpu * size * abi.SKETCH_WAYS
            for w in range(abi.SKETCH_WAYS):
                fields = self.way.unpack_from(raw, off + w * size)
                key = fields[0]
                if not key[16]:
                    continue
                counts = fields[1 : 1 + n]
                if self.ports:
                    addrs, hits = fields[-1 - 3 * S], fields[-3 * S : -2 * S]
                    port_hits, ports = fields[-2 * S : -S], fields[-S:]
                else:
                    addrs, hits, port_hits, ports = b"", (), (fields[4],), (fields[3],)
                old = self.prev.get((cpu, s, w))
                self.prev[(cpu, s, w)] = (key, counts, addrs, hits, port_hits, ports)
                if old is not None and old[0] == key and old[1] == counts and old[3] == hits and old[2] == addrs:
                    continue
                self.grown[key] = s
                same = old if old is not None and old[0] == key else None
                if hits:
                    for i, h in enumerate(hits):
                        if not h:
                            continue
                        addr = addrs[i * 16 : i * 16 + 16]
                        if same is not None and same[2][i * 16 : i * 16 + 16] == addr and h >= same[3][i]:
                            h -= same[3][i]
                            if not h:
                                continue
                        self.probes[(key, addr)] = self.probes.get((key, addr), 0) + h
                before = same[1] if same is not None else None
                delta = growth(before, counts)
                if self.ports and counts[2] + counts[3] == 1 and counts[1] <= 1 and (before is None or delta == counts):
                    delta = (delta[0], delta[1], 0, 0)
                if any(delta):
                    acc = out.get(key)
                    out[key] = delta if acc is None else tuple(a + d for a, d in zip(acc, delta, strict=True))

    def port_of(self, key: Hashable, addr: bytes | None) -> int:
        s = self.grown[key]
        took: dict[int, int] = {}
        total = 0
        for cpu in range(NCPU):
            for w in range(abi.SKETCH_WAYS):
                held = self.prev.get((cpu, s, w))
                if held is None or held[0] != key:
                    continue
                if addr is None:
                    total += held[1][0]
                    if held[4][0]:
                        took[held[5][0]] = took.get(held[5][0], 0) + held[4][0]
                    continue
                for i in range(S):
                    if held[3][i] and held[2][i * 16 : i * 16 + 16] == addr:
                        total += held[3][i]
                        if held[4][i]:
                            took[held[5][i]] = took.get(held[5][i], 0) + held[4][i]
        if not took:
            return MANY_PORTS
        port, most = max(took.items(), key=lambda item: (item[1], -item[0]))
        return port if most * 2 >= total else MANY_PORTS


def src_way(rng: random.Random, s: int) -> list[Any]:
    # key, syn, tcp, new_tcp_ports, new_udp_ports, two u64s, tgt_addr, tgt_hits, tgt_port_hits, tgt_port
    addrs = b"".join(addr_key(rng, rng.randrange(2))[:16] for _ in range(S))  # six destinations
    hits = [rng.randrange(3) for _ in range(S)]
    return [addr_key(rng, s), 1, 1, rng.randrange(2), 0, 0, 0, addrs, *hits, *hits, *(80 + i for i in range(S))]


def grow_src(w: list[Any]) -> None:
    w[1] += 1
    w[2] += 2
    w[3] += 1
    w[8] += 2  # tgt_hits[0]
    w[8 + S] += 1  # its port's
    w[8 + 2 * S] = 22


def dst_way(rng: random.Random, s: int) -> list[Any]:
    return [addr_key(rng, s), 1, 1, 80, 1, 0]  # key, syn, tcp, port, port_syns, last_seq


def grow_dst(w: list[Any]) -> None:
    w[1] += 2
    w[2] += 2
    w[4] += 1
    w[5] += 9


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("source", [True, False])
def test_sketch_gives_what_the_dict_of_ways_gave(monkeypatch: pytest.MonkeyPatch, seed: int, source: bool) -> None:
    imgs = Images(monkeypatch)
    way, counters = (abi.SRC_WAY, 4) if source else (abi.DST_WAY, 2)
    sketch = _Sketch(fake_dp(9), MapName.SRC_SKETCH, way, SETS, counters)
    ref = ReferenceSketch(way, counters)
    fresh, grow = (src_way, grow_src) if source else (dst_way, grow_dst)
    rng = random.Random(seed)
    for img in images(way, fresh, grow, seed, 30):
        imgs.by_fd[9] = img
        got: dict[Hashable, Counts] = {}
        want: dict[Hashable, Counts] = {}
        ref.probes, ref.grown = {}, {}
        ref.read(img, want)
        per_part = rng.choice([1, 3, SETS])  # a read in parts: each key whole in one part
        if rng.random() < 0.5:
            calls = [list(range(SETS))]  # many sets: one batch read
        else:
            calls = [[s, s + 1] for s in range(0, SETS, 2)]  # a few: set by set
        probes: dict[tuple[Hashable, bytes], int] = {}
        grown: dict[Hashable, int] = {}
        for sets in calls:
            for part in sketch.read_parts(sets, per_part):
                assert not part.keys() & got.keys() and not sketch.grown.keys() & grown.keys()
                got.update(part)
                probes.update(sketch.probes)
                grown.update(sketch.grown)
                # A part's ports, from what it left (the next part's sets are not read yet).
                for pair in sketch.probes:
                    assert sketch.port_of(*pair) == ref.port_of(*pair)
                if not source:
                    for key in part:
                        assert sketch.port_of(key, None) == ref.port_of(key, None)
        assert got == want and probes == ref.probes and grown == ref.grown
    assert len(sketch.prev) == SETS * NCPU * abi.SKETCH_WAYS * way.size  # as allocated
