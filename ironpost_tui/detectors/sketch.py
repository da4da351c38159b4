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
changed hands or was cleared counting from zero.  Each slot (and each destination way, for its SYNs)
also keeps a port, with the probes to it since it became the slot's port (bpf/sketch.h keep_port):
summed over the CPUs, a port holding at least half the probes took at least half of them, and that
port is the one the alert names; otherwise the probes went to many ports (MANY_PORTS).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import NamedTuple

from ironpost_tui.detectors.counters import Counts, growth
from ironpost_tui.detectors.targets import MANY_PORTS
from ironpost_tui.kernel import abi, libbpf
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.kernel.datapath import Datapath


class SketchDeltas(NamedTuple):
    """What one read found, since the last."""

    sources: dict[Hashable, Counts]  # (syn, tcp, new_tcp_ports, new_udp_ports) per source key
    destinations: dict[Hashable, Counts]  # (syn, tcp) per destination key
    probes: dict[tuple[Hashable, bytes], int]  # per (source key, destination address): probes to it
    # The port that took at least half the probes (MANY_PORTS: none did), per pair of ``probes``...
    probe_ports: dict[tuple[Hashable, bytes], int]
    # ... and per key of ``destinations``, of its SYNs
    destination_ports: dict[Hashable, int]


_SLOTS = abi.TARGET_SLOTS
# (address key, counters, target slots' addresses, their probes, their ports' probes, their ports) at a read
_Way = tuple[bytes, Counts, bytes, Counts, Counts, Counts]


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
        # (cpu, set, way) -> what it held at the last read
        self.prev: dict[tuple[int, int, int], _Way] = {}
        self.probes: dict[tuple[Hashable, bytes], int] = {}  # filled by read(), source sketch only
        self.grown: dict[Hashable, int] = {}  # key -> its set, for the keys that grew in this read

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
                if self.ports:  # ..., tgt_addr, tgt_hits[SLOTS], tgt_port_hits[SLOTS], tgt_port[SLOTS]
                    addrs, hits = fields[-1 - 3 * _SLOTS], fields[-3 * _SLOTS : -2 * _SLOTS]
                    port_hits, ports = fields[-2 * _SLOTS : -_SLOTS], fields[-_SLOTS:]
                else:  # ..., port, port_syns, last_seq: one "slot", the way's own address, of its SYNs
                    addrs, hits, port_hits, ports = b"", (), (fields[4],), (fields[3],)
                slot = (cpu, s, w)
                old = prev.get(slot)
                prev[slot] = (key, counts, addrs, hits, port_hits, ports)
                if old is not None and old[0] == key and old[1] == counts and old[3] == hits and old[2] == addrs:
                    continue
                self.grown[key] = s
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

    def _probes(self, key: bytes, addrs: bytes, hits: Counts, old: _Way | None) -> None:
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

    def port_of(self, key: Hashable, addr: bytes | None) -> int:
        """The port that took at least half the probes from ``key`` to ``addr`` (a source sketch), or
        of the SYNs to ``key`` (``addr`` None: a destination sketch), as the ways of every CPU hold
        them at this read; MANY_PORTS when none did.  ``key`` grew in this read (its set was read)."""
        s = self.grown[key]
        took: dict[int, int] = {}  # port -> its probes (as the ways count them: at most what it took)
        total = 0
        for cpu in range(self.ncpu):
            for w in range(abi.SKETCH_WAYS):
                held = self.prev.get((cpu, s, w))
                if held is None or held[0] != key:
                    continue
                if addr is None:
                    total += held[1][0]  # syn
                    if held[4][0]:
                        took[held[5][0]] = took.get(held[5][0], 0) + held[4][0]
                    continue
                for i in range(_SLOTS):
                    if held[3][i] and held[2][i * 16 : i * 16 + 16] == addr:
                        total += held[3][i]
                        if held[4][i]:
                            took[held[5][i]] = took.get(held[5][i], 0) + held[4][i]
        if not took:
            return MANY_PORTS
        port, most = max(took.items(), key=lambda item: (item[1], -item[0]))
        return port if most * 2 >= total else MANY_PORTS


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
        self._src.grown = {}
        self._dst.grown = {}
        self._src.read(_bits(src_words), sources)
        self._dst.read(_bits(dst_words), targets)
        probes = self._src.probes
        probe_ports = {pair: self._src.port_of(pair[0], pair[1]) for pair in probes}
        destination_ports = {key: self._dst.port_of(key, None) for key in targets}
        return SketchDeltas(sources, targets, probes, probe_ports, destination_ports)


def _bits(words: list[int]) -> list[int]:
    out = []
    for i, w in enumerate(words):
        while w:
            low = w & -w
            out.append(i * 64 + low.bit_length() - 1)
            w ^= low
    return out
