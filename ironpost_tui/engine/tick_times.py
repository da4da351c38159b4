"""How long the engine's ticks take: their work under the lock, not their wait for events.

Three histograms (cumulative buckets, sum, count):

- wall-clock seconds, which include the waits for the interpreter (other threads: the CrowdSec puller, the
  BLOCKLIST surveyor) and for a CPU on a loaded host (``ironpost_tick_seconds``);
- the tick thread's own CPU seconds, the work the tick did (``ironpost_tick_cpu_seconds``);
- the wall-clock seconds less the time the thread was ready to run and waited for a CPU, the kernel's run
  delay, whoever held the CPU (another process, or a thread of this one in a kernel call)
  (``ironpost_tick_own_seconds``): the tick's work and its waits for the interpreter and the kernel.
  Measured: in the CrowdSec scale case on a 2-core machine, the LAPI's import beside the agent kept a tick
  with 10 ms of work up to 30 ms in the run queue, and in one CI run 1 tick of 623 went past 100 ms of wall
  clock.

A reader takes two scrapes and sees how many ticks in between went past a bound (the CrowdSec scale case:
none past 100 ms while 100,000 decisions go in).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

# The calling thread's scheduler figures (Linux >= 3.17): time on a CPU, time waiting for one, timeslices.
SCHEDSTAT = "/proc/thread-self/schedstat"

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
    own: Histogram | None = None  # None: the kernel keeps no run delay (no CONFIG_SCHED_INFO)


def run_delay(path: str = SCHEDSTAT) -> float | None:
    """The calling thread's run delay so far: the seconds it was ready to run and waited for a CPU (the
    second field of its schedstat); None where the kernel does not keep it."""
    try:
        with open(path, "rb") as f:
            return int(f.read(128).split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


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
        self._own = _Counts()

    def observe(self, wall: float, cpu: float, waited: float | None = None) -> None:
        """A tick of ``wall`` seconds, ``cpu`` of its thread's CPU, ``waited`` of them in the run queue (None:
        not known, and the own histogram is not kept)."""
        self._wall.observe(wall)
        self._cpu.observe(cpu)
        if waited is not None:
            self._own.observe(max(0.0, wall - waited))

    def snapshot(self) -> TickSeconds:
        own = self._own.histogram() if self._own.count else None
        return TickSeconds(self._wall.histogram(), self._cpu.histogram(), own)


class TickSpan:
    """One tick's time over its parts (the detection read off the engine's lock, the rest under it): the wall
    clock, the thread's CPU and its run delay of each part summed; the wait for the lock between them is not
    the tick's (it is another's work)."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0
        self.waited: float | None = 0.0  # None: a part's run delay not known

    @contextlib.contextmanager
    def part(self) -> Iterator[None]:
        t0, cpu0, delay0 = time.perf_counter(), time.thread_time(), run_delay()
        try:
            yield
        finally:
            # The run delay read inside the wall clock's reads, at both ends: a wait counted is within the part.
            delay1 = run_delay()
            self.wall += time.perf_counter() - t0
            self.cpu += time.thread_time() - cpu0
            if self.waited is not None:
                self.waited = None if delay0 is None or delay1 is None else self.waited + (delay1 - delay0)
