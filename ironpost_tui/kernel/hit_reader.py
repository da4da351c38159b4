"""RULE_HITS read again and again (each second, for the rules table), and which slots changed since the
last read.

With a threat feed's 10,000 rules, summing every slot over the CPUs and comparing every rule's status each
second cost more than the rest of an idle console's work, while a second changes a few slots at most (the
rules a flood matches).  The read stays whole (one batch syscall); what changed is found by comparing it
with the last read a block of slots at a time (bytes compared in C), and only changed blocks are summed.

Most seconds change none: a read is skipped when no packet matched a rule since the last one.  The program
counts every match once in EVENT_STATS, after its RULE_HITS slot (emit_event in bpf/ironpost_xdp.c counts
the event delivered or lost, always), so EVENT_STATS' total, read before RULE_HITS, the same as before the
last read means no slot changed since: a match under way while it is read is in the next read.  User space's
own writes to RULE_HITS (a slot cleared for a new rule) say so with ``written``; the table calls it under the
same lock as the reads (the engine's), so it never falls between a read of the total and the read it stands
for.  The two counters are plain stores, ordered for a reader on x86 but not on every CPU (arm64 may show
the total's increment before the slot's): a read is never skipped for longer than FULL_EVERY, so a count seen
late is shown within it.
"""

from __future__ import annotations

import time

from ironpost_tui.kernel.datapath import Datapath, sum_hits

BLOCK = 64  # slots compared at once: 157 compares of 2 KiB for 10,000 rules on 2 CPUs
FULL_EVERY = 10.0  # seconds: RULE_HITS read at least this often, whatever EVENT_STATS says


class HitReader:
    """Reads the first n RULE_HITS slots and says which changed since its last read."""

    def __init__(self, datapath: Datapath) -> None:
        self._dp = datapath
        self._raw = b""
        self._hits: list[tuple[int, int]] = []
        self._matches: int | None = None  # EVENT_STATS' total read before the last read of RULE_HITS
        self._read_at = 0.0  # time.monotonic() of that read

    def forget(self) -> None:
        """The next read reports every slot as changed (a slot was cleared and reused, say)."""
        self._raw = b""
        self._hits = []
        self._matches = None

    def written(self) -> None:
        """User space wrote a slot: the next read reads RULE_HITS whatever EVENT_STATS says."""
        self._matches = None

    def read(self, slots: int) -> tuple[list[tuple[int, int]], list[int] | None]:
        """(packets summed, latest last_hit_ns) of each of the first ``slots`` slots, and the slots whose
        counters changed since the last read, in order; None when any may have (the first read, another
        count of slots).  The list is this reader's own, updated in place by the next read: use it now."""
        matches, now = self._dp.rule_matches(), time.monotonic()
        if matches == self._matches and len(self._hits) == slots and now - self._read_at < FULL_EVERY:
            return self._hits, []
        raw, ncpu = self._dp.percpu_hits_raw(slots)
        self._matches, self._read_at = matches, now
        before = self._raw
        self._raw = raw
        if len(before) != len(raw) or not raw:
            self._hits = sum_hits(raw, ncpu) if raw else []
            return self._hits, None
        if before == raw:
            return self._hits, []
        hits = self._hits
        width = len(raw) // len(hits)
        step = BLOCK * width
        changed: list[int] = []
        view = memoryview(raw)
        for start in range(0, len(raw), step):
            end = start + step
            if raw[start:end] == before[start:end]:
                continue
            first = start // width
            for i, (new, old) in enumerate(zip(sum_hits(view[start:end], ncpu), hits[first:], strict=False)):
                if new != old:
                    hits[first + i] = new
                    changed.append(first + i)
        return hits, changed
