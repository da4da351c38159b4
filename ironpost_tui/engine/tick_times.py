"""How long the engine's ticks take: their work under the lock, not their wait for events.

A histogram (cumulative buckets, sum, count) and the longest tick, published in the snapshot and
exported as ``ironpost_tick_seconds``: a reader takes two scrapes and sees how many ticks in between
went past a bound (the CrowdSec scale case: none past 100 ms while 100,000 decisions go in).
"""

from __future__ import annotations

from dataclasses import dataclass

BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)  # seconds; +Inf is the count


@dataclass(frozen=True)
class TickSeconds:
    buckets: tuple[tuple[float, int], ...]  # (upper bound, ticks at most that long), cumulative
    count: int
    total: float  # seconds, summed
    longest: float  # seconds


class TickTimes:
    def __init__(self) -> None:
        self._counts = [0] * len(BUCKETS)  # not cumulative: ticks in (previous bound, bound]
        self._count = 0
        self._total = 0.0
        self._longest = 0.0

    def observe(self, seconds: float) -> None:
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self._counts[i] += 1
                break
        self._count += 1
        self._total += seconds
        self._longest = max(self._longest, seconds)

    def snapshot(self) -> TickSeconds:
        cumulative, acc = [], 0
        for bound, n in zip(BUCKETS, self._counts, strict=True):
            acc += n
            cumulative.append((bound, acc))
        return TickSeconds(tuple(cumulative), self._count, self._total, self._longest)
