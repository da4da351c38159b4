"""ironpost_tui/collector.py: the garbage collector held off by blocks in several threads, on again when the
last one ends (if it was on when the first began), and start_gc's switch through the same count."""

from __future__ import annotations

import contextlib
import gc
import random
import threading
from collections.abc import Iterator

from ironpost_tui import collector


@contextlib.contextmanager
def naive() -> Iterator[None]:
    """The two-step switch it replaced (the control): each block reads the state, then turns it off."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def interleaved(held: object) -> list[bool]:
    """Y holds, X holds, Y lets go, X lets go, as two threads may: the collector's state after each step."""
    y, x = held(), held()  # type: ignore[operator]
    states = []
    y.__enter__()
    states.append(gc.isenabled())
    x.__enter__()
    states.append(gc.isenabled())
    y.__exit__(None, None, None)
    states.append(gc.isenabled())  # X still holds it
    x.__exit__(None, None, None)
    states.append(gc.isenabled())
    return states


def test_overlapping_blocks_keep_it_off_until_the_last_ends(gc_restored: None) -> None:
    gc.enable()
    assert interleaved(collector.held) == [False, False, False, True]
    gc.enable()
    assert interleaved(naive) == [False, False, True, True]  # the control: on while X still holds it
    gc.disable()
    assert interleaved(collector.held) == [False, False, False, False]  # off before: off after


def test_enable_and_disable_within_a_block_take_effect_when_it_ends(gc_restored: None) -> None:
    collector.disable()
    with collector.held():
        collector.enable()  # start_gc.settle() from another thread, while a frame is read
        assert not gc.isenabled()
        assert collector.enabled()
    assert gc.isenabled()
    with collector.held():
        collector.disable()  # start_gc.hold()
    assert not gc.isenabled() and not collector.enabled()
    collector.enable()
    assert gc.isenabled()


def test_threads_holding_at_random_leave_it_on(gc_restored: None) -> None:
    gc.enable()
    barrier = threading.Barrier(8)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        barrier.wait()
        for _ in range(2000):
            with collector.held():
                if rng.random() < 0.1:
                    with collector.held():
                        pass

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert gc.isenabled()
