"""LiveSource's early start (begin): the thread it compiles and attaches in takes no signal."""

from __future__ import annotations

import signal
import threading

import pytest

from ironpost_tui.engine.engine import Engine, EngineOptions
from ironpost_tui.engine.live import LiveSource


class Recorded(Exception):
    pass


def test_the_early_start_runs_with_signals_blocked_and_the_caller_keeps_its_own() -> None:
    """A signal delivered to the thread the verifier runs in interrupts the program's load (EAGAIN):
    the console's resizes (SIGWINCH) and kills go to the main thread instead."""
    live = LiveSource(Engine(EngineOptions(iface="lo")), None)
    seen: dict[str, object] = {}

    def start() -> None:
        seen["thread"] = threading.current_thread().name
        seen["blocked"] = signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the mask, unchanged
        raise Recorded

    live._supervisor.start = start  # type: ignore[method-assign,assignment]
    try:
        live.begin()
        with pytest.raises(Recorded):  # the start's failure is raised again in the thread that asks
            live.start()
    finally:
        live.close()
    blocked = seen["blocked"]
    assert isinstance(blocked, set) and seen["thread"] == "engine-start"
    assert {signal.SIGWINCH, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD} <= blocked
    # The control: this thread (the one that asked) blocks none of them.
    assert not {signal.SIGWINCH, signal.SIGTERM, signal.SIGINT} & signal.pthread_sigmask(signal.SIG_BLOCK, [])
