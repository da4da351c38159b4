"""ADDR_FILTER, PORT_FILTER and CONFIG's masks: what lets the XDP program skip the rule maps.

A packet from a source no rule can concern must not pay a hash and a trie lookup per rule map and
one per multi-field shape (bpf/ironpost_common.h says how the filters are laid out).  Each installed
rule contributes "atoms" (a bit of a bucket, of a port, of a protocol, a flag); atoms are reference
counted, and a word is written when one of its bits appears or goes.  The caller orders the writes
so the filters are always a superset of the rule maps: ``add`` before the rule's entry is written,
``remove`` after it is deleted.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Literal

from ironpost_tui.kernel import abi
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.kernel.datapath import Datapath
from ironpost_tui.model import IPNetwork

# Addresses are bucketed by their /24 (IPv4) or /48 (IPv6); a prefix up to 8 bits shorter sets
# each bucket inside it (at most 256); a shorter one is "wild".
GRANULE = {4: abi.FILTER_GRANULE4, 6: abi.FILTER_GRANULE6}
MAX_SPREAD = 8
# The lengths PREFIX4H/PREFIX6H are probed at (bpf/ironpost_common.h): a prefix is filed under the longest
# not longer than itself, so every prefix ADDR_FILTER lists (not wild) has one, and a packet costs at
# most PREFIXH_PROBES probes whatever lengths the rules use.
PROBE_LENGTHS = {4: (16, 20, 24, 28), 6: (40, 48, 56, 64)}
assert all(
    len(ladder) <= abi.PREFIXH_PROBES and ladder[0] == GRANULE[v] - MAX_SPREAD for v, ladder in PROBE_LENGTHS.items()
)


def probe_length(net: IPNetwork) -> int | None:
    """The length ``net`` is probed at in PREFIX4H/PREFIX6H; None for a wild prefix (none)."""
    fits = [p for p in PROBE_LENGTHS[net.version] if p <= net.prefixlen]
    return fits[-1] if fits else None


Atom = tuple[object, ...]


def filter_bucket(addr16: bytes, family: int) -> int:
    """The ADDR_FILTER bucket of an address (filter_bucket() in bpf/rule_match.h)."""
    if family == abi.FAMILY_V4:
        x = int.from_bytes(addr16[: abi.FILTER_GRANULE4 // 8], "big")
    else:
        mix = int.from_bytes(addr16[4 : abi.FILTER_GRANULE6 // 8], "big") * abi.HASH_MIX32
        x = int.from_bytes(addr16[:4], "big") ^ (mix & abi.U32_MASK) ^ abi.HASH_SALT32
    return abi.hash_32(x, abi.ADDR_FILTER_BITS)


def net_buckets(net: IPNetwork) -> list[int] | None:
    """The buckets a prefix overlaps, or None when it is too short to list (wild)."""
    granule = GRANULE[net.version]
    if net.prefixlen < granule - MAX_SPREAD:
        return None
    family = abi.FAMILY_V4 if net.version == 4 else abi.FAMILY_V6
    width = 4 if net.version == 4 else 16
    base = int(net.network_address)
    step = 1 << (width * 8 - granule)
    count = 1 << max(0, granule - net.prefixlen)
    return [filter_bucket((base + i * step).to_bytes(width, "big").ljust(16, b"\0"), family) for i in range(count)]


def source_atoms(map_name: MapName | Literal["ALLOW"], net: IPNetwork) -> list[Atom]:
    """Atoms of a source-only rule (EXACT4, BLOCKLIST, PREFIX4H, PREFIX6H, SRC4, SRC6) or, with map_name ALLOW,
    a protected prefix.  A hashed prefix (PREFIX4H, PREFIX6H: never a wild one) sets the bit of its probe
    length (FILTER_PREFIXH_SHIFT + its index in PROBE_LENGTHS) and needs that length listed in CONFIG:
    an "l" atom, (family index, probe index, length)."""
    v4 = net.version == 4
    if map_name in (MapName.BLOCKLIST, MapName.EXACT4):
        bit = abi.FILTER_EXACT if map_name == MapName.BLOCKLIST else abi.FILTER_EXACT4
        return [("a", filter_bucket(net.network_address.packed.ljust(16, b"\0"), abi.FAMILY_V4), bit)]
    buckets = net_buckets(net)
    if map_name in (MapName.PREFIX4H, MapName.PREFIX6H):
        assert buckets is not None, "a wild prefix is never hashed"
        probe = probe_length(net)
        assert probe is not None
        i = PROBE_LENGTHS[net.version].index(probe)
        bit = 1 << (abi.FILTER_PREFIXH_SHIFT + i)
        return [("l", 0 if v4 else 1, i, probe), *[("a", b, bit) for b in buckets]]
    bit = abi.FILTER_ALLOW if map_name == "ALLOW" else abi.FILTER_PREFIX
    if buckets is None:
        if map_name == "ALLOW":
            return [("f", abi.CFG_WILD_ALLOW4 if v4 else abi.CFG_WILD_ALLOW6)]
        return [("f", abi.CFG_WILD_PREFIX4 if v4 else abi.CFG_WILD_PREFIX6)]
    return [("a", b, bit) for b in buckets]


def shape_atoms(
    shape: int,
    family: int,
    src: IPNetwork | None,
    dst: IPNetwork | None,
    port: int | None,
    proto: int | None,
    inline: bool = True,
) -> list[Atom]:
    """Atoms of a multi-field rule in shape slot ``shape``; ``inline``: its key is in MATCHH (matchh.py), else
    in MATCH alone, which its shape's bit of CONFIG.match_spill then has the program look up."""
    atoms: list[Atom] = [] if inline else [("ms", shape)]
    for net, shift, wild in ((src, abi.FILTER_SRC_SHIFT, "sw"), (dst, abi.FILTER_DST_SHIFT, "dw")):
        buckets = net_buckets(net) if net is not None else None
        if buckets is None:
            atoms.append((wild, shape))
        else:
            atoms += [("a", b, 1 << (shift + shape)) for b in buckets]
    atoms.append(("p", port, shape) if port is not None else ("pw", shape))
    families = {abi.FAMILY_V4: (0,), abi.FAMILY_V6: (1,)}.get(family, (0, 1))
    atoms += [("pr", f, -1 if proto is None else proto, shape) for f in families]
    if port is not None and proto is not None and 1 in families:
        # IPv6 of unknown protocol hides its ports: FRAG_MATCH has a key for it (fragments.py).
        atoms.append(("pr", 1, abi.PROTO_UNKNOWN, shape))
    return atoms


class Prefilter:
    """The filter maps and CONFIG of one Datapath, kept equal to the atoms in force."""

    def __init__(self, dp: Datapath) -> None:
        self._dp = dp
        self._refs: Counter[Atom] = Counter()
        self._deferred: list[Atom] | None = None  # deferred(): atoms counted in, their words not yet written
        self._deferring = 0  # the thread in deferred(): another thread's adds are written at once
        self._addr: dict[int, int] = {}
        self._ports: dict[int, int] = {}
        self._proto = bytearray(512)
        self._flags = 0
        self._wild = {"sw": 0, "dw": 0, "pw": 0, "ms": 0}  # "ms": CONFIG.match_spill
        self._n_shapes = 0
        self._match_rank = abi.NO_MATCH
        # CONFIG.plen4/plen6: probe length i of PROBE_LENGTHS in slot i while a hashed prefix uses it.
        self._plens = [bytearray(abi.PREFIXH_PROBES), bytearray(abi.PREFIXH_PROBES)]
        config = dp.read_config_raw()
        self._seed = config[3]
        if dp.reused_maps:
            # Pinned maps already in force: start from what they hold, so adopting their rules one
            # by one never clears a bit another still needs; publish() then settles on the atoms.
            self._n_shapes, self._flags, self._match_rank = config[0], config[2], config[4]
            self._wild = {"sw": config[5], "dw": config[6], "pw": config[7], "ms": config[11]}
            self._proto = bytearray(config[8])
            self._plens = [bytearray(config[9]), bytearray(config[10])]
            self._addr = _words(dp, MapName.ADDR_FILTER)
            self._ports = _words(dp, MapName.PORT_FILTER)

    # --- the caller's side ---------------------------------------------------------
    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Within, for writes the Datapath keeps (writes_batched: maps no program reads yet, their order not
        kept): the words and CONFIG that add() and remove() change are written once, when the block ends
        (also when it ends in an error, so the filters still cover every atom counted in), not once per
        call: a word is written as the counts say when it is written (_apply), whatever came between."""
        if self._deferred is not None:
            yield
            return
        self._deferred, self._deferring = [], threading.get_ident()
        try:
            yield
        finally:
            waiting, self._deferred, self._deferring = self._deferred, None, 0
            self._apply(waiting)

    def add(self, atoms: Iterable[Atom]) -> None:
        """Count ``atoms`` in; the words that gain a bit are written now (before the rule), or at the end
        of deferred()."""
        new = []
        for atom in atoms:
            if self._refs[atom] == 0:
                new.append(atom)
            self._refs[atom] += 1
        self._write(new)

    def _write(self, changed: list[Atom]) -> None:
        """The words and CONFIG of ``changed`` written now, or at the end of deferred() in its thread."""
        if self._deferred is not None and self._deferring == threading.get_ident():
            self._deferred += changed
        else:
            self._apply(changed)

    def remove(self, atoms: Iterable[Atom]) -> None:
        """Count ``atoms`` out (after the rule's entry was deleted); words that lose a bit are written now, or
        at the end of deferred()."""
        gone = []
        for atom in atoms:
            n = self._refs[atom] - 1
            if n <= 0:
                del self._refs[atom]
                gone.append(atom)
            else:
                self._refs[atom] = n
        self._write(gone)

    def lower_match_rank(self, rank: int) -> None:
        """Before a MATCH entry of ``rank`` is written."""
        if rank < self._match_rank:
            self._match_rank = rank
            self._write_config()

    def set_match_rank(self, rank: int) -> None:
        """The best rank MATCH holds, after a change (it may go up only once the entry is gone)."""
        if rank != self._match_rank:
            self._match_rank = rank
            self._write_config()

    def set_n_shapes(self, n: int) -> None:
        if n != self._n_shapes:
            self._n_shapes = n
            self._write_config()

    def probed_lengths(self, family_index: int) -> bytes:
        """CONFIG.plen4 (0) or plen6 (1) as written: the lengths the program probes, 0 for a free slot."""
        return bytes(self._plens[family_index])

    def publish(self) -> None:
        """Make the maps hold exactly what the atoms say (after adopting pinned maps: bits left by
        rules that are gone are cleared)."""
        addr: dict[int, int] = {}
        ports: dict[int, int] = {}
        self._flags, self._wild, self._proto = 0, {"sw": 0, "dw": 0, "pw": 0, "ms": 0}, bytearray(512)
        self._plens = [bytearray(abi.PREFIXH_PROBES), bytearray(abi.PREFIXH_PROBES)]
        for atom in self._refs:
            kind = atom[0]
            if kind in ("a", "p"):
                name, idx, mask = _word_bit(atom)
                words = addr if name == MapName.ADDR_FILTER else ports
                words[idx] = words.get(idx, 0) | mask
            elif kind == "f":
                self._flags |= int(atom[1])  # type: ignore[call-overload]
            elif kind == "l":
                self._set_length(atom, True)
            elif kind in self._wild:
                self._wild[str(kind)] |= 1 << int(atom[1])  # type: ignore[call-overload]
            else:
                fam, proto, shape = int(atom[1]), int(atom[2]), int(atom[3])  # type: ignore[call-overload]
                for p in _protocols(proto):
                    self._proto[fam * 256 + p] |= 1 << shape
        self._write_config()
        for name, old, new in ((MapName.ADDR_FILTER, self._addr, addr), (MapName.PORT_FILTER, self._ports, ports)):
            for idx in set(old) | set(new):
                if old.get(idx, 0) != new.get(idx, 0):
                    self._dp.map_update(name, idx.to_bytes(4, "little"), new.get(idx, 0).to_bytes(8, "little"))
        self._addr, self._ports = addr, ports

    # --- internals -----------------------------------------------------------------
    def _apply(self, changed: list[Atom]) -> None:
        # word index -> (bits to set, bits to clear), per map
        words: dict[MapName, dict[int, list[int]]] = {MapName.ADDR_FILTER: {}, MapName.PORT_FILTER: {}}
        config = False
        for atom in changed:
            kind = atom[0]
            on = self._refs.get(atom, 0) > 0
            if kind in ("a", "p"):
                name, idx, mask = _word_bit(atom)
                words[name].setdefault(idx, [0, 0])[0 if on else 1] |= mask
            elif kind == "f":
                self._flags = _set(self._flags, int(atom[1]), on)  # type: ignore[call-overload]
                config = True
            elif kind == "l":
                self._set_length(atom, on)
                config = True
            elif kind in self._wild:
                self._wild[str(kind)] = _set(self._wild[str(kind)], 1 << int(atom[1]), on)  # type: ignore[call-overload]
                config = True
            else:  # "pr": (family index, protocol or -1 for all, shape)
                fam, proto, shape = int(atom[1]), int(atom[2]), int(atom[3])  # type: ignore[call-overload]
                for p in _protocols(proto):
                    need = self._refs.get(("pr", fam, p, shape), 0) > 0 or self._refs.get(("pr", fam, -1, shape), 0) > 0
                    self._proto[fam * 256 + p] = _set(self._proto[fam * 256 + p], 1 << shape, need)
                config = True
        for name, changes in words.items():
            cache = self._addr if name == MapName.ADDR_FILTER else self._ports
            for idx, (set_mask, clear_mask) in changes.items():
                # Read-modify-write: bits this table does not own (a tool that wrote BLOCKLIST and
                # set its bit, as the ABI asks) stay.
                key = idx.to_bytes(4, "little")
                word = int.from_bytes(self._dp.map_lookup(name, key) or bytes(8), "little")
                word = (word | set_mask) & ~clear_mask
                self._dp.map_update(name, key, word.to_bytes(8, "little"))
                cached = (cache.get(idx, 0) | set_mask) & ~clear_mask
                if cached:
                    cache[idx] = cached
                else:
                    cache.pop(idx, None)
        if config:
            self._write_config()

    def _set_length(self, atom: Atom, on: bool) -> None:
        """List a probe length ("l" atom) in its CONFIG slot (its index in PROBE_LENGTHS), or clear it."""
        fam, i, plen = (int(x) for x in atom[1:])  # type: ignore[call-overload]
        self._plens[fam][i] = plen if on else 0

    def _write_config(self) -> None:
        self._dp.write_config_raw(
            abi.CONFIG.pack(
                self._n_shapes,
                abi.IRONPOST_ABI_VERSION,
                self._flags,
                self._seed,
                self._match_rank,
                self._wild["sw"],
                self._wild["dw"],
                self._wild["pw"],
                bytes(self._proto),
                bytes(self._plens[0]),
                bytes(self._plens[1]),
                self._wild["ms"],
            )
        )


def _word_bit(atom: Atom) -> tuple[MapName, int, int]:
    """The filter map, word index and bit of an "a" (bucket, bit) or "p" (port, shape) atom."""
    if atom[0] == "a":
        bucket, bit = int(atom[1]), int(atom[2])  # type: ignore[call-overload]
        return MapName.ADDR_FILTER, bucket >> 1, bit << ((bucket & 1) * 32)
    port, shape = int(atom[1]), int(atom[2])  # type: ignore[call-overload]
    return MapName.PORT_FILTER, port >> 3, 1 << ((port & 7) * 8 + shape)


def _protocols(proto: int) -> range | tuple[int]:
    """The protocols a "pr" atom covers: one, or all 256 (-1: a shape without a protocol field)."""
    return range(256) if proto < 0 else (proto,)


def _words(dp: Datapath, name: MapName) -> dict[int, int]:
    """The non-zero words of a filter map, by index."""
    keys, values, count = dp.map_dump(name)
    out = {}
    for i in range(count):
        word = int.from_bytes(values[i * 8 : i * 8 + 8], "little")
        if word:
            out[int.from_bytes(keys[i * 4 : i * 4 + 4], "little")] = word
    return out


def _set(word: int, bit: int, on: bool) -> int:
    return word | bit if on else word & ~bit
