"""Sliding-window sums over cumulative counters read from the kernel."""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Mapping

Counts = tuple[int, ...]

BUCKETS = 20  # a window is this many buckets: deltas leave it one bucket at a time
MAX_KEYS = 65_536  # keys tracked at most; beyond, the smallest go first


def diff_counts(prev: Mapping[Hashable, Counts], cur: Mapping[Hashable, Counts]) -> dict[Hashable, Counts]:
    """What each key's cumulative counters grew by; a counter that went down restarted from zero."""
    out: dict[Hashable, Counts] = {}
    for key, counts in cur.items():
        old = prev.get(key)
        if old == counts:
            continue
        if old is None or any(c < o for c, o in zip(counts, old, strict=True)):
            out[key] = counts
        else:
            out[key] = tuple(c - o for c, o in zip(counts, old, strict=True))
    return out


class WindowSums:
    """Per key, the sum of what its counters grew by within the last ``window`` seconds.

    Fed deltas (``add``), or snapshots of cumulative counters (``update``: a
    counter that went down, say a key evicted that came back, is taken as
    restarted from zero).  Deltas are kept in buckets of window/20, so
    memory is bounded by keys × buckets whatever the read rate, and the number
    of keys is capped: under a spoofed flood (a new source per packet) the keys
    holding the least are forgotten first.  Work per update is proportional to
    the keys that changed.
    """

    def __init__(self, window: float, buckets: int = BUCKETS, max_keys: int = MAX_KEYS) -> None:
        self.window = window
        self.buckets = buckets
        self.width = window / buckets
        self.max_keys = max_keys
        self._prev: dict[Hashable, Counts] = {}
        # key -> its buckets in the window, oldest first: [bucket id, counts]
        self._rings: dict[Hashable, deque[tuple[int, list[int]]]] = {}
        # bucket id -> keys with a delta in it: what to look at when it leaves the window
        self._touched: deque[tuple[int, set[Hashable]]] = deque()
        self.sums: dict[Hashable, list[int]] = {}

    def _bucket(self, now: float) -> int:
        return int(now // self.width)

    def update(self, snapshot: Mapping[Hashable, Counts], now: float) -> None:
        """Feed a snapshot of cumulative counters: what grew since the last one is added."""
        deltas = diff_counts(self._prev, snapshot)
        self._prev = dict(snapshot)
        self.add(deltas, now)

    def add(self, deltas: Mapping[Hashable, Counts], now: float) -> None:
        """Add what each key's counters grew by since the last call."""
        bucket = self._bucket(now)
        if not self._touched or self._touched[-1][0] != bucket:
            self._touched.append((bucket, set()))
        touched = self._touched[-1][1]
        for key, delta in deltas.items():
            ring = self._rings.get(key)
            if ring is None:
                ring = self._rings[key] = deque()
                self.sums[key] = [0] * len(delta)
            if ring and ring[-1][0] == bucket:
                slot = ring[-1][1]
            else:
                slot = [0] * len(delta)
                ring.append((bucket, slot))
            acc = self.sums[key]
            for i, d in enumerate(delta):
                slot[i] += d
                acc[i] += d
            touched.add(key)
        self.expire(now)
        if len(self._rings) > self.max_keys:
            self._shed()

    def expire(self, now: float) -> None:
        """Forget the buckets that left the window (a bucket at or before now - window)."""
        horizon = self._bucket(now) - self.buckets
        while self._touched and self._touched[0][0] <= horizon:
            _, keys = self._touched.popleft()
            for key in keys:
                ring = self._rings.get(key)
                if ring is None:
                    continue
                while ring and ring[0][0] <= horizon:
                    _, old = ring.popleft()
                    acc = self.sums[key]
                    for i, d in enumerate(old):
                        acc[i] -= d
                if not ring:
                    self._forget(key)

    def _forget(self, key: Hashable) -> None:
        del self._rings[key]
        del self.sums[key]

    def _shed(self) -> None:
        """Too many keys: drop the smallest totals until a quarter of the room is free."""
        keep = self.max_keys * 3 // 4
        ranked = sorted(self.sums, key=lambda k: sum(self.sums[k]))
        for key in ranked[: len(ranked) - keep]:
            self._forget(key)

    def __len__(self) -> int:
        return len(self.sums)
