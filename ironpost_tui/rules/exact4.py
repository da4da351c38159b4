"""EXACT4: the exact IPv4 source rules again, in buckets the XDP program reads without a call.

BLOCKLIST (a hash map, the seed's) stays the record of every exact IPv4 rule; what the program
looks up for them is EXACT4, an array of 8-way buckets (bpf/ironpost_common.h says why and how).
This module keeps EXACT4's ways: where an address goes, and the order of the writes, so that the
program never sees a way with one rule's address and another rule's slot:

- a new way: address and slot first (rank1 still 0, the way not in use), then rank1;
- a way retired: rank1 set to 0 only;
- a new rule on an address that has a way (a rule replaced under another id): it takes a free way of
  the bucket before the old way is retired, so the address never goes unmatched.  A way's slot is
  never rewritten in place: with no free way the caller keeps the new rule in BLOCKLIST alone.

An address that cannot be placed (``has_room`` says so before) stays in BLOCKLIST alone, which the
program then looks up (ADDR_FILTER's FILTER_EXACT).  The mirror here changes only after the kernel
took the write.
"""

from __future__ import annotations

import sys

from ironpost_tui.kernel import abi
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.kernel.datapath import Datapath

WAYS = abi.EXACT4_WAYS


def bucket_of(addr: bytes, seed: int, bits: int) -> int:
    """The bucket of a 4-byte address (match_exact4() in bpf/rule_match.h)."""
    return abi.hash_32(_u32(addr) ^ seed, bits)


class Exact4:
    """EXACT4 of one Datapath, mirrored here: bucket -> [addr x 8, rank1 x 8, slot x 8]."""

    def __init__(self, dp: Datapath) -> None:
        self._dp = dp
        self._bits = dp.cfg.exact4_buckets.bit_length() - 1
        self._seed = int(dp.read_config_raw()[3])
        self._buckets: dict[int, list[int]] = {}
        if dp.reused_maps:  # pinned maps already in force: start from what they hold
            keys, values, count = dp.map_dump(MapName.EXACT4)
            size = abi.EXACT4_BUCKET.size
            for i in range(count):
                ways = list(abi.EXACT4_BUCKET.unpack_from(values, i * size))
                if any(ways[WAYS : 2 * WAYS]):
                    self._adopt(int.from_bytes(keys[i * 4 : i * 4 + 4], "little"), ways)

    def _adopt(self, b: int, ways: list[int]) -> None:
        """Take a bucket as the kernel holds it; a second live way for one address (a stop between
        put's writes) is retired."""
        seen: set[int] = set()
        dup = False
        for i in range(WAYS):
            if ways[WAYS + i]:
                if ways[i] in seen:
                    ways[WAYS + i] = 0
                    dup = True
                seen.add(ways[i])
        self._buckets[b] = ways
        if dup:
            self._commit(b, ways)

    # --- reading -----------------------------------------------------------------
    def get(self, addr: bytes) -> tuple[int, int] | None:
        """(rank, slot) of ``addr``'s way, or None when it has none."""
        b = self._bucket(addr)
        ways = self._buckets.get(b)
        way = _find(ways, _u32(addr)) if ways else None
        if ways is None or way is None:
            return None
        return ways[WAYS + way] - 1, ways[2 * WAYS + way]

    def has_room(self, addr: bytes, slot: int) -> bool:
        """Whether ``put(addr, rank, slot)`` will place it: a way of ``addr`` credits ``slot`` already,
        or its bucket has a free way."""
        ways = self._buckets.get(self._bucket(addr))
        if ways is None:
            return True
        old = _find(ways, _u32(addr))
        return (old is not None and ways[2 * WAYS + old] == slot) or _free(ways) is not None

    # --- changing ------------------------------------------------------------------
    def put(self, addr: bytes, rank: int, slot: int) -> None:
        """Make ``addr`` match with ``rank``, crediting ``slot``.  The caller checked has_room."""
        b = self._bucket(addr)
        a = _u32(addr)
        ways = list(self._buckets.get(b) or [0] * (3 * WAYS))
        old = _find(ways, a)
        if old is not None and ways[2 * WAYS + old] == slot:
            ways[WAYS + old] = rank + 1  # same rule, new rank: one word changes
            self._commit(b, ways)
            return
        new = _free(ways)
        if new is None:
            raise AssertionError("EXACT4.put without room: check has_room first")
        # Writes kept (Datapath.writes_batched: maps no program reads yet) go in together, the bucket's
        # last state only: the states in between are not made.
        ordered = not self._dp.writes_kept()
        ways[new], ways[2 * WAYS + new] = a, slot
        if ordered:
            self._commit(b, ways)
        ways[WAYS + new] = rank + 1
        if old is not None:
            if ordered:
                self._commit(b, ways)
            ways[WAYS + old] = 0
        self._commit(b, ways)

    def remove(self, addr: bytes) -> bool:
        """Retire ``addr``'s way; False when it had none."""
        b = self._bucket(addr)
        ways = list(self._buckets.get(b) or [])
        way = _find(ways, _u32(addr)) if ways else None
        if way is None:
            return False
        ways[WAYS + way] = 0
        self._commit(b, ways)
        return True

    def retain(self, addrs: set[bytes]) -> None:
        """Retire every way whose address is not in ``addrs`` (adopting pinned maps: BLOCKLIST's)."""
        keep = {_u32(a) for a in addrs}
        for b, ways in list(self._buckets.items()):
            stale = [i for i in range(WAYS) if ways[WAYS + i] and ways[i] not in keep]
            if stale:
                ways = list(ways)
                for i in stale:
                    ways[WAYS + i] = 0
                self._commit(b, ways)

    # --- internals -------------------------------------------------------------------
    def _bucket(self, addr: bytes) -> int:
        return bucket_of(addr, self._seed, self._bits)

    def _commit(self, b: int, ways: list[int]) -> None:
        """Write bucket ``b``, then (once the kernel took it) remember it."""
        self._dp.map_update(MapName.EXACT4, b.to_bytes(4, "little"), abi.EXACT4_BUCKET.pack(*ways))
        if any(ways[WAYS : 2 * WAYS]):
            self._buckets[b] = list(ways)
        else:
            self._buckets.pop(b, None)


def _u32(addr: bytes) -> int:
    """The address as the program loads it: a u32 in host order."""
    return int.from_bytes(addr, sys.byteorder)


def _find(ways: list[int], a: int) -> int | None:
    """The way in use that holds address ``a``."""
    for i in range(WAYS):
        if ways[WAYS + i] and ways[i] == a:
            return i
    return None


def _free(ways: list[int]) -> int | None:
    for i in range(WAYS):
        if not ways[WAYS + i]:
            return i
    return None
