"""PREFIX4H and PREFIX6H: the source prefix rules again, hashed, in buckets the XDP program reads inline.

SRC4 and SRC6 (LPM tries, the seed's) stay the record of every source prefix rule; what the program
looks up for most of them is PREFIX4H/PREFIX6H, arrays of 8-way buckets keyed by the prefix cut to its
probe length (prefilter.probe_length), probed once per probe length in use (bpf/ironpost_common.h says
why and how).  This module keeps their ways, with EXACT4's write order (exact4.py):

- a new way: prefix, length and slot first (rank1 still 0, the way not in use), then rank1;
- a way retired: rank1 set to 0 only;
- a new rule on a prefix that has a way takes a free way before the old one is retired.

A prefix that cannot be placed (``has_room`` says so before: a wild length, a full bucket) stays in
its trie alone, which the program then looks up (ADDR_FILTER's FILTER_PREFIX).  Each hashed prefix's
rule also holds an "l" atom in the prefilter (prefilter.py), which lists its probe length in CONFIG
before the way is written and until after it is retired.
"""

from __future__ import annotations

import struct
import sys

from ironpost_tui.kernel import abi
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.kernel.datapath import Datapath
from ironpost_tui.model import IPNetwork
from ironpost_tui.rules.placement import prefix_mask
from ironpost_tui.rules.prefilter import probe_length

WAYS = abi.PREFIXH_WAYS
_U64 = (1 << 64) - 1

Way = tuple[bytes, int]  # (the prefix's network-order bytes, its length)


def _mask(width: int, plen: int) -> bytes:
    """The network-order mask of a prefix of ``plen`` bits over ``width`` bytes."""
    return prefix_mask(plen + 128 - width * 8)[16 - width :] if plen else bytes(width)


def map_of(net: IPNetwork) -> MapName:
    return MapName.PREFIX4H if net.version == 4 else MapName.PREFIX6H


def bucket_of(prefix: bytes, plen: int, seed: int, bits: int) -> int:
    """The bucket of a prefix cut to its probe length ``plen`` (4 or 16 network-order bytes)
    (match_prefix4h()/match_prefix6h() in bpf/rule_match.h)."""
    if len(prefix) == 4:
        fold = int.from_bytes(prefix, sys.byteorder)
    else:
        h0, h1 = int.from_bytes(prefix[:8], sys.byteorder), int.from_bytes(prefix[8:], sys.byteorder)
        x = (h0 ^ (h1 * abi.HASH_MUL64)) & _U64
        fold = (x & abi.U32_MASK) ^ (x >> 32)
    return abi.hash_32(fold ^ seed ^ ((plen * abi.HASH_MIX32) & abi.U32_MASK), bits)


class _Bucket:
    """One bucket as the kernel holds it: ways of (prefix, length), rank1 and slot."""

    __slots__ = ("plen", "prefix", "rank1", "slot")

    def __init__(self, width: int) -> None:
        self.prefix = [bytes(width)] * WAYS
        self.plen = [0] * WAYS
        self.rank1 = [0] * WAYS
        self.slot = [0] * WAYS

    def copy(self) -> _Bucket:
        out = _Bucket(len(self.prefix[0]))
        out.prefix, out.plen, out.rank1, out.slot = (
            list(self.prefix),
            list(self.plen),
            list(self.rank1),
            list(self.slot),
        )
        return out

    def find(self, way: Way) -> int | None:
        for i in range(WAYS):
            if self.rank1[i] and self.prefix[i] == way[0] and self.plen[i] == way[1]:
                return i
        return None

    def free(self) -> int | None:
        return next((i for i in range(WAYS) if not self.rank1[i]), None)

    def live(self) -> list[Way]:
        return [(self.prefix[i], self.plen[i]) for i in range(WAYS) if self.rank1[i]]

    def pack(self) -> bytes:
        width = len(self.prefix[0])
        st = abi.PREFIX4H_BUCKET if width == 4 else abi.PREFIX6H_BUCKET
        masks = b"".join(_mask(width, p) for p in self.plen)
        return st.pack(b"".join(self.prefix), masks, *self.rank1, *self.slot, *self.plen)

    @classmethod
    def unpack(cls, raw: bytes, width: int) -> _Bucket:
        out = cls(width)
        f = (abi.PREFIX4H_BUCKET if width == 4 else abi.PREFIX6H_BUCKET).unpack(raw)
        out.prefix = [f[0][i * width : (i + 1) * width] for i in range(WAYS)]
        rest = f[2:]
        out.rank1, out.slot, out.plen = list(rest[:WAYS]), list(rest[WAYS : 2 * WAYS]), list(rest[2 * WAYS :])
        return out


_BUCKET_STRUCT: dict[MapName, struct.Struct] = {
    MapName.PREFIX4H: abi.PREFIX4H_BUCKET,
    MapName.PREFIX6H: abi.PREFIX6H_BUCKET,
}


class PrefixH:
    """PREFIX4H and PREFIX6H of one Datapath, mirrored here."""

    def __init__(self, dp: Datapath) -> None:
        self._dp = dp
        self._bits = dp.cfg.prefixh_buckets.bit_length() - 1
        self._seed = int(dp.read_config_raw()[3])
        self._buckets: dict[MapName, dict[int, _Bucket]] = {MapName.PREFIX4H: {}, MapName.PREFIX6H: {}}
        if dp.reused_maps:  # pinned maps already in force: start from what they hold
            for name, st in _BUCKET_STRUCT.items():
                keys, values, count = dp.map_dump(name)
                width = 4 if name == MapName.PREFIX4H else 16
                for i in range(count):
                    bk = _Bucket.unpack(values[i * st.size : (i + 1) * st.size], width)
                    if any(bk.rank1):
                        self._adopt(name, int.from_bytes(keys[i * 4 : i * 4 + 4], "little"), bk)

    def _adopt(self, name: MapName, b: int, bk: _Bucket) -> None:
        """Take a bucket as the kernel holds it; a second live way of one prefix (a stop between put's
        writes) is retired."""
        seen: set[Way] = set()
        dup = False
        for i in range(WAYS):
            if bk.rank1[i]:
                way = (bk.prefix[i], bk.plen[i])
                if way in seen:
                    bk.rank1[i] = 0
                    dup = True
                seen.add(way)
        if dup:
            self._commit(name, b, bk)
        else:
            self._remember(name, b, bk)

    # --- reading -----------------------------------------------------------------
    def get(self, net: IPNetwork) -> tuple[int, int] | None:
        """(rank, slot) of ``net``'s way, or None when it has none."""
        name, b, way = self._where(net)
        bk = self._buckets[name].get(b)
        i = bk.find(way) if bk else None
        if bk is None or i is None:
            return None
        return bk.rank1[i] - 1, bk.slot[i]

    def has_room(self, net: IPNetwork, slot: int) -> bool:
        """Whether ``put(net, rank, slot)`` will place it: not wild, and a way of ``net`` credits
        ``slot`` already or its bucket has a free way."""
        if probe_length(net) is None:
            return False
        name, b, way = self._where(net)
        bk = self._buckets[name].get(b)
        if bk is None:
            return True
        old = bk.find(way)
        return (old is not None and bk.slot[old] == slot) or bk.free() is not None

    # --- changing ------------------------------------------------------------------
    def put(self, net: IPNetwork, rank: int, slot: int) -> None:
        """Make ``net`` match with ``rank``, crediting ``slot``.  The caller checked has_room and holds
        the length's "l" atom in the prefilter."""
        name, b, way = self._where(net)
        cur = self._buckets[name].get(b)
        bk = cur.copy() if cur else _Bucket(len(way[0]))
        old = bk.find(way)
        if old is not None and bk.slot[old] == slot:
            if bk.rank1[old] == rank + 1:
                return  # as it is (a covering prefix changed: the trie's entry, not this way)
            bk.rank1[old] = rank + 1  # same rule, new rank: one word changes
            self._commit(name, b, bk)
            return
        new = bk.free()
        if new is None:
            raise AssertionError("PrefixH.put without room: check has_room first")
        # Writes kept (Datapath.writes_batched: maps no program reads yet) go in together, the bucket's
        # last state only: the states in between are not made (as exact4.py's put).
        ordered = not self._dp.writes_kept()
        bk.prefix[new], bk.plen[new], bk.slot[new] = way[0], way[1], slot
        if ordered:
            self._commit(name, b, bk)
        bk.rank1[new] = rank + 1
        if old is not None:
            if ordered:
                self._commit(name, b, bk)
            bk.rank1[old] = 0
        self._commit(name, b, bk)

    def remove(self, net: IPNetwork) -> bool:
        """Retire ``net``'s way; False when it had none."""
        name, b, way = self._where(net)
        cur = self._buckets[name].get(b)
        i = cur.find(way) if cur else None
        if cur is None or i is None:
            return False
        bk = cur.copy()
        bk.rank1[i] = 0
        self._commit(name, b, bk)
        return True

    def retain(self, nets: set[IPNetwork]) -> None:
        """Retire every way whose prefix is not in ``nets`` (adopting pinned maps: the tries')."""
        keep = {(n.network_address.packed, n.prefixlen) for n in nets}
        for name, buckets in self._buckets.items():
            for b, cur in list(buckets.items()):
                stale = [i for i in range(WAYS) if cur.rank1[i] and (cur.prefix[i], cur.plen[i]) not in keep]
                if stale:
                    bk = cur.copy()
                    for i in stale:
                        bk.rank1[i] = 0
                    self._commit(name, b, bk)

    # --- internals -------------------------------------------------------------------
    def _where(self, net: IPNetwork) -> tuple[MapName, int, Way]:
        probe = probe_length(net)
        assert probe is not None, "a wild prefix is never hashed"
        # The prefix cut to its probe length, as integers (ipaddress's supernet() makes a network: five
        # times the cost, twice per prefix of a start's load).
        shift = net.max_prefixlen - probe
        cut = ((int(net.network_address) >> shift) << shift).to_bytes(net.max_prefixlen // 8, "big")
        prefix = net.network_address.packed
        return map_of(net), bucket_of(cut, probe, self._seed, self._bits), (prefix, net.prefixlen)

    def _commit(self, name: MapName, b: int, bk: _Bucket) -> None:
        """Write bucket ``b``, then (once the kernel took it) remember it."""
        self._dp.map_update(name, b.to_bytes(4, "little"), bk.pack())
        self._remember(name, b, bk)

    def _remember(self, name: MapName, b: int, bk: _Bucket) -> None:
        if any(bk.rank1):
            self._buckets[name][b] = bk
        else:
            self._buckets[name].pop(b, None)
