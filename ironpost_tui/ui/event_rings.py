"""The console's kept events in two bounded rings (Textual-free): the drops, and the rule matches
that are not drops (monitor, protected).  A blocked source's flood of drops then evicts only older
drops, never another source's monitor events; every event evicted is counted ("evicted N")."""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterable, Iterator

from ironpost_tui.model import PacketEvent, Verdict


class EventRings:
    """At most ``maxlen`` drops and ``maxlen`` other events; iterated in arrival order."""

    def __init__(self, maxlen: int) -> None:
        self.maxlen = maxlen
        self._drops: deque[tuple[int, PacketEvent]] = deque(maxlen=maxlen)
        self._matches: deque[tuple[int, PacketEvent]] = deque(maxlen=maxlen)
        self._arrival = itertools.count()
        self.evicted = 0  # events that left a full ring since the last clear()

    def extend(self, events: Iterable[PacketEvent]) -> int:
        """Keep ``events`` (in arrival order); return how many older ones left."""
        before = len(self)
        added = 0
        drops, matches, arrival = self._drops, self._matches, self._arrival
        for e in events:
            (drops if e.verdict is Verdict.DROP else matches).append((next(arrival), e))
            added += 1
        evicted = before + added - len(self)
        self.evicted += evicted
        return evicted

    def __iter__(self) -> Iterator[PacketEvent]:
        if not self._matches:
            return (e for _, e in self._drops)
        if not self._drops:
            return (e for _, e in self._matches)
        return (e for _, e in heapq.merge(self._drops, self._matches, key=lambda item: item[0]))

    def __len__(self) -> int:
        return len(self._drops) + len(self._matches)

    def __bool__(self) -> bool:
        return bool(self._drops) or bool(self._matches)

    def clear(self) -> None:
        self._drops.clear()
        self._matches.clear()
        self.evicted = 0
