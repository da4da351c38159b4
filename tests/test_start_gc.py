"""engine/start_gc.py: the cyclic collector held off over a start (from the command line's run) and set
back once the engine has started, with what the start built frozen out of its later walks; only in a
process the engine owns (the agent, the console), never as a library in someone else's."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from ironpost_tui import cli
from ironpost_tui.engine import engine, start_gc
from ironpost_tui.errors import IronpostError, NoSuchInterface


@pytest.fixture
def collector() -> Iterator[None]:
    """The test process's collector as it was, whatever the test did to it."""
    enabled = gc.isenabled()
    try:
        yield
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()
        else:
            gc.disable()


def test_hold_turns_the_collector_off_and_settle_freezes_what_exists_and_turns_it_on(collector: None) -> None:
    gc.unfreeze()
    gc.enable()
    start_gc.hold()
    assert not gc.isenabled()
    built = [[i] for i in range(1000)]  # objects the collector tracks, made while it is held
    assert gc.get_freeze_count() == 0  # the control: nothing frozen yet
    start_gc.settle()
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(built)  # what the start built is out of the collector's walks
    after = [[i] for i in range(1000)]
    assert all(not _frozen_only(x) for x in after)  # and what comes after is collected as before


def _frozen_only(obj: object) -> bool:
    """Whether ``obj`` is in the permanent generation (gc.freeze): not among the generations' objects."""
    return not any(o is obj for o in gc.get_objects())


@pytest.mark.root
@pytest.mark.parametrize("own", [True, False])
def test_an_engine_that_owns_its_process_settles_even_when_its_start_fails(
    collector: None, monkeypatch: pytest.MonkeyPatch, own: bool
) -> None:
    """The agent's and the console's engine (own_process) turns the collector back on however its start
    ends (here: no such interface, the first thing it looks up); as a library it never touches it."""
    settled: list[bool] = []
    monkeypatch.setattr(start_gc, "settle", lambda: settled.append(True))
    with pytest.raises(NoSuchInterface):
        engine.Engine(engine.EngineOptions(iface="ipnoexist0", own_process=own)).start()
    assert settled == ([True] if own else [])


def test_the_command_line_run_holds_the_collector_before_anything(
    collector: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    held: list[bool] = []
    monkeypatch.setattr(start_gc, "hold", lambda: held.append(True))
    with pytest.raises(IronpostError):
        cli._cmd_run(["../x"])  # refused at once (an interface name that is a path)
    assert held == [True]
    held.clear()
    assert cli.main(["check-config", "/nonexistent/ironpost.toml"]) != 0  # the control: not a run
    assert held == []
