"""Sliding-window sums over cumulative counters read from the kernel."""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Mapping

Counts = tuple[int, ...]


class WindowSums:
    """Per key, the sum of what its counters grew by within the last ``window`` seconds.

    Fed snapshots of cumulative counters (an LRU map read at one moment).  A
    counter that went down (the key was evicted and came back, or wrapped) is
    taken as restarted from zero.  Work per update is proportional to the keys
    that changed, not to all keys ever seen.
    """

    def __init__(self, window: float) -> None:
        self.window = window
        self._prev: dict[Hashable, Counts] = {}
        self._history: deque[tuple[float, dict[Hashable, Counts]]] = deque()
        self.sums: dict[Hashable, list[int]] = {}

    def update(self, snapshot: Mapping[Hashable, Counts], now: float) -> None:
        deltas: dict[Hashable, Counts] = {}
        prev = self._prev
        for key, cur in snapshot.items():
            old = prev.get(key)
            if old == cur:
                continue
            if old is None or any(c < o for c, o in zip(cur, old, strict=True)):
                delta = cur
            else:
                delta = tuple(c - o for c, o in zip(cur, old, strict=True))
            deltas[key] = delta
            acc = self.sums.get(key)
            if acc is None:
                self.sums[key] = list(delta)
            else:
                for i, d in enumerate(delta):
                    acc[i] += d
        self._prev = dict(snapshot)
        if deltas:
            self._history.append((now, deltas))
        self.expire(now)

    def expire(self, now: float) -> None:
        """Forget what happened at or before ``now - window``."""
        horizon = now - self.window
        while self._history and self._history[0][0] <= horizon:
            _, old = self._history.popleft()
            for key, delta in old.items():
                acc = self.sums[key]
                for i, d in enumerate(delta):
                    acc[i] -= d
                if not any(acc):
                    del self.sums[key]

    def __len__(self) -> int:
        return len(self.sums)
