"""Sources a detector does not watch yet and what they sent, in a table of fixed size (the admission of
detectors/pipeline.py).

A spoofed flood brings a new source with each packet.  A dict entry for each (a bytes key, a tuple of
counts, the dict's slot: some 200 bytes) grew the process by 7 MiB for the two detectors' 16,384 sources,
and the memory stayed taken.  Here the keys are in one bytearray and their counts in one array, made with
the table, set-associative as the kernel's sketches are: a key hashes (Python's hash of bytes, seeded per
process: an attacker cannot aim at a set) to one set of ``WAYS`` ways; a key not held takes a free way of
its set or, the set full, the way that holds the least by the detector's metric (a one-packet source of a
flood), so a slow real source is not forgotten for a flood's sake.  ``clear`` is a generation count.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable

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
        self._counts = array("q", bytes(8 * self.capacity * width))
        self._stamp = array("q", bytes(8 * self.capacity))  # a way is held when its stamp is the generation
        self._gen = 1
        self.held = 0

    def __len__(self) -> int:
        return self.held

    def clear(self) -> None:
        self._gen += 1
        self.held = 0

    def _find(self, key: bytes) -> tuple[int, int]:
        """(the way holding ``key`` or -1, a free way of its set or -1)."""
        base = (hash(key) & self._mask) * WAYS
        free = -1
        stamp, keys, gen, size = self._stamp, self._keys, self._gen, self._key_size
        for w in range(base, base + WAYS):
            if stamp[w] != gen:
                if free < 0:
                    free = w
            elif keys.startswith(key, w * size):
                return w, free
        return -1, free

    def _counts_of(self, way: int) -> Counts:
        c = way * self._width
        return tuple(self._counts[c : c + self._width])

    def add(self, key: bytes, delta: Counts) -> Counts:
        """``key``'s counts with ``delta`` added, held from now on."""
        if len(key) != self._key_size:
            raise ValueError(f"a pending key is {self._key_size} bytes, not {len(key)}")
        way, free = self._find(key)
        counts, c = self._counts, 0
        if way >= 0:
            c = way * self._width
            total = tuple(counts[c + i] + d for i, d in enumerate(delta))
        else:
            if free >= 0:
                way = free
                self.held += 1
            else:  # the set is full: the way holding the least goes
                base = (hash(key) & self._mask) * WAYS
                way = min(range(base, base + WAYS), key=lambda w: (self._metric(self._counts_of(w)), w))
            self._stamp[way] = self._gen
            self._keys[way * self._key_size : (way + 1) * self._key_size] = key
            c = way * self._width
            total = tuple(delta)
        for i, v in enumerate(total):
            counts[c + i] = v
        return total

    def get(self, key: bytes) -> Counts | None:
        way, _ = self._find(key)
        return self._counts_of(way) if way >= 0 else None

    def drop(self, key: bytes) -> None:
        way, _ = self._find(key)
        if way >= 0:
            self._stamp[way] = 0
            self.held -= 1
