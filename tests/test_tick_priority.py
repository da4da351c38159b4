"""The thread that ticks runs at TICK_NICE (as root), and only that thread: the console's and the metrics
server's threads keep theirs."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from ironpost_tui.engine import engine
from ironpost_tui.errors import NoSuchInterface

pytestmark = pytest.mark.root


def nice_of_a_thread(raise_it: bool) -> int:
    seen: list[int] = []

    def body() -> None:
        tid = threading.get_native_id()
        if raise_it:
            engine.raise_priority(tid)
        seen.append(os.getpriority(os.PRIO_PROCESS, tid))

    t = threading.Thread(target=body)
    t.start()
    t.join()
    return seen[0]


def test_the_ticking_thread_alone_is_raised() -> None:
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert before > engine.TICK_NICE  # the control: this thread starts below the tick's priority
    assert nice_of_a_thread(raise_it=True) == engine.TICK_NICE
    assert nice_of_a_thread(raise_it=False) == before  # a new thread of the same process: not raised
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before


def test_switch_interval_is_short_once_an_engine_starts() -> None:
    """Engine.start sets it before anything else (a start that fails later still has set it)."""
    old = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        with pytest.raises(NoSuchInterface):  # the start stops early
            engine.Engine(engine.EngineOptions(iface="ipnoexist0")).start()
        assert sys.getswitchinterval() == pytest.approx(engine.SWITCH_INTERVAL)
    finally:
        sys.setswitchinterval(old)
