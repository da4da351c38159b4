"""A crafted recording's worst case for the console: every record at one instant, and more active alerts
than a live engine ever raises.  A poll plays at most MAX_EVENTS_PER_POLL events or MAX_RECORDS_PER_POLL
records, the rest at the next polls (nothing lost); the console holds at most ACTIVE_KEPT active alerts,
letting go those last seen longest ago, and says so once.  No root (an attacker's review, session 26)."""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ironpost_tui.detectors import Alert, AlertChange, ChangeKind
from ironpost_tui.records import recording
from ironpost_tui.records.recording import ReplaySource
from ironpost_tui.ui.state import ACTIVE_KEPT, RESOLVED_KEPT, ConsoleState

INFO = {"iface": "eth0", "mode": "native", "attached": True, "started_at": 1_700_000_000.0, "config_path": "",
        "blocklist_capacity": 10000, "protected": []}  # fmt: skip
EVENT = {"ts": 1_700_000_000.7, "family": 4, "src": "198.18.0.9", "dst": "198.18.0.1", "sport": 4000, "dport": 22,
         "proto": 6, "flags": 2, "len": 60, "verdict": "drop", "rule": "r1"}  # fmt: skip
RECORDS, PER_RECORD = 40, 1_000


def one_instant(path: Path) -> Path:
    """40 records of 1,000 events each, all at t=0, then a notice at t=1 (the file's end)."""
    with gzip.open(path, "wb") as f:
        f.write(json.dumps({"kind": "start", "v": 1, "t": 0, "info": INFO}).encode() + b"\n")
        line = json.dumps({"kind": "events", "t": 0, "events": [EVENT] * PER_RECORD}).encode() + b"\n"
        for _ in range(RECORDS):
            f.write(line)
        f.write(json.dumps({"kind": "notice", "t": 1, "text": "end"}).encode() + b"\n")
    return path


def play(path: Path) -> list[Any]:
    source = ReplaySource(path, speed=1e9)
    try:
        updates = []
        while not updates or source._next is not None:
            updates.append(source.poll(0))
            assert len(updates) < 100
        return updates
    finally:
        source.close()


def test_a_recording_of_one_instant_plays_in_bounded_polls_and_loses_nothing(tmp_path: Path) -> None:
    updates = play(one_instant(tmp_path / "instant.ipr.gz"))
    sizes = [len(u.events) for u in updates]
    assert sum(sizes) == RECORDS * PER_RECORD and all(u.notices == () for u in updates[:-1])
    assert max(sizes) <= recording.MAX_EVENTS_PER_POLL + PER_RECORD  # a record past the limit ends the poll
    assert len([s for s in sizes if s]) >= RECORDS * PER_RECORD // (recording.MAX_EVENTS_PER_POLL + PER_RECORD)
    assert updates[-1].notices == ("end",) and updates[-1].at == 1


def test_a_paused_seek_plays_the_whole_way_to_its_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Paused, a seek forward over more records than a poll plays reaches its target over the next polls (a
    first version of the limit set the position back to the last record played, and a paused replay stayed
    there); backwards too, from the start again."""
    monkeypatch.setattr(recording, "MAX_RECORDS_PER_POLL", 5)
    path = tmp_path / "steps.ipr.gz"
    with gzip.open(path, "wb") as f:
        f.write(json.dumps({"kind": "start", "v": 1, "t": 0, "info": INFO}).encode() + b"\n")
        for t in range(1, 31):
            f.write(json.dumps({"kind": "events", "t": t, "events": [EVENT]}).encode() + b"\n")
    source = ReplaySource(path, speed=1.0, clock=lambda: 0.0)  # a clock that never moves: only seeks do
    try:
        source.pause()
        for target, played in ((25.0, 25), (15.0, 15)):
            source.seek(target)
            got = sum(len(source.poll(0).events) for _ in range(10))
            waiting = source._next is not None and source._next.t > target  # the records past it, not played
            assert (source.position, got, waiting) == (target, played, True)
    finally:
        source.close()


def test_the_control_without_the_limit_plays_the_instant_in_one_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recording, "MAX_EVENTS_PER_POLL", 10**9)
    updates = play(one_instant(tmp_path / "instant.ipr.gz"))
    assert len(updates[0].events) == RECORDS * PER_RECORD


def raised(i: int, last_seen: float) -> AlertChange:
    a = Alert(i, "syn_flood", "high", f"198.18.{i // 256 % 256}.{i % 256}", "eth0", 500, 500, 10.0, 1.0, last_seen,
              "500 SYNs")  # fmt: skip
    return AlertChange(ChangeKind.RAISED, a)


def test_the_console_holds_at_most_active_kept_alerts_and_says_so_once() -> None:
    over = 50
    state = ConsoleState()
    said = f"more than {ACTIVE_KEPT:,} active alerts: the console shows the {ACTIVE_KEPT:,} seen last"
    # The first `over` alerts are seen last (the newest); the rest in order: those let go are ids over..2*over-1.
    changes = [raised(i, 1_000.0 + (10**6 if i < over else i)) for i in range(ACTIVE_KEPT + over)]
    state.change_alerts(tuple(changes[: ACTIVE_KEPT - 1]))
    assert len(state.alerts) == ACTIVE_KEPT - 1 and not state.notices and not state.alerts_capped  # the control
    state.change_alerts(tuple(changes[ACTIVE_KEPT - 1 :]))
    assert len(state.alerts) == ACTIVE_KEPT and state.alerts_capped
    assert set(range(ACTIVE_KEPT + over)) - set(state.alerts) == set(range(over, 2 * over))
    assert list(state.notices) == [said]
    state.change_alerts((raised(ACTIVE_KEPT + over, 2e6),))
    assert len(state.alerts) == ACTIVE_KEPT and len(state.notices) == 1 and state.alerts_capped  # said once
    # Resolved alerts are kept beside them, the newest RESOLVED_KEPT; under the limit again, no longer capped.
    gone = [AlertChange(ChangeKind.RESOLVED, replace(c.alert, resolved_at=5.0)) for c in changes[-300:]]
    state.change_alerts(tuple(gone))
    assert sum(a.resolved for a in state.alerts.values()) == RESOLVED_KEPT and not state.alerts_capped
    state.reset()  # a replay went back: said again when it happens again
    state.change_alerts(tuple(changes[: ACTIVE_KEPT + 1]))
    assert state.alerts_capped and list(state.notices) == [said, said]


def test_the_alerts_pane_says_while_more_alerts_are_active_than_it_shows() -> None:
    import asyncio

    from textual.app import App, ComposeResult
    from textual.widgets import Static

    from ironpost_tui.ui.themes import VARIABLE_DEFAULTS
    from ironpost_tui.ui.widgets.alert_table import AlertTable

    class PaneApp(App[None]):
        def get_theme_variable_defaults(self) -> dict[str, str]:
            return dict(VARIABLE_DEFAULTS)

        def compose(self) -> ComposeResult:
            yield AlertTable()

    seen: list[str] = []

    async def main() -> None:
        async with PaneApp().run_test(size=(100, 20)) as pilot:
            table = pilot.app.query_one(AlertTable)
            for capped in (False, True):
                table.capped = capped
                table.alerts = (raised(1, 5.0).alert, raised(2, 6.0).alert)
                await pilot.pause()
                seen.append(str(table.query_one("#alert-status", Static).content))

    asyncio.run(main())
    plain = "2 active, 2 not acknowledged, 0 resolved"
    assert seen == [plain, plain + " · more are active: the ones seen last are shown"]
