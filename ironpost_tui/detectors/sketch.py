"""Read the detector sketches (SRC_SKETCH, DST_SKETCH) as per-address deltas since the last read.

Each read publishes TICK (bpf/ironpost_common.h): the time, and a new DIRTY generation for the
kernel to mark the sets packets touch; then it takes the other generations' marks, clears them and
reads only the sets they name, so an idle host costs a few syscalls.  (A packet that read the old
generation just before the switch may mark it after the read: the mark is not lost, it is read
with that generation's next turn.)  Each way holds one address's counters since it took the way;
they are diffed against what the way held at the last read (a way taken over starts again).

A source's probed ports are counted per tenure of a way: a way taken over starts with an empty port
bitmap, so a source that loses its way and takes one again counts its port again.  A spoofed flood
from more sources than the sketch has ways does exactly that: each address comes back again and
again, each time in a fresh way holding the one port of its one packet, and over a window a few of
them used to add up to a "port scan".  So a tenure first seen holding one packet and one probed port
(at most one TCP packet, one new port) is not credited that port.  A real scanner sends more than one
packet while it holds a way, and loses at most one port per way it loses; a spoofed source adds nothing.

A source way also holds its target slots (the destinations it probes most, bpf/sketch.h
count_target): each slot's probes are diffed the same way, per (source, destination), a slot that
changed hands or was cleared counting from zero.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import NamedTuple

from ironpost_tui.detectors.counters import Counts, growth
from ironpost_tui.kernel import abi, libbpf
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.kernel.datapath import Datapath


class SketchDeltas(NamedTuple):
    """What one read found, since the last."""

    sources: dict[Hashable, Counts]  # (syn, tcp, new_tcp_ports, new_udp_ports) per source key
    destinations: dict[Hashable, Counts]  # (syn, tcp) per destination key
    probes: dict[tuple[Hashable, bytes], int]  # per (source key, destination address): probes to it


_SLOTS = abi.TARGET_SLOTS


class _Sketch:
    def __init__(self, dp: Datapath, name: MapName, way: object, sets: int, counters: int) -> None:
        from struct import Struct

        assert isinstance(way, Struct)
        self.fd = dp.map_fd(name)
        self.way = way
        self.sets = sets
        self.counters = counters
        self.set_size = way.size * abi.SKETCH_WAYS  # a multiple of 8: per-CPU values need no padding
        self.ncpu = dp.possible_cpus
        self.ports = counters == 4  # (syn, tcp, new_tcp_ports, new_udp_ports): a source sketch
        # (cpu, set, way) -> (address key, counters, target slots' addresses, their probes) at the last read
        self.prev: dict[tuple[int, int, int], tuple[bytes, Counts, bytes, Counts]] = {}
        self.probes: dict[tuple[Hashable, bytes], int] = {}  # filled by read(), source sketch only

    def read(self, sets: list[int], out: dict[Hashable, Counts]) -> None:
        if len(sets) > self.sets // 8:  # many: one batch read of the whole map
            _keys, values, count = libbpf.map_lookup_batch(self.fd, 4, self.set_size * self.ncpu, self.sets)
            stride = self.set_size * self.ncpu
            for s in range(count):
                self._ways(s, values, s * stride, out)
            return
        for s in sets:
            raw = libbpf.map_lookup(self.fd, s.to_bytes(4, "little"), self.set_size * self.ncpu)
            if raw is not None:
                self._ways(s, raw, 0, out)

    def _ways(self, s: int, raw: bytes, base: int, out: dict[Hashable, Counts]) -> None:
        unpack = self.way.unpack_from
        size, n = self.way.size, self.counters
        prev = self.prev
        for cpu in range(self.ncpu):
            off = base + cpu * self.set_size
            for w in range(abi.SKETCH_WAYS):
                fields = unpack(raw, off + w * size)
                key = fields[0]
                if not key[16]:  # family 0: never used
                    continue
                counts = fields[1 : 1 + n]
                addrs, hits = (fields[-1 - _SLOTS], fields[-_SLOTS:]) if self.ports else (b"", ())
                slot = (cpu, s, w)
                old = prev.get(slot)
                prev[slot] = (key, counts, addrs, hits)
                if old is not None and old[0] == key and old[1] == counts and old[3] == hits and old[2] == addrs:
                    continue
                if hits:
                    self._probes(key, addrs, hits, old if old is not None and old[0] == key else None)
                before = old[1] if old is not None and old[0] == key else None
                delta = growth(before, counts)
                if self.ports and counts[2] + counts[3] == 1 and counts[1] <= 1 and (before is None or delta == counts):
                    # A tenure seen for the first time holding one packet's one port: not credited.
                    delta = (delta[0], delta[1], 0, 0)
                if any(delta):
                    acc = out.get(key)
                    out[key] = delta if acc is None else tuple(a + d for a, d in zip(acc, delta, strict=True))

    def _probes(self, key: bytes, addrs: bytes, hits: Counts, old: tuple[bytes, Counts, bytes, Counts] | None) -> None:
        """Each target slot's probes since the last read, credited to (source, the slot's address)."""
        probes = self.probes
        for i, h in enumerate(hits):
            if not h:
                continue
            addr = addrs[i * 16 : i * 16 + 16]
            if old is not None and old[2][i * 16 : i * 16 + 16] == addr and h >= old[3][i]:
                h -= old[3][i]  # the same tenure of the slot: what it grew by
                if not h:
                    continue
            pair = (key, addr)
            probes[pair] = probes.get(pair, 0) + h


class SketchReader:
    """Deltas per source (syn, tcp, new_tcp_ports, new_udp_ports), per destination (syn, tcp), and
    per (source, destination) the probes of the sources' target slots."""

    def __init__(self, dp: Datapath) -> None:
        cfg = dp.cfg
        self._dirty_fd = dp.map_fd(MapName.DIRTY)
        self._src = _Sketch(dp, MapName.SRC_SKETCH, abi.SRC_WAY, cfg.src_sketch_sets, 4)
        self._dst = _Sketch(dp, MapName.DST_SKETCH, abi.DST_WAY, cfg.dst_sketch_sets, 2)
        self._ncpu = dp.possible_cpus
        self._src_words = cfg.src_sketch_sets // 64
        self._dirty_size = (self._src_words + cfg.dst_sketch_sets // 64) * 8
        self._zero = bytes(self._dirty_size * self._ncpu)
        self._tick_fd = dp.map_fd(MapName.TICK)
        self._gen = 0

    def read(self, now_ns: int) -> SketchDeltas:
        """``now_ns``: CLOCK_MONOTONIC (time.monotonic_ns()), the kernel's clock."""
        self._gen += 1  # a count (a way marks DIRTY once per count), the entry is count % DIRTY_GENS
        libbpf.map_update(self._tick_fd, bytes(4), abi.TICK.pack(self._gen & 0xFFFFFFFF, now_ns))
        current = self._gen % abi.DIRTY_GENS
        src_words = [0] * self._src_words
        dst_words = [0] * (self._dirty_size // 8 - self._src_words)
        for g in range(abi.DIRTY_GENS):
            if g == current:
                continue
            gen = g.to_bytes(4, "little")
            raw = libbpf.map_lookup(self._dirty_fd, gen, self._dirty_size * self._ncpu)
            if raw is None or not any(raw):
                continue
            libbpf.map_update(self._dirty_fd, gen, self._zero)
            for cpu in range(self._ncpu):
                base = cpu * self._dirty_size
                for i in range(len(src_words)):
                    src_words[i] |= int.from_bytes(raw[base + i * 8 : base + i * 8 + 8], "little")
                base += self._src_words * 8
                for i in range(len(dst_words)):
                    dst_words[i] |= int.from_bytes(raw[base + i * 8 : base + i * 8 + 8], "little")
        sources: dict[Hashable, Counts] = {}
        targets: dict[Hashable, Counts] = {}
        self._src.probes = {}
        self._src.read(_bits(src_words), sources)
        self._dst.read(_bits(dst_words), targets)
        return SketchDeltas(sources, targets, self._src.probes)


def _bits(words: list[int]) -> list[int]:
    out = []
    for i, w in enumerate(words):
        while w:
            low = w & -w
            out.append(i * 64 + low.bit_length() - 1)
            w ^= low
    return out
