"""A ring of time slots, each holding the busiest keys of each top list with their counts, in storage
allocated at construction.

A slot is one read (or a bucket of reads merged): the interval it covers and, per TopKind, up to
``keep`` 20-byte keys (struct top_key) in one bytearray and their (packets, bytes, syns, drops) in
one array of u64.  A flood of distinct keys fills the slots and then overwrites the oldest: it never
allocates, so the process's memory after the attach is what it is under a flood (a dict per read of
str keys grew with every key a window held).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence

from ironpost_tui.triage.reader import TOP_KEY_SIZE, TopKey
from ironpost_tui.triage.values import TopKind

KINDS = tuple(TopKind)
KIND_INDEX = {k: i for i, k in enumerate(KINDS)}
COUNTERS = 4  # packets, bytes, syns, drops
Sums = dict[TopKey, list[int]]  # a window's (packets, bytes, syns, drops) per key, built when asked


class TopRing:
    """``slots`` slots of ``keep`` keys per kind; ``put`` takes the oldest slot once all are used."""

    def __init__(self, slots: int, keep: int) -> None:
        self.slots = slots
        self.keep = keep
        lists = slots * len(KINDS)
        self.keys = bytearray(lists * keep * TOP_KEY_SIZE)
        self.counts = array("Q", bytes(lists * keep * COUNTERS * 8))
        self.lens = array("H", bytes(lists * 2))  # keys held, per (slot, kind)
        self.since = array("d", bytes(slots * 8))  # monotonic seconds: the start of a slot's interval
        self.at = array("d", bytes(slots * 8))  # and its end
        self.used = 0  # slots holding something, the newest at (next - 1) % slots
        self.next = 0

    def put(self, since: float, at: float, lists: Sequence[Iterable[tuple[TopKey, Sequence[int]]]]) -> None:
        """A slot from ``since`` to ``at`` holding, per kind (in KINDS order), its keys and counts
        (at most ``keep`` of each: the caller chose them)."""
        slot = self.next
        self.next = (slot + 1) % self.slots
        self.used = min(self.used + 1, self.slots)
        self.since[slot] = since
        self.at[slot] = at
        keys, counts = self.keys, self.counts
        for k, items in enumerate(lists):
            li = slot * len(KINDS) + k
            i = li * self.keep
            end = i + self.keep
            for key, c in items:
                if i == end:
                    break
                keys[i * TOP_KEY_SIZE : (i + 1) * TOP_KEY_SIZE] = key
                o = i * COUNTERS
                counts[o], counts[o + 1], counts[o + 2], counts[o + 3] = c
                i += 1
            self.lens[li] = i - li * self.keep

    def newest(self, back: int) -> int:
        """The slot ``back`` slots before the newest (0: the newest)."""
        return (self.next - 1 - back) % self.slots

    def add_to(self, sums: Sums, slot: int, kind: int) -> None:
        """Add a slot's keys and counts of one kind into ``sums``."""
        li = slot * len(KINDS) + kind
        n = self.lens[li]
        base = li * self.keep
        keys = bytes(self.keys[base * TOP_KEY_SIZE : (base + n) * TOP_KEY_SIZE])
        counts = self.counts[base * COUNTERS : (base + n) * COUNTERS].tolist()
        for j in range(n):
            key = keys[j * TOP_KEY_SIZE : (j + 1) * TOP_KEY_SIZE]
            c = counts[j * COUNTERS : (j + 1) * COUNTERS]
            acc = sums.get(key)
            if acc is None:
                sums[key] = c
            else:
                acc[0] += c[0]
                acc[1] += c[1]
                acc[2] += c[2]
                acc[3] += c[3]
