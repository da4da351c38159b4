"""The ways of an inline table: buckets of ways the XDP program reads without a call, in front of the hash
map that stays the record of every entry (EXACT4 in front of BLOCKLIST, MATCHH in front of MATCH).

This module keeps a table's ways: where a key goes, and the order of the writes, so that the program
never sees a way with one rule's key and another rule's slot:

- a new way: key and slot first (rank1 still 0, the way not in use), then rank1;
- a way retired: rank1 set to 0 only;
- a new rule on a key that has a way (a rule replaced under another id): it takes a free way of the
  bucket before the old way is retired, so the key never goes unmatched.  A way's slot is never
  rewritten in place: with no free way the caller keeps the new rule in the hash map alone.

A key that cannot be placed (``has_room`` says so before) stays in the hash map alone, which the program
then looks up (ADDR_FILTER's FILTER_EXACT for EXACT4, CONFIG.match_spill for MATCHH).  The mirror here
changes only after the kernel took the write.  A subclass says how a key is hashed, and how a bucket is
packed when its struct's fields are not the list itself: a bucket here is [key x ways, rank1 x ways,
slot x ways].
"""

from __future__ import annotations

import struct
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

from ironpost_tui.kernel.abi import MapName
from ironpost_tui.kernel.datapath import Datapath

K = TypeVar("K", bound=Hashable)


class InlineWays(Generic[K]):
    """One inline table of one Datapath, mirrored here: bucket -> [key x ways, rank1 x ways, slot x ways]."""

    MAP: MapName
    WAYS: int
    BUCKET: struct.Struct  # the map's value

    def __init__(self, dp: Datapath, buckets: int) -> None:
        self._dp = dp
        self._bits = buckets.bit_length() - 1
        self._seed = int(dp.read_config_raw()[3])
        self._buckets: dict[int, list[Any]] = {}
        if dp.reused_maps:  # pinned maps already in force: start from what they hold
            keys, values, count = dp.map_dump(self.MAP)
            size = self.BUCKET.size
            for i in range(count):
                ways = self._unpack(values[i * size : (i + 1) * size])
                if any(ways[self.WAYS : 2 * self.WAYS]):
                    self._adopt(int.from_bytes(keys[i * 4 : i * 4 + 4], "little"), ways)

    # --- what a subclass says ------------------------------------------------------
    def _key(self, key: bytes) -> K:
        """The key as a way holds it."""
        raise NotImplementedError

    def _bucket_of(self, k: K) -> int:
        raise NotImplementedError

    def _pack(self, ways: list[Any]) -> bytes:
        return self.BUCKET.pack(*ways)

    def _unpack(self, raw: bytes) -> list[Any]:
        return list(self.BUCKET.unpack(raw))

    # --- reading -----------------------------------------------------------------
    def get(self, key: bytes) -> tuple[int, int] | None:
        """(rank, slot) of ``key``'s way, or None when it has none."""
        k = self._key(key)
        ways = self._buckets.get(self._bucket_of(k))
        way = self._find(ways, k) if ways else None
        if ways is None or way is None:
            return None
        return int(ways[self.WAYS + way]) - 1, int(ways[2 * self.WAYS + way])

    def has_room(self, key: bytes, slot: int) -> bool:
        """Whether ``put(key, rank, slot)`` will place it: a way of ``key`` credits ``slot`` already, or its
        bucket has a free way."""
        k = self._key(key)
        ways = self._buckets.get(self._bucket_of(k))
        if ways is None:
            return True
        old = self._find(ways, k)
        return (old is not None and ways[2 * self.WAYS + old] == slot) or self._free(ways) is not None

    # --- changing ------------------------------------------------------------------
    def try_put(self, key: bytes, rank: int, slot: int) -> bool:
        """``has_room`` and, when it says so, ``put``, in one pass over the bucket: for writes kept
        (Datapath.writes_batched: maps no program reads yet, the bucket written once); False, nothing
        changed, when ``key`` has no room."""
        if not self._dp.writes_kept():
            raise RuntimeError(f"{self.MAP}.try_put outside kept writes: has_room, then put in order")
        w = self.WAYS
        k, b, ways, olds, same = self._look(key, slot)
        if same is not None:
            if ways[2 * w + olds[0]] != slot and self._free(ways) is None:
                return False  # has_room looks at the first way of the key only
            self._credit_again(b, ways, olds, same, rank)
            return True
        new = self._free(ways)
        if new is None:
            return False
        ways[new], ways[w + new], ways[2 * w + new] = k, rank + 1, slot
        for i in olds:
            ways[w + i] = 0
        self._commit(b, ways)
        return True

    def put(self, key: bytes, rank: int, slot: int) -> None:
        """Make ``key`` match with ``rank``, crediting ``slot``.  The caller checked has_room."""
        w = self.WAYS
        k, b, ways, olds, same = self._look(key, slot)
        if same is not None:
            self._credit_again(b, ways, olds, same, rank)
            return
        new = self._free(ways)
        if new is None:
            raise AssertionError(f"{self.MAP}.put without room: check has_room first")
        # Writes kept (Datapath.writes_batched: maps no program reads yet) go in together, the bucket's
        # last state only: the states in between are not made.
        ordered = not self._dp.writes_kept()
        ways[new], ways[2 * w + new] = k, slot
        if ordered:
            self._commit(b, ways)
        ways[w + new] = rank + 1
        if olds:
            if ordered:
                self._commit(b, ways)
            for i in olds:
                ways[w + i] = 0
        self._commit(b, ways)

    def _look(self, key: bytes, slot: int) -> tuple[K, int, list[Any], list[int], int | None]:
        """``key`` as a way holds it, its bucket, a copy of the bucket's ways, the ways in use holding it (one,
        or more after a put that failed half-way: the last commit's), and the one of them crediting ``slot``."""
        k = self._key(key)
        b = self._bucket_of(k)
        ways = list(self._buckets.get(b) or self._empty())
        olds = self._find_all(ways, k)
        same = next((i for i in olds if ways[2 * self.WAYS + i] == slot), None)
        return k, b, ways, olds, same

    def _credit_again(self, b: int, ways: list[Any], olds: list[int], same: int, rank: int) -> None:
        """The way ``same`` (the key's, crediting its slot already) at ``rank``: one word changes, and any
        second way of the key goes."""
        ways[self.WAYS + same] = rank + 1
        for i in olds:
            if i != same:
                ways[self.WAYS + i] = 0
        self._commit(b, ways)

    def remove(self, key: bytes) -> bool:
        """Retire ``key``'s way; False when it had none."""
        k = self._key(key)
        b = self._bucket_of(k)
        ways = list(self._buckets.get(b) or [])
        live = self._find_all(ways, k) if ways else []
        if not live:
            return False
        for way in live:  # every one: a put that failed half-way leaves two, and one left would still drop
            ways[self.WAYS + way] = 0
        self._commit(b, ways)
        return True

    def retain(self, keys: set[bytes]) -> None:
        """Retire every way whose key is not in ``keys`` (adopting pinned maps: the hash map's)."""
        w = self.WAYS
        keep = {self._key(k) for k in keys}
        for b, ways in list(self._buckets.items()):
            stale = [i for i in range(w) if ways[w + i] and ways[i] not in keep]
            if stale:
                ways = list(ways)
                for i in stale:
                    ways[w + i] = 0
                self._commit(b, ways)

    # --- internals -------------------------------------------------------------------
    def _adopt(self, b: int, ways: list[Any]) -> None:
        """Take a bucket as the kernel holds it; a second live way for one key (a stop between put's
        writes) is retired."""
        w = self.WAYS
        seen: set[Any] = set()
        dup = False
        for i in range(w):
            if ways[w + i]:
                if ways[i] in seen:
                    ways[w + i] = 0
                    dup = True
                seen.add(ways[i])
        self._buckets[b] = ways
        if dup:
            self._commit(b, ways)

    def _empty(self) -> list[Any]:
        return self._unpack(bytes(self.BUCKET.size))

    def _commit(self, b: int, ways: list[Any]) -> None:
        """Write bucket ``b``, then (once the kernel took it) remember it."""
        self._dp.map_update(self.MAP, b.to_bytes(4, "little"), self._pack(ways))
        if any(ways[self.WAYS : 2 * self.WAYS]):
            self._buckets[b] = list(ways)
        else:
            self._buckets.pop(b, None)

    def _find(self, ways: list[Any], k: K) -> int | None:
        """The way in use that holds key ``k``."""
        for i in range(self.WAYS):
            if ways[self.WAYS + i] and ways[i] == k:
                return i
        return None

    def _find_all(self, ways: list[Any], k: K) -> list[int]:
        """Every way in use that holds key ``k``."""
        return [i for i in range(self.WAYS) if ways[self.WAYS + i] and ways[i] == k]

    def _free(self, ways: list[Any]) -> int | None:
        for i in range(self.WAYS):
            if not ways[self.WAYS + i]:
                return i
        return None
