"""How long the engine's ticks take: their work under the lock, not their wait for events.

Two histograms (cumulative buckets, sum, count): wall-clock seconds, which include the waits for the
interpreter (other threads: the CrowdSec puller, the BLOCKLIST surveyor) and for a CPU on a loaded host,
and the tick thread's own CPU seconds, the work the tick did.  Exported as ``ironpost_tick_seconds`` and
``ironpost_tick_cpu_seconds``: a reader takes two scrapes and sees how many ticks in between went past a
bound (the CrowdSec scale case: none past 100 ms while 100,000 decisions go in).
"""

from __future__ import annotations

from dataclasses import dataclass

BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)  # seconds; +Inf is the count


@dataclass(frozen=True)
class Histogram:
    buckets: tuple[tuple[float, int], ...]  # (upper bound, observations at most that long), cumulative
    count: int
    total: float  # seconds, summed
    longest: float  # seconds


@dataclass(frozen=True)
class TickSeconds:
    wall: Histogram
    cpu: Histogram


class _Counts:
    def __init__(self) -> None:
        self.counts = [0] * len(BUCKETS)  # not cumulative: observations in (previous bound, bound]
        self.count = 0
        self.total = 0.0
        self.longest = 0.0

    def observe(self, seconds: float) -> None:
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.counts[i] += 1
                break
        self.count += 1
        self.total += seconds
        self.longest = max(self.longest, seconds)

    def histogram(self) -> Histogram:
        cumulative, acc = [], 0
        for bound, n in zip(BUCKETS, self.counts, strict=True):
            acc += n
            cumulative.append((bound, acc))
        return Histogram(tuple(cumulative), self.count, self.total, self.longest)


class TickTimes:
    def __init__(self) -> None:
        self._wall = _Counts()
        self._cpu = _Counts()

    def observe(self, wall: float, cpu: float) -> None:
        self._wall.observe(wall)
        self._cpu.observe(cpu)

    def snapshot(self) -> TickSeconds:
        return TickSeconds(self._wall.histogram(), self._cpu.histogram())
