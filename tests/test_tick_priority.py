"""The thread that ticks runs at TICK_NICE (as root), and only that thread: the console's and the metrics
server's threads keep theirs; and only when the engine owns its process (the agent, the console), never
as a library in someone else's."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest
from support import netlab

from ironpost_tui.engine import engine, switching
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


def test_switch_interval_is_short_once_an_engine_that_owns_its_process_starts() -> None:
    """Engine.start sets it when its start ends, however it ends (here a start that fails at once), for
    the agent and the console (``own_process``); as a library it leaves the caller's process alone."""
    old = sys.getswitchinterval()
    try:
        for own, expected in ((False, 0.005), (True, switching.SWITCH_INTERVAL)):
            sys.setswitchinterval(0.005)
            with pytest.raises(NoSuchInterface):  # the start stops early
                engine.Engine(engine.EngineOptions(iface="ipnoexist0", own_process=own)).start()
            assert sys.getswitchinterval() == pytest.approx(expected), own
    finally:
        sys.setswitchinterval(old)


def ticking_thread_nice(lab: netlab.Lab, tmp_path: Path, own: bool) -> int:
    """The nice of a thread that started an engine on the lab and ticked it once."""
    seen: list[int] = []

    def body() -> None:
        eng = engine.Engine(
            engine.EngineOptions(
                iface=lab.host_if, xdp_mode="native", own_process=own, audit_log=tmp_path / "audit.log"
            )
        )
        try:
            eng.start()
            eng.tick(timeout_ms=1)
            seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        finally:
            eng.close()

    t = threading.Thread(target=body)
    t.start()
    t.join()
    return seen[0]


def test_a_library_engine_leaves_its_callers_thread_alone(lab: netlab.Lab, tmp_path: Path) -> None:
    """The tests themselves, and any program using the library, tick in their own threads: those keep
    their priority (and the processes they start after it); the agent's and console's ticking thread is
    raised (the control)."""
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert ticking_thread_nice(lab, tmp_path, own=False) == before
    assert ticking_thread_nice(lab, tmp_path, own=True) == engine.TICK_NICE
