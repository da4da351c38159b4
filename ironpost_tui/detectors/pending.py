"""Sources a detector does not watch yet and what they sent, in a table of fixed size (the admission of
detectors/pipeline.py).

A spoofed flood brings a new source with each packet.  A dict entry for each (a bytes key, a tuple of
counts, the dict's slot: some 200 bytes) grew the process by 7 MiB for the two detectors' 16,384 sources,
and the memory stayed taken.  Here the keys are in one bytearray and their counts in one array, made with
the table, set-associative as the kernel's sketches are: a key hashes (with a secret drawn for each table:
an attacker cannot aim at a set, even where PYTHONHASHSEED is set) to one set of ``WAYS`` ways; a key not
held takes a free way of its set or, the set full, the way that holds the least by the detector's metric (a
one-packet source of a flood), so a slow real source is not forgotten for a flood's sake.  ``clear`` is a
generation count.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable
from operator import add

from ironpost_tui.detectors.counters import Counts
from ironpost_tui.kernel import abi

WAYS = 4


class PendingCounts:
    """Counts of ``width`` counters per key (``key_size`` bytes, the sketches' struct agg_key), at most
    ``capacity`` keys (rounded up to whole sets of a power-of-two count)."""

    def __init__(
        self, capacity: int, metric: Callable[[Counts], int], width: int = 4, key_size: int = abi.AGG_KEY.size
    ) -> None:
        sets = 1 << max(0, (max(1, capacity // WAYS) - 1).bit_length())
        self.capacity = sets * WAYS
        self._mask = sets - 1
        self._metric = metric
        self._width = width
        self._key_size = key_size
        self._keys = bytearray(self.capacity * key_size)
        self._counts = array("q", [0]) * (self.capacity * width)
        self._stamp = array("q", [0]) * self.capacity  # a way is held when its stamp is the generation
        # Each held way's counts by the metric, kept as they are written: what a full set's eviction compares
        # (a spoofed flood fills every set, and each of its keys evicts a way).  A list, as the metric gives it:
        # nothing it returns can fail to be kept after the way is written.
        self._measure: list[int] = [0] * self.capacity
        self._gen = 1
        self.held = 0
        self._salt = int.from_bytes(os.urandom(8), "little")

    def _set(self, key: bytes) -> int:
        return (hash((self._salt, key)) & self._mask) * WAYS

    def __len__(self) -> int:
        return self.held

    def clear(self) -> None:
        self._gen += 1
        self.held = 0

    def _find(self, key: bytes) -> tuple[int, int, int]:
        """(the way holding ``key`` or -1, a free way of its set or -1, its set's first way).  The set's keys are
        searched as one run of bytes, and its ways' stamps read as one slice: a flood's key, in no way of a
        full set, costs no step per way."""
        base = self._set(key)
        stamp, gen, size = self._stamp, self._gen, self._key_size
        lo = base * size
        hi = lo + WAYS * size
        keys = self._keys
        way = -1
        at = keys.find(key, lo, hi)
        while at >= 0:  # the key's bytes: a way's key when at a way's start, in a way held now
            w, off = divmod(at, size)
            if not off and stamp[w] == gen:
                way = w
                break
            at = keys.find(key, (w + 1) * size, hi)  # from the next way's start: at most a search per way
        free = -1
        stamps = stamp[base : base + WAYS]
        if stamps.count(gen) < WAYS:
            free = base + next(i for i, st in enumerate(stamps) if st != gen)
        return way, free, base

    def _counts_of(self, way: int) -> Counts:
        c = way * self._width
        return tuple(self._counts[c : c + self._width])

    def add(self, key: bytes, delta: Counts, limit: int | None = None) -> Counts:
        """``key``'s counts with ``delta`` added, held from now on; once they reach ``limit`` by the metric
        (the key is admitted), not held any more (and a key that reaches it at once takes no way)."""
        if len(key) != self._key_size:
            raise ValueError(f"a pending key is {self._key_size} bytes, not {len(key)}")
        width = self._width
        if len(delta) != width:
            raise ValueError(f"pending counts are {width} counters, not {len(delta)}")
        way, free, base = self._find(key)
        counts = self._counts
        if way >= 0:
            c = way * width
            total = tuple(map(add, counts[c : c + width], delta))
        else:
            total = tuple(delta)
        measure = self._metric(total)
        if limit is not None and measure >= limit:
            if way >= 0:
                self._stamp[way] = 0
                self.held -= 1
            return total
        held = array("q", total)  # a count past 64 bits fails here, before the table is changed
        if way < 0:
            if free >= 0:
                way = free
                self.held += 1
            else:  # the set is full: the way holding the least goes (the first of its set, on a tie)
                way = min(range(base, base + WAYS), key=self._measure.__getitem__)
            self._stamp[way] = self._gen
            self._keys[way * self._key_size : (way + 1) * self._key_size] = key
        c = way * width
        counts[c : c + width] = held
        self._measure[way] = measure
        return total

    def get(self, key: bytes) -> Counts | None:
        way, _, _ = self._find(key)
        return self._counts_of(way) if way >= 0 else None

    def drop(self, key: bytes) -> None:
        way, _, _ = self._find(key)
        if way >= 0:
            self._stamp[way] = 0
            self.held -= 1
