"""The wall clock's offset from CLOCK_MONOTONIC (bpf_ktime_get_ns's clock, the kernel's stamps on events and
last hits), followed when the wall clock steps: NTP, a resume, a VM restored or migrated.

Read once at the start until session 25, after which a step left every event and last hit off by it (a drill
saw events 7 s early beside a capture's right times).  A read is taken between two monotonic reads, and again
when something came between them, so that a stall (a collection, a starved thread under a flood) is not read as
a step; and a step is followed only once two reads in a row agree on it.  Moves under STEP_SECS (NTP's slewing)
wait for a step: each change restamps every rule, and the table is sent again."""

from __future__ import annotations

import time

STEP_SECS = 0.25  # a move this big is followed
QUIET_READ_SECS = 0.001  # a read whose monotonic pair is further apart than this is taken again
READS = 3


def monotonic_to_wall_offset() -> float:
    """Wall-clock seconds minus CLOCK_MONOTONIC seconds, read as close together as READS tries allow."""
    best_gap, best = float("inf"), 0.0
    for _ in range(READS):
        m0 = time.clock_gettime(time.CLOCK_MONOTONIC)
        wall = time.time()
        m1 = time.clock_gettime(time.CLOCK_MONOTONIC)
        if m1 - m0 < best_gap:
            best_gap, best = m1 - m0, wall - (m0 + m1) / 2
        if best_gap < QUIET_READ_SECS:
            break
    return best


class WallOffset:
    def __init__(self, offset: float) -> None:
        self.offset = offset
        self._seen: float | None = None  # a step read once, followed if the next read agrees

    def follow(self, now: float) -> float:
        """``now``: a fresh read of the offset.  The step taken (0.0: none)."""
        step = now - self.offset
        if abs(step) <= STEP_SECS:
            self._seen = None
            return 0.0
        if self._seen is None or abs(now - self._seen) > STEP_SECS:
            self._seen = now
            return 0.0
        self._seen = None
        self.offset = now
        return step
