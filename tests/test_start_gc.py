"""engine/start_gc.py: the cyclic collector held off over a start (from the command line's run) and set
back once the engine has started, with what the start built frozen out of its later walks; only in a
process the engine owns (the agent, the console), never as a library in someone else's."""

from __future__ import annotations

import gc

import pytest

from ironpost_tui import cli
from ironpost_tui.engine import engine, start_gc
from ironpost_tui.errors import IronpostError, NoSuchInterface


def test_hold_turns_the_collector_off_and_settle_freezes_what_exists_and_turns_it_on(gc_restored: None) -> None:
    gc.unfreeze()
    gc.enable()
    start_gc.hold()
    assert not gc.isenabled()
    built = [[i] for i in range(1000)]  # objects the collector tracks, made while it is held
    assert not frozen(built) and not frozen(built[:1])  # the control: in the collector's generations
    start_gc.settle()
    assert gc.isenabled()
    assert all(frozen([x]) for x in (built, built[0], built[-1]))  # out of the collector's walks
    after = [[0]]
    assert not frozen(after)  # what comes after is collected as before
    start_gc.release()  # settled: nothing to do
    assert gc.isenabled()


def test_release_turns_the_collector_back_on_when_nothing_settled(gc_restored: None) -> None:
    """A run that ended before its engine started (an error, a test calling the command line): the
    collector as hold() found it (the control: off before hold(), it stays off)."""
    for before in (True, False):
        gc.enable() if before else gc.disable()
        start_gc.hold()
        assert not gc.isenabled()
        start_gc.release()
        assert gc.isenabled() == before
        start_gc.release()  # a second release changes nothing
        assert gc.isenabled() == before


def frozen(objs: list[object]) -> bool:
    """Whether every one of ``objs`` is in the permanent generation (gc.freeze): tracked, and in none of
    the collector's three generations."""
    walked = {id(o) for g in range(3) for o in gc.get_objects(generation=g)}
    return all(gc.is_tracked(o) and id(o) not in walked for o in objs)


@pytest.mark.root
@pytest.mark.parametrize("own", [True, False])
def test_an_engine_that_owns_its_process_settles_even_when_its_start_fails(
    gc_restored: None, monkeypatch: pytest.MonkeyPatch, own: bool
) -> None:
    """The agent's and the console's engine (own_process) turns the collector back on however its start
    ends (here: no such interface, the first thing it looks up); as a library it never touches it."""
    settled: list[bool] = []
    monkeypatch.setattr(start_gc, "settle", lambda: settled.append(True))
    with pytest.raises(NoSuchInterface):
        engine.Engine(engine.EngineOptions(iface="ipnoexist0", own_process=own)).start()
    assert settled == ([True] if own else [])


def test_the_command_line_run_holds_the_collector_before_anything(
    gc_restored: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    held: list[str] = []
    monkeypatch.setattr(start_gc, "hold", lambda: held.append("hold"))
    monkeypatch.setattr(start_gc, "release", lambda: held.append("release"))
    with pytest.raises(IronpostError):
        cli._cmd_run(["../x"])  # refused at once (an interface name that is a path)
    assert held == ["hold", "release"]  # and the collector given back when the run ends
    held.clear()
    assert cli.main(["check-config", "/nonexistent/ironpost.toml"]) != 0  # the control: not a run
    assert held == []


class Cycle:
    """An object in a reference cycle with itself: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


def test_settle_with_collect_frees_the_starts_garbage_before_setting_the_rest_aside(gc_restored: None) -> None:
    import weakref

    for collect in (True, False):
        gc.unfreeze()
        gc.collect()
        gc.enable()
        start_gc.hold()
        garbage = Cycle()
        gone = weakref.ref(garbage)
        kept = [[1]]  # what lives on
        del garbage
        start_gc.settle(collect=collect)
        assert gc.isenabled() and frozen(kept) and not start_gc.holding()
        # With collect, the cycle is freed; without (the control), it is set aside with the rest, for good.
        assert (gone() is None) == collect
        gc.unfreeze()


def test_the_console_process_settles_after_its_first_attached_frame(
    gc_restored: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The console's own process holds the collector through Textual's start and the first rules table (its
    engine is in the other process), and settles, with one full collection, once it has said attached."""
    import asyncio

    from support.ui import StartingSource, live_app

    from ironpost_tui.ui import app as ui_app

    calls: list[bool] = []
    monkeypatch.setattr(start_gc, "settle", lambda collect=False: (calls.append(collect), start_gc._held.clear()))
    monkeypatch.setattr(ui_app, "SETTLE_AFTER_SECS", 0.01)
    for holding in (True, False):  # False: the control, a process whose engine settled it (one process)
        calls.clear()
        start_gc._held[:] = [True] if holding else []
        source = StartingSource()
        source.go.set()

        async def main(source: StartingSource = source, holding: bool = holding) -> None:
            async with live_app(source).run_test() as pilot:
                for _ in range(200):
                    await pilot.pause(0.01)
                    if "attached" in str(pilot.app.main.query_one("#status").render()) and (calls or not holding):
                        break
                await pilot.pause(0.05)

        asyncio.run(main())
        assert calls == ([True] if holding else [])
    start_gc._held.clear()


def test_the_console_process_settles_after_a_start_that_failed(
    gc_restored: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The error screen waits for a key as long as the operator leaves it: the collector is let go there too."""
    import asyncio

    from support.ui import StartingSource, live_app

    from ironpost_tui.ui import app as ui_app
    from ironpost_tui.ui.screens.error import ErrorScreen

    calls: list[bool] = []
    monkeypatch.setattr(start_gc, "settle", lambda collect=False: (calls.append(collect), start_gc._held.clear()))
    monkeypatch.setattr(ui_app, "SETTLE_AFTER_SECS", 0.01)
    start_gc._held[:] = [True]
    source = StartingSource(fail=IronpostError("no such interface"))
    source.go.set()

    async def main() -> None:
        async with live_app(source).run_test() as pilot:
            for _ in range(200):
                await pilot.pause(0.01)
                if isinstance(pilot.app.screen, ErrorScreen) and calls:
                    break

    asyncio.run(main())
    assert calls == [True]
    start_gc._held.clear()
