"""detectors/pending.py: the admission's table of sources not watched yet.  It sums per key, forgets on
clear and drop, keeps a slow real source through a flood of one-packet sources (the way holding the least
goes, not the whole table), and a flood of distinct sources costs no memory after it is made."""

from __future__ import annotations

import random
import tracemalloc
from collections.abc import Callable

import pytest

from ironpost_tui.detectors.pending import WAYS, PendingCounts
from ironpost_tui.kernel import abi


def key(i: int) -> bytes:
    return abi.AGG_KEY.pack(i.to_bytes(4, "big").ljust(16, b"\0"), abi.FAMILY_V4)


def tcp(c: tuple[int, ...]) -> int:
    return c[1]


def test_sums_per_key_and_forgets_on_drop_and_clear() -> None:
    t = PendingCounts(64, tcp)
    assert t.add(key(1), (1, 2, 0, 0)) == (1, 2, 0, 0)
    assert t.add(key(2), (0, 1, 1, 0)) == (0, 1, 1, 0)
    assert t.add(key(1), (3, 4, 0, 1)) == (4, 6, 0, 1)
    assert len(t) == 2 and t.get(key(1)) == (4, 6, 0, 1) and t.get(key(3)) is None
    t.drop(key(1))
    assert t.get(key(1)) is None and len(t) == 1
    assert t.add(key(1), (1, 1, 0, 0)) == (1, 1, 0, 0)  # from zero again
    t.clear()
    assert len(t) == 0 and t.get(key(2)) is None and t.get(key(1)) is None
    assert t.add(key(2), (0, 5, 0, 0)) == (0, 5, 0, 0)
    with pytest.raises(ValueError, match="20 bytes"):
        t.add(b"short", (1, 1, 0, 0))


def test_a_slow_source_outlasts_a_flood_of_one_packet_sources() -> None:
    """The flood's keys fill every set many times over; the slow source, holding more, keeps its way."""
    t = PendingCounts(1024, tcp)
    slow = key(0xC6120007)
    sent = 0
    rng = random.Random(7)
    for _ in range(50):
        sent += 2
        t.add(slow, (2, 2, 0, 0))
        for _ in range(2000):
            t.add(key(rng.getrandbits(32) | 1), (1, 1, 0, 0))
        assert len(t) <= t.capacity
    assert t.get(slow) == (sent, sent, 0, 0)
    assert len(t) == t.capacity  # negative control: the flood did fill the table
    # A one-packet source, added last, is what goes first from its set when the set fills.
    one = key(0x01020304)
    t.add(one, (1, 1, 0, 0))
    for i in range(50_000):
        t.add(key(0x7F000000 + 2 * i), (5, 5, 0, 0))
    assert t.get(one) is None and t.get(slow) == (sent, sent, 0, 0)


def test_a_flood_of_distinct_sources_costs_no_memory() -> None:
    t = PendingCounts(16_384, tcp)
    keys = [key(i) for i in range(100_000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for k in keys:
            t.add(k, (1, 1, 0, 0))
        grown = tracemalloc.get_traced_memory()[0] - before
        held: dict[bytes, tuple[int, ...]] = {}  # positive control: the dict it replaced
        d0 = tracemalloc.get_traced_memory()[0]
        for k in keys[:16_384]:
            held[k] = (1, 1, 0, 0) if k[0] else (1, 1, 0, 1)
        dict_grown = tracemalloc.get_traced_memory()[0] - d0
    finally:
        tracemalloc.stop()
    assert len(t) == t.capacity == 16_384 and WAYS == 4
    assert grown < 16 * 1024, grown
    assert dict_grown > 512 * 1024, dict_grown


def test_a_key_that_reaches_the_limit_is_let_go_and_takes_no_way() -> None:
    """The admission's use: a key admitted at once never takes (or evicts) a way; one admitted later frees
    its way."""
    t = PendingCounts(4, tcp)  # one set of 4 ways
    for i in range(4):
        t.add(key(i), (1, 1, 0, 0), limit=10)
    assert len(t) == 4
    assert t.add(key(99), (0, 50, 0, 0), limit=10) == (0, 50, 0, 0)
    assert len(t) == 4 and all(t.get(key(i)) == (1, 1, 0, 0) for i in range(4))  # none evicted
    assert t.add(key(2), (0, 9, 0, 0), limit=10) == (1, 10, 0, 0)  # reached: let go
    assert t.get(key(2)) is None and len(t) == 3


def test_where_a_key_goes_is_a_secret_of_each_table() -> None:
    """Sets are drawn by a per-table secret, not by hash(key) alone (which PYTHONHASHSEED can fix): two
    tables place the same keys in different sets."""
    a, b = PendingCounts(16_384, tcp), PendingCounts(16_384, tcp)
    keys = [key(i) for i in range(64)]
    assert [a._set(k) for k in keys] != [b._set(k) for k in keys]
    assert [a._set(k) for k in keys] == [a._set(k) for k in keys]  # stable within a table


Way = tuple[bytes, tuple[int, ...]] | None  # a key and its counts; None: a free way


class _Model:
    """The table as its docstring says it works, written plainly (a list of ways per set, in way order): what
    PendingCounts is compared with, operation by operation."""

    def __init__(self, table: PendingCounts, metric: Callable[[tuple[int, ...]], int]) -> None:
        self.sets: dict[int, list[Way]] = {}
        self.where = table._set  # the same secret placement: sets are the table's to draw
        self.metric = metric

    def _ways(self, key: bytes) -> list[Way]:
        return self.sets.setdefault(self.where(key), [None] * WAYS)

    def _at(self, ways: list[Way], key: bytes) -> int | None:
        return next((i for i, w in enumerate(ways) if w is not None and w[0] == key), None)

    def add(self, key: bytes, delta: tuple[int, ...], limit: int | None) -> tuple[int, ...]:
        ways = self._ways(key)
        at = self._at(ways, key)
        held = ways[at] if at is not None else None
        total = tuple(delta) if held is None else tuple(a + d for a, d in zip(held[1], delta, strict=True))
        if limit is not None and self.metric(total) >= limit:
            if at is not None:
                ways[at] = None
            return total
        if at is None:
            free = [i for i, w in enumerate(ways) if w is None]
            counts = [w[1] if w is not None else () for w in ways]
            at = free[0] if free else min(range(WAYS), key=lambda i: (self.metric(counts[i]), i))
        ways[at] = (key, total)
        return total

    def get(self, key: bytes) -> tuple[int, ...] | None:
        ways = self._ways(key)
        at = self._at(ways, key)
        held = ways[at] if at is not None else None
        return held[1] if held is not None else None

    def drop(self, key: bytes) -> None:
        ways = self._ways(key)
        at = self._at(ways, key)
        if at is not None:
            ways[at] = None

    def __len__(self) -> int:
        return sum(w is not None for ways in self.sets.values() for w in ways)


def scan(c: tuple[int, ...]) -> int:
    return c[2] + c[3]


@pytest.mark.parametrize("metric", [tcp, scan], ids=["syn admission", "scan admission"])
def test_every_operation_gives_what_the_plain_table_gives(metric: Callable[[tuple[int, ...]], int]) -> None:
    """Random adds (with and without a limit, keys new and held, sets full and not), gets, drops and clears on a
    table of 4 sets, against _Model: each answer, and the held count, the same.  The eviction's ties (ways that
    hold as much) and keys let go at their limit are in the mix: a flood's one-packet keys tie in every set."""
    rng = random.Random(11)
    t = PendingCounts(16, metric)
    model = _Model(t, metric)
    pool = [key(i) for i in range(40)]
    evicted = released = 0
    for step in range(20_000):
        k = rng.choice(pool)
        op = rng.random()
        if op < 0.8:
            delta = tuple(rng.choice((0, 0, 1, 1, 2, 5)) for _ in range(4))
            limit = rng.choice((None, None, 6, 12))
            before = len(model)
            was = model.get(k)
            got, want = t.add(k, delta, limit), model.add(k, delta, limit)
            assert got == want, step
            if was is None and len(model) == before and model.get(k) is not None:
                evicted += 1
            if was is not None and model.get(k) is None:
                released += 1
        elif op < 0.9:
            assert t.get(k) == model.get(k), step
        elif op < 0.995:
            t.drop(k)
            model.drop(k)
        else:
            t.clear()
            model.sets.clear()
        assert len(t) == len(model), step
    assert all(t.get(k) == model.get(k) for k in pool)
    assert evicted > 1000 and released > 100, (evicted, released)  # the full sets' path and the limit's, taken


def test_counts_of_another_width_are_refused_and_change_nothing() -> None:
    t = PendingCounts(16, tcp)
    t.add(key(1), (1, 1, 0, 0))
    with pytest.raises(ValueError, match="4 counters, not 3"):
        t.add(key(1), (1, 1, 0))
    with pytest.raises(ValueError, match="4 counters, not 5"):
        t.add(key(2), (1, 1, 0, 0, 9))
    assert t.get(key(1)) == (1, 1, 0, 0) and t.get(key(2)) is None and len(t) == 1


def test_a_key_is_found_only_at_a_ways_start_in_a_way_held_now() -> None:
    """The set's keys are searched as one run of bytes: two held keys side by side hold a third's bytes across
    their boundary, and a way let go (cleared, dropped) keeps its old bytes; neither is that key's way."""
    t = PendingCounts(4, tcp, key_size=4)  # one set of 4 ways of 4-byte keys
    t.add(b"ABCD", (1, 1, 0, 0))
    t.add(b"EFGH", (2, 2, 0, 0))
    assert t.get(b"CDEF") is None  # "ABCDEFGH": at offset 2, no way's start
    assert t.add(b"CDEF", (3, 3, 0, 0)) == (3, 3, 0, 0) and t.get(b"ABCD") == (1, 1, 0, 0)
    assert t.add(b"CDEF", (1, 1, 0, 0)) == (4, 4, 0, 0) and len(t) == 3  # its own way, past the bytes at 2
    t.clear()
    t.add(b"WXYZ", (4, 4, 0, 0))  # the first way again; "EFGH" and "CDEF" stay in the ways' bytes, let go
    assert t.get(b"EFGH") is None and t.get(b"CDEF") is None and len(t) == 1
    assert t.add(b"CDEF", (5, 5, 0, 0)) == (5, 5, 0, 0)  # from zero: the bytes let go are not its way
    t.drop(b"WXYZ")
    assert t.get(b"WXYZ") is None and t.add(b"WXYZ", (1, 0, 0, 0)) == (1, 0, 0, 0)


def test_a_count_past_64_bits_is_refused_and_changes_nothing() -> None:
    """The table holds 64-bit counters: a total past them is refused before a way is taken or written."""
    t = PendingCounts(4, tcp)
    for i in range(4):
        t.add(key(i), (1, 1, 0, 0))
    with pytest.raises(OverflowError):
        t.add(key(9), (1, 1 << 70, 0, 0))  # a full set: it would have evicted a way
    with pytest.raises(OverflowError):
        t.add(key(2), (0, (1 << 63) - 1, 0, 0))  # held: its total would pass 2**63 - 1
    assert len(t) == 4 and all(t.get(key(i)) == (1, 1, 0, 0) for i in range(4)) and t.get(key(9)) is None
    assert t.add(key(9), (1, 1, 0, 0)) == (1, 1, 0, 0)  # the table still works: the first way goes, as before
    assert t.get(key(0)) is None and len(t) == 4
