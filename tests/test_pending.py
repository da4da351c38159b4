"""detectors/pending.py: the admission's table of sources not watched yet.  It sums per key, forgets on
clear and drop, keeps a slow real source through a flood of one-packet sources (the way holding the least
goes, not the whole table), and a flood of distinct sources costs no memory after it is made."""

from __future__ import annotations

import random
import tracemalloc

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
