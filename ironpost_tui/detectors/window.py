"""Sliding-window sums over cumulative counters read from the kernel."""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Hashable, Iterator, Mapping

from ironpost_tui.detectors.counters import Counts, growth

BUCKETS = 20  # a window is this many buckets: deltas leave it one bucket at a time
MAX_KEYS = 4_096  # keys tracked at most; beyond, the smallest go first


def diff_counts(prev: Mapping[Hashable, Counts], cur: Mapping[Hashable, Counts]) -> dict[Hashable, Counts]:
    """What each key's cumulative counters grew by; a counter that went down restarted from zero."""
    out: dict[Hashable, Counts] = {}
    for key, counts in cur.items():
        old = prev.get(key)
        if old != counts:
            out[key] = growth(old, counts)
    return out


class WindowSums:
    """Per key, the sum of what its counters grew by within the last ``window`` seconds.

    Fed deltas (``add``), or snapshots of cumulative counters (``update``: a
    counter that went down, say a key evicted that came back, is taken as
    restarted from zero).  Deltas are kept in ``buckets`` buckets of
    window/buckets seconds each, so they leave the window one bucket at a time.

    Memory is fixed when the object is made: ``max_keys`` slots of ``buckets``
    cells of ``width`` counters in flat arrays, not objects per key and bucket,
    so a flood of sources (a distributed scan from 65,536 addresses) costs no
    more than an idle host.  When every slot is taken, the keys holding the
    least go first (a quarter of the slots at once).  Work per ``add`` is
    proportional to the keys in it, per ``expire`` to the cells that leave.
    """

    def __init__(self, window: float, buckets: int = BUCKETS, max_keys: int = MAX_KEYS, width: int = 4) -> None:
        self.window = window
        self.buckets = buckets
        self.width = window / buckets  # seconds per bucket
        self.max_keys = max_keys
        self._prev: dict[Hashable, Counts] = {}
        self._allocate(width)

    def _allocate(self, n: int) -> None:
        self.n = n
        self._slot: dict[Hashable, int] = {}
        self._key: list[Hashable | None] = [None] * self.max_keys
        self._free = list(range(self.max_keys - 1, -1, -1))
        cells = self.max_keys * self.buckets
        self._ring = array("q", [0]) * (cells * n)  # [slot][bucket position][counter]
        self._stamp = array("q", [-1]) * cells  # the bucket id a cell holds, -1: empty
        self._live = array("i", [0]) * self.max_keys  # non-empty cells per slot
        self._sum = array("q", [0]) * (self.max_keys * n)
        # bucket id -> slots that got a cell in it: what to look at when it leaves the window
        self._touched: deque[tuple[int, array[int]]] = deque()
        self._view: dict[Hashable, list[int]] | None = None

    def _bucket(self, now: float) -> int:
        return int(now // self.width)

    @property
    def sums(self) -> dict[Hashable, list[int]]:
        """Key -> its counters summed over the window (a snapshot: do not keep it across updates)."""
        if self._view is None:
            n, total = self.n, self._sum
            self._view = {k: total[s * n : (s + 1) * n].tolist() for k, s in self._slot.items()}
        return self._view

    def get(self, key: Hashable) -> list[int] | None:
        """``key``'s counters summed over the window, or None for a key not tracked."""
        s = self._slot.get(key)
        return None if s is None else self._sum[s * self.n : (s + 1) * self.n].tolist()

    def at_least(self, counters: tuple[int, ...], minimum: int) -> Iterator[tuple[Hashable, list[int]]]:
        """(key, its sums) for the keys whose ``counters`` add up to ``minimum`` or more, in the order of
        ``sums``: a detector's candidates, without a list made for each of the 4,096 keys a spoofed flood
        can leave in a window (as ``sums`` makes).  Do not update the window while iterating."""
        n, total = self.n, self._sum
        for key, s in self._slot.items():
            base = s * n
            if sum(total[base + i] for i in counters) >= minimum:
                yield key, total[base : base + n].tolist()

    def tracks(self, key: Hashable) -> bool:
        return key in self._slot

    def update(self, snapshot: Mapping[Hashable, Counts], now: float) -> None:
        """Feed a snapshot of cumulative counters: what grew since the last one is added."""
        deltas = diff_counts(self._prev, snapshot)
        self._prev = dict(snapshot)
        self.add(deltas, now)

    def add(self, deltas: Mapping[Hashable, Counts], now: float) -> None:
        """Add what each key's counters grew by since the last call."""
        self.expire(now)
        if not deltas:
            return
        if not self._slot and len(next(iter(deltas.values()))) != self.n:
            self._allocate(len(next(iter(deltas.values()))))
        self._view = None
        bucket = self._bucket(now)
        if not self._touched or self._touched[-1][0] != bucket:
            self._touched.append((bucket, array("i")))
        touched = self._touched[-1][1]
        n, nb, pos = self.n, self.buckets, bucket % self.buckets
        ring, total, stamp = self._ring, self._sum, self._stamp
        for key, delta in deltas.items():
            s = self._slot.get(key)
            if s is None:
                if not self._free:
                    self._shed()
                s = self._free.pop()
                self._slot[key] = s
                self._key[s] = key
            cell = s * nb + pos
            if stamp[cell] != bucket:
                if stamp[cell] >= 0:  # an older bucket's cell (expire() takes them first)
                    self._drop_cell(s, cell)
                    if self._key[s] is None:  # that was the key's last cell: take the slot back
                        self._slot[key] = s
                        self._key[s] = key
                        self._free.remove(s)
                stamp[cell] = bucket
                self._live[s] += 1
                touched.append(s)
            base, sb = cell * n, s * n
            for i, d in enumerate(delta):
                ring[base + i] += d
                total[sb + i] += d

    def expire(self, now: float) -> None:
        """Forget the buckets that left the window (a bucket at or before now - window)."""
        horizon = self._bucket(now) - self.buckets
        nb = self.buckets
        while self._touched and self._touched[0][0] <= horizon:
            bid, slots = self._touched.popleft()
            pos = bid % nb
            for s in slots:
                cell = s * nb + pos
                if self._stamp[cell] == bid:
                    self._drop_cell(s, cell)
            self._view = None

    def _drop_cell(self, s: int, cell: int) -> None:
        n, base, sb = self.n, cell * self.n, s * self.n
        for i in range(n):
            self._sum[sb + i] -= self._ring[base + i]
            self._ring[base + i] = 0
        self._stamp[cell] = -1
        self._live[s] -= 1
        if self._live[s] == 0:
            key = self._key[s]
            del self._slot[key]
            self._key[s] = None
            self._free.append(s)

    def _shed(self) -> None:
        """Every slot taken: drop the smallest totals until a quarter of the slots is free."""
        n, total, nb = self.n, self._sum, self.buckets
        ranked = sorted(self._slot.values(), key=lambda s: sum(total[s * n : (s + 1) * n]))
        for s in ranked[: len(ranked) - (self.max_keys * 3 // 4 - 1)]:
            for cell in range(s * nb, (s + 1) * nb):
                if self._stamp[cell] >= 0:
                    self._drop_cell(s, cell)
        self._view = None

    def __len__(self) -> int:
        return len(self._slot)
