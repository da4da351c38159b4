"""The ticks' times (engine/tick_times.py): the run delay read from the kernel counts a thread's waits for a
CPU and nothing else, and the own histogram is the wall clock less it.

The waits are made for real: a busy process pinned to the CPU the measured thread is pinned to.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from ironpost_tui.engine.tick_times import TickSpan, TickTimes, run_delay

SPAN = 0.3  # seconds each measured thread spins or sleeps
NICE = 10  # the measured threads' (weight 110 against the busy process's 1024)


@pytest.fixture
def busy_cpu() -> Iterator[int]:
    """A CPU of this process's with a busy process pinned to it, for as long as the test runs."""
    cpu = min(os.sched_getaffinity(0))
    code = f"import os, sys\nos.sched_setaffinity(0, {{{cpu}}})\nprint('pinned', flush=True)\nwhile True:\n    pass\n"
    busy = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert busy.stdout is not None and busy.stdout.readline().strip() == "pinned"
        yield cpu
    finally:
        busy.kill()
        busy.wait()


def on_cpu(cpu: int, work: Callable[[], None]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, run delay) of ``work`` in a new thread pinned to ``cpu`` at NICE: it gets
    about a tenth of the CPU beside a busy process, so its time running and its time waiting differ."""
    out: list[tuple[float, float, float]] = []

    def run() -> None:
        os.sched_setaffinity(0, {cpu})  # this thread only
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        time.sleep(0.01)  # let the pin take effect
        d0, t0, c0 = run_delay(), time.perf_counter(), time.thread_time()
        work()
        d1, t1, c1 = run_delay(), time.perf_counter(), time.thread_time()
        assert d0 is not None and d1 is not None, "this kernel keeps no run delay"
        out.append((t1 - t0, c1 - c0, d1 - d0))

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert out, "the measured thread failed"
    return out[0]


def spin() -> None:
    end = time.perf_counter() + SPAN
    while time.perf_counter() < end:
        pass


def test_run_delay_is_the_wait_for_a_cpu(busy_cpu: int) -> None:
    # A thread that wants the CPU beside a busy process of more weight waits for it most of the time: the
    # kernel's run delay, not its time on the CPU (the schedstat's first field).
    wall, cpu, waited = on_cpu(busy_cpu, spin)
    assert waited >= 0.6 * wall and cpu <= 0.4 * wall, (wall, cpu, waited)
    assert cpu + waited == pytest.approx(wall, abs=0.05)  # on a CPU or waiting for one: nothing else
    # Negative control: a thread that sleeps beside the same busy process does not wait for the CPU (only for
    # its wake-up's slice).
    wall, cpu, waited = on_cpu(busy_cpu, lambda: time.sleep(SPAN))
    assert wall >= SPAN and waited < 0.05, (wall, cpu, waited)


def test_run_delay_without_the_kernels_figures() -> None:
    assert run_delay("/nonexistent/schedstat") is None
    assert run_delay("/proc/self/status") is None  # not numbers: None, not an exception
    assert run_delay() is not None  # this kernel keeps it (the CrowdSec scale case relies on it)


def test_own_seconds_are_the_wall_clock_less_the_wait() -> None:
    times = TickTimes()
    assert times.snapshot().own is None  # no tick yet: no histogram
    times.observe(0.15, 0.01, 0.08)  # 150 ms of wall clock, 80 of them in the run queue
    snap = times.snapshot()
    assert dict(snap.wall.buckets)[0.1] == 0  # over 100 ms of wall clock ...
    assert snap.own is not None and dict(snap.own.buckets)[0.1] == 1  # ... and 70 ms of its own
    assert snap.own.total == pytest.approx(0.07)
    times.observe(0.2, 0.01, None)  # a tick whose run delay was not read: not in the own histogram
    snap = times.snapshot()
    assert snap.wall.count == 2 and snap.own is not None and snap.own.count == 1
    times.observe(0.01, 0.01, 0.02)  # a wait read as longer than the tick (the reads' own times): 0, not < 0
    assert times.snapshot().own.total == pytest.approx(0.07)  # type: ignore[union-attr]


def test_a_ticks_span_sums_its_parts_and_not_the_time_between() -> None:
    """A tick's detection read is made off the engine's lock and the rest under it: its time is both parts', not
    the wait for the lock between them (another's work).  30 ms of sleep in each part, 200 ms between."""
    span = TickSpan()
    with span.part():
        time.sleep(0.03)
    time.sleep(0.2)  # the wait for the lock
    with span.part():
        time.sleep(0.03)
    assert 0.06 <= span.wall < 0.2, span.wall
    assert span.cpu < span.wall
    assert span.waited is None or 0 <= span.waited <= span.wall
    broken = TickSpan()
    with broken.part():
        pass
    assert broken.waited is not None or run_delay() is None  # known where the kernel keeps it
