"""Cumulative kernel counters read at two moments."""

from __future__ import annotations

Counts = tuple[int, ...]


def growth(old: Counts | None, cur: Counts) -> Counts:
    """What counters grew by from ``old`` to ``cur``; all of ``cur`` when there was no ``old`` or a
    counter went down (the counters restarted from zero: a key evicted and back, a way taken over)."""
    if old is None or any(c < o for c, o in zip(cur, old, strict=True)):
        return cur
    return tuple(c - o for c, o in zip(cur, old, strict=True))
