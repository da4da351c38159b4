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

from collections.abc import Hashable, Iterator, Mapping
from operator import add
from struct import Struct
from typing import Any, NamedTuple

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
    probe_ports: Mapping[tuple[Hashable, bytes], int]
    # ... and per key of ``destinations``, of its SYNs
    destination_ports: dict[Hashable, int]


_SLOTS = abi.TARGET_SLOTS
# A source way (abi.SRC_WAY) up to its target slots' probes: key, syn, tcp, new_tcp_ports, new_udp_ports, the
# slots' addresses (one bytes object), their probes.  Skipped: marked, last_seq, ports_since and the port
# bitmap between, the slots' port probes and ports after (port_of reads those from what the reader holds).
_FRESH_SRC = Struct(f"<20s4I{4 + 8 + 8 + abi.PORT_BITS // 8}x{_SLOTS * 16}s{_SLOTS}I")


def _one_packets_port(counts: Counts) -> bool:
    """A source way's (syn, tcp, new_tcp_ports, new_udp_ports) holding one port, probed by at most one TCP packet:
    what a spoofed source's one packet leaves, whose port a tenure first seen so is not credited (the module's doc).
    Both of _ways's paths ask it."""
    return counts[2] + counts[3] == 1 and counts[1] <= 1


# Source sets per part of a read (SketchReader.read_parts): 1,024 sets of 4 ways on 2 CPUs are 8,192
# ways, which a spoofed flood changes at every read; a part's objects are a sixteenth of them.
PART_SETS = 64
# (address key, counters, target slots' addresses, their probes, their ports' probes, their ports) at a read
_Way = tuple[bytes, Counts, bytes, Counts, Counts, Counts]


class _Sketch:
    """One sketch and what each of its ways held at the last read, in one buffer the size of the map's
    values, allocated here: a flood that fills the sketch costs no memory after the attach (a dict of
    the ways seen would grow with them).  Way (cpu, set, way)'s bytes are at the same offset in a batch
    read's values and in the buffer; a way never seen is zeros there (family 0, never a key)."""

    def __init__(self, dp: Datapath, name: MapName, way: Struct, sets: int, counters: int) -> None:
        self.fd = dp.map_fd(name)
        self.way = way
        self.sets = sets
        self.counters = counters
        self.set_size = way.size * abi.SKETCH_WAYS  # a multiple of 8: per-CPU values need no padding
        self.ncpu = dp.possible_cpus
        self.stride = self.set_size * self.ncpu  # one set's value: every CPU's ways
        self.ports = counters == 4  # (syn, tcp, new_tcp_ports, new_udp_ports): a source sketch
        self.prev = bytearray(self.stride * sets)
        self._prev = memoryview(self.prev)
        self._batch = libbpf.BatchReader(self.fd, 4, self.stride, sets)  # as prev: allocated here
        self.probes: dict[tuple[Hashable, bytes], int] = {}  # filled by read(), source sketch only
        self.grown: dict[Hashable, int] = {}  # key -> its set, for the keys that grew in this read
        self._addrs: dict[bytes, bytes] = {}  # the destinations of this part's probes (at most its pairs)
        # A source sketch's ways read first as _FRESH_SRC: a way a new key took is dealt with from that alone.
        self._fresh = _FRESH_SRC.unpack_from if self.ports else None

    def read_parts(self, sets: list[int], per_part: int) -> Iterator[dict[Hashable, Counts]]:
        """The deltas of the ways of ``sets``, ``per_part`` sets at a time: each part's deltas, with its
        ``probes`` and ``grown`` here until the next part.  A key's ways (every CPU's) are all in its
        set, so a key's deltas are whole in one part; a part's objects are freed before the next is
        made, so a spoofed flood that changes every way costs a part's worth of them at once."""
        if len(sets) > self.sets // 8:  # many: one batch read of the whole map
            count = self._batch.read()
            values: bytes | bytearray = self._batch.values
            todo = list(range(count))
        else:
            todo = sets
        for first in range(0, len(todo), per_part):
            out: dict[Hashable, Counts] = {}
            self.probes, self.grown, self._addrs = {}, {}, {}
            for s in todo[first : first + per_part]:
                if todo is sets:
                    raw = libbpf.map_lookup(self.fd, s.to_bytes(4, "little"), self.stride)
                    if raw is not None:
                        self._ways(s, raw, 0, out)
                else:
                    self._ways(s, values, s * self.stride, out)
            yield out

    def _held(self, fields: tuple[Any, ...]) -> _Way:
        """A way's fields as the reads compare them."""
        if self.ports:  # ..., tgt_addr, tgt_hits[SLOTS], tgt_port_hits[SLOTS], tgt_port[SLOTS]
            return (
                fields[0],
                fields[1 : 1 + self.counters],
                fields[-1 - 3 * _SLOTS],
                fields[-3 * _SLOTS : -2 * _SLOTS],
                fields[-2 * _SLOTS : -_SLOTS],
                fields[-_SLOTS:],
            )
        # ..., port, port_syns, last_seq: one "slot", the way's own address, of its SYNs
        return fields[0], fields[1 : 1 + self.counters], b"", (), (fields[4],), (fields[3],)

    def _changed_cpus_ways(self, raw: bytes | bytearray, base: int, pbase: int) -> list[int]:
        """The ways (cpu * SKETCH_WAYS + way, as a set's value lays them out) of the CPUs whose ways of the set
        at ``base`` in ``raw`` (``pbase`` in prev) changed: a compare for the set, then one per CPU (a set a
        whole read finds clean, or whose packets reached a few of the CPUs, is not compared way by way)."""
        pv, set_size, ways = self._prev, self.set_size, abi.SKETCH_WAYS
        if raw.startswith(pv[pbase : pbase + self.stride], base):
            return []
        return [
            i
            for c in range(self.ncpu)
            if not raw.startswith(pv[pbase + c * set_size : pbase + (c + 1) * set_size], base + c * set_size)
            for i in range(c * ways, (c + 1) * ways)
        ]

    def _ways(self, s: int, raw: bytes | bytearray, base: int, out: dict[Hashable, Counts]) -> None:
        unpack = self.way.unpack_from
        size = self.way.size
        prev, pv, rv = self.prev, self._prev, memoryview(raw)
        pbase = s * self.stride
        fresh, grown, probes, seen = self._fresh, self.grown, self.probes, self._addrs
        for i in self._changed_cpus_ways(raw, base, pbase):
            off = base + i * size
            poff = pbase + i * size
            if raw.startswith(pv[poff : poff + size], off):  # unchanged: skipped unparsed
                continue
            if fresh is not None:
                held = fresh(raw, off)
                key = held[0]
                if not key[16]:  # family 0: never used
                    continue
                if not prev.startswith(key, poff):
                    # A key the last read did not find in this way: a tenure of its own, nothing to diff
                    # against (a spoofed flood's every way).  What the path below does with no ``old``, in
                    # fewer steps: no full unpack, no _held, no call per way (bench/read_cost.py times it).
                    pv[poff : poff + size] = rv[off : off + size]
                    grown[key] = s
                    addrs = held[5]
                    for j in range(_SLOTS):
                        h = held[6 + j]
                        if h:
                            addr = addrs[j * 16 : j * 16 + 16]
                            pair = (key, seen.setdefault(addr, addr))
                            probes[pair] = probes.get(pair, 0) + h
                    delta = held[1:5]
                    if _one_packets_port(delta):  # a new tenure's first sight: its port not credited
                        delta = (delta[0], delta[1], 0, 0)
                    if any(delta):
                        acc = out.get(key)
                        out[key] = delta if acc is None else tuple(map(add, acc, delta))
                    continue
            cur = self._held(unpack(raw, off))
            key = cur[0]
            if not key[16]:  # family 0: never used
                continue
            # The same key as at the last read: what it held then (decoded only now it is needed).
            old = self._held(unpack(prev, poff)) if prev.startswith(key, poff) else None
            pv[poff : poff + size] = rv[off : off + size]
            _key, counts, addrs, hits, _port_hits, _ports = cur
            if old is not None and old[1] == counts and old[3] == hits and old[2] == addrs:
                continue
            self.grown[key] = s
            if hits:
                self._probes(key, addrs, hits, old)
            before = old[1] if old is not None else None
            delta = growth(before, counts)
            if self.ports and _one_packets_port(counts) and (before is None or delta == counts):
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
            addr = self._addrs.setdefault(addr, addr)  # one object per destination, not per pair
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
        size = self.way.size
        for i in range(self.ncpu * abi.SKETCH_WAYS):
            off = s * self.stride + i * size
            if not self.prev.startswith(key, off):  # type: ignore[arg-type]
                continue
            held = self._held(self.way.unpack_from(self.prev, off))
            if addr is None:
                total += held[1][0]  # syn
                if held[4][0]:
                    took[held[5][0]] = took.get(held[5][0], 0) + held[4][0]
                continue
            for j in range(_SLOTS):
                if held[3][j] and held[2][j * 16 : j * 16 + 16] == addr:
                    total += held[3][j]
                    if held[4][j]:
                        took[held[5][j]] = took.get(held[5][j], 0) + held[4][j]
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
        self._part = 0  # parts read: a part's probe ports are found from what it left

    def read(self, now_ns: int) -> SketchDeltas:
        """One read, whole.  ``now_ns``: CLOCK_MONOTONIC (time.monotonic_ns()), the kernel's clock.
        The read's ``probe_ports`` are valid until the next read."""
        (whole,) = self.read_parts(now_ns, max(1, self._src.sets))
        return whole

    def read_parts(self, now_ns: int, per_part: int = PART_SETS) -> Iterator[SketchDeltas]:
        """One read, ``per_part`` source sets at a time (_Sketch.read_parts): the destinations come
        whole with the first part; each part's ``probe_ports`` are valid until the next part."""
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
        targets: dict[Hashable, Counts] = {}
        for part in self._dst.read_parts(_bits(dst_words), self._dst.sets):  # one part: the sketch is small
            targets = part
        destination_ports = {key: self._dst.port_of(key, None) for key in targets}
        made = False
        for sources in self._src.read_parts(_bits(src_words), per_part):
            self._part += 1
            probes = self._src.probes
            yield SketchDeltas(sources, targets, probes, _ProbePorts(self, probes), destination_ports)
            targets, destination_ports, made = {}, {}, True
            del sources, probes  # the part freed before the next is made
        if not made:
            yield SketchDeltas({}, targets, {}, {}, destination_ports)


class _ProbePorts(Mapping[tuple[Hashable, bytes], int]):
    """Each probed pair's port (_Sketch.port_of), found when it is asked for: a spoofed flood probes
    from thousands of sources a read, and only the pairs of sources a detector watches are asked for.
    Valid until the reader's next part (it reads the ways this part left)."""

    def __init__(self, reader: SketchReader, probes: dict[tuple[Hashable, bytes], int]) -> None:
        self._reader = reader
        self._part = reader._part
        self._probes = probes
        self._found: dict[tuple[Hashable, bytes], int] = {}  # each detector asks for its watched pairs

    def __getitem__(self, pair: tuple[Hashable, bytes]) -> int:
        port = self._found.get(pair)
        if port is not None:
            return port
        if pair not in self._probes:
            raise KeyError(pair)
        if self._reader._part != self._part:
            raise RuntimeError("a sketch read's ports asked for after its next part was read")
        port = self._found[pair] = self._reader._src.port_of(pair[0], pair[1])
        return port

    def __iter__(self) -> Iterator[tuple[Hashable, bytes]]:
        return iter(self._probes)

    def __len__(self) -> int:
        return len(self._probes)


def _bits(words: list[int]) -> list[int]:
    out = []
    for i, w in enumerate(words):
        while w:
            low = w & -w
            out.append(i * 64 + low.bit_length() - 1)
            w ^= low
    return out
