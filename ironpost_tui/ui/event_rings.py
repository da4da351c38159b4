"""The console's kept events in two bounded rings (Textual-free): the drops, and the rule matches
that are not drops (monitor, protected).  A blocked source's flood of drops then evicts only older
drops, never another source's monitor events; every event evicted is counted ("evicted N").

Every event the console is sent passes through here twice (the events pending a redraw, then the
events pane's), tens of thousands a second under a flood: a batch is split and kept in C loops
(verdict_mask, itertools.compress, deque.extend), never with Python code per event."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from itertools import chain, compress, islice
from operator import itemgetter
from typing import TypeVar

from ironpost_tui.kernel.record_event import verdict_mask
from ironpost_tui.model import PacketEvent, Verdict

_T = TypeVar("_T")
_NOT = bytes([1, 0]) + bytes(254)  # bytes.translate's table: a mask's complement
_arrival, _event = itemgetter(0), itemgetter(1)


class EventRings:
    """At most ``maxlen`` drops and ``maxlen`` other events; iterated in arrival order."""

    def __init__(self, maxlen: int) -> None:
        self.maxlen = maxlen
        # Each ring's events, and beside them (evicted with them) their arrival numbers, to merge the two.
        self._drops: deque[PacketEvent] = deque(maxlen=maxlen)
        self._drop_arrivals: deque[int] = deque(maxlen=maxlen)
        self._matches: deque[PacketEvent] = deque(maxlen=maxlen)
        self._match_arrivals: deque[int] = deque(maxlen=maxlen)
        self._arrived = 0  # the next event's arrival number
        self.evicted = 0  # events that left a full ring since the last clear()

    def extend(self, events: Iterable[PacketEvent]) -> int:
        """Keep ``events`` (in arrival order); return how many older ones left (those of the batch that
        could not stay count too)."""
        batch = events if isinstance(events, list | tuple) else list(events)
        n = len(batch)
        if not n:
            return 0
        before = len(self)
        arrivals = range(self._arrived, self._arrived + n)
        self._arrived += n
        drops = verdict_mask(batch, Verdict.DROP)
        k = drops.count(1)
        if k == n:  # a flood's batch: all drops
            _keep(self._drops, batch, self._drop_arrivals, arrivals, n)
        elif k:
            _keep(self._drops, compress(batch, drops), self._drop_arrivals, compress(arrivals, drops), k)
        if k < n:
            others = drops.translate(_NOT)
            _keep(self._matches, compress(batch, others), self._match_arrivals, compress(arrivals, others), n - k)
        evicted = before + n - len(self)
        self.evicted += evicted
        return evicted

    def __iter__(self) -> Iterator[PacketEvent]:
        if not self._matches:
            return iter(self._drops)
        if not self._drops:
            return iter(self._matches)
        # Two ascending runs of (arrival, event): one merge by arrival in sorted's C code.
        drops = zip(self._drop_arrivals, self._drops, strict=True)
        matches = zip(self._match_arrivals, self._matches, strict=True)
        return map(_event, sorted(chain(drops, matches), key=_arrival))

    def __len__(self) -> int:
        return len(self._drops) + len(self._matches)

    def ids(self) -> set[int]:
        """The kept events' identities (no merge by arrival): what a filtered view checks its rows against."""
        return {*map(id, self._drops), *map(id, self._matches)}

    def __bool__(self) -> bool:
        return bool(self._drops) or bool(self._matches)

    def clear(self) -> None:
        for ring in (self._drops, self._drop_arrivals, self._matches, self._match_arrivals):
            ring.clear()
        self.evicted = 0


def _keep(ring: deque[_T], new: Iterable[_T], arrivals: deque[int], new_arrivals: Iterable[int], count: int) -> None:
    """Append ``count`` new events and their arrival numbers to a ring; of more than it holds only the
    newest are appended, the others skipped (not appended and evicted one by one)."""
    skip = count - (ring.maxlen or count)
    if skip > 0:
        new, new_arrivals = islice(new, skip, None), islice(new_arrivals, skip, None)
    ring.extend(new)
    arrivals.extend(new_arrivals)
