"""Live alerts in the console (Pilot, in process) against the real engine on a veth: SYNs from the
lab's namespace in bursts.  The alert row's count and last seen change while the bursts go on;
after ``b`` the row says blocked, with its time left and the block's drops (the kernel's RULE_HITS);
an auto-block that expires while the incident is open is renewed (and the notice says until when),
never beyond auto-block's caps, and not once the incident is resolved.  Needs root."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support import engine as running
from support import netlab
from support.traffic import SynBursts
from support.ui import TEST_SETTINGS, Messages
from textual.pilot import Pilot

from ironpost_tui.config.store import RuleStore
from ironpost_tui.detectors import Alert, AlertState
from ironpost_tui.detectors.settings import AutoBlockLimits, SynFloodConfig
from ironpost_tui.engine.engine import Engine, EngineOptions
from ironpost_tui.engine.live import LiveSource
from ironpost_tui.ui.app import IronpostApp, make_app
from ironpost_tui.ui.log_handler import logging_to
from ironpost_tui.ui.messages import EditApplied, EditRefused, SourceFailed, SourceStarted
from ironpost_tui.ui.screens.block import BlockScreen
from ironpost_tui.ui.widgets.alert_table import AlertTable

pytestmark = pytest.mark.root
START_TIMEOUT = 120.0
FLOOD = SynFloodConfig(window_secs=5, threshold=50)


def engine_on(lab: netlab.Lab, tmp_path: Path, flood: SynFloodConfig, limits: AutoBlockLimits) -> Engine:
    return Engine(
        EngineOptions(iface=lab.host_if, xdp_mode="native", rules=(), store=RuleStore(tmp_path / "rules.toml"),
                      syn_flood=flood, auto_block=limits, auto_journal=tmp_path / "auto.json")
    )  # fmt: skip


async def wait_until(pilot: Pilot[int], cond: Callable[[], object], timeout: float = 30.0, what: str = "") -> None:
    """Poll ``cond`` (after a redraw: the test settings refresh once a minute) up to ``timeout``."""
    end = time.monotonic() + timeout
    while True:
        pilot.app.redraw()  # type: ignore[attr-defined]
        if cond():
            break
        if time.monotonic() > end:
            raise AssertionError(f"not met within {timeout:g} s: {what}")
        await asyncio.sleep(0.1)
    await pilot.pause()


def alert_of(app: IronpostApp, source: str) -> Alert | None:
    found = [a for a in app.state.alerts.values() if a.source == source and a.detector == "syn_flood"]
    return found[-1] if found else None


def cell(table: AlertTable, alert: Alert, column: str) -> str:
    return str(table.grid.get_cell(str(alert.id), column))


def test_a_flood_in_bursts_refreshes_its_row_and_after_b_the_row_says_blocked_with_time_left_and_drops(
    lab: netlab.Lab, tmp_path: Path
) -> None:
    engine = engine_on(lab, tmp_path, FLOOD, AutoBlockLimits(quiet_secs=30))
    source = LiveSource(engine, None)
    syns = SynBursts(lab, n=120, every=1.5)

    async def main() -> None:
        messages = Messages()
        app = make_app(TEST_SETTINGS, source, cursor_blink=False)
        async with app.run_test(size=(160, 48), message_hook=messages) as pilot:
            await messages.wait((SourceStarted, SourceFailed), pilot, after=0, timeout=START_TIMEOUT)
            assert messages.count(SourceFailed) == 0
            assert isinstance(pilot.app, IronpostApp)
            app_ = pilot.app
            table = app_.main.query_one(AlertTable)
            syns.start()
            await wait_until(pilot, lambda: alert_of(app_, lab.ns_ip4), what="a syn_flood alert")
            first = alert_of(app_, lab.ns_ip4)
            assert first is not None and first.state is AlertState.ACTIVE
            # The target is the host at the port the SYNs go to: ADDRESS:PORT, in the row too.
            assert [str(t) for t in first.targets] == [f"{lab.host_ip4}:{syns.port}"]
            assert cell(table, first, "target") == f"{lab.host_ip4}:{syns.port}"
            shown = (cell(table, first, "count"), cell(table, first, "last"))

            # The bursts go on: last seen moves with each, and the count in the window with it
            def refreshed() -> bool:
                a = alert_of(app_, lab.ns_ip4)
                return (
                    a is not None
                    and a.id == first.id
                    and a.last_seen >= first.last_seen + 2.5
                    and a.count != first.count
                )

            await wait_until(pilot, refreshed, what="the row refreshed by later bursts")
            now = alert_of(app_, lab.ns_ip4)
            assert now is not None and now.state is AlertState.ACTIVE
            assert (cell(table, now, "count"), cell(table, now, "last")) != shown
            assert cell(table, now, "last") != shown[1] and cell(table, now, "state") == "ACTIVE"

            # b on the row: the block dialog (10m by default), then the row says blocked
            await pilot.press("2")
            table.grid.focus()
            table.grid.move_cursor(row=table.grid.get_row_index(str(now.id)))
            await pilot.pause()
            done = messages.count(EditApplied) + messages.count(EditRefused)
            await pilot.press("b")
            assert isinstance(app_.screen, BlockScreen)
            await pilot.press("1")
            await messages.wait((EditApplied, EditRefused), pilot, after=done, timeout=15)
            assert messages.count(EditRefused) == 0

            def blocked() -> bool:
                a = alert_of(app_, lab.ns_ip4)
                return a is not None and a.state is AlertState.BLOCKED and a.dropped > 0

            await wait_until(pilot, blocked, what="the row blocked, with drops")
            b = alert_of(app_, lab.ns_ip4)
            assert b is not None and b.id == first.id and b.block is not None
            # 160x48: the alerts pane is a quarter of the screen, under 100 columns: the compact form,
            # the drops in the detail below the table; zoomed (z), the whole screen wide: all in the row
            assert re.fullmatch(r"blocked (9m|10m)", cell(table, b, "state")), cell(table, b, "state")
            detail = " ".join(str(table.query_one("#alert-detail").render()).split())  # as one line
            assert re.search(r"blocked by block-\S+, until \d\d:\d\d:\d\d \(\S+ left\), [\d,]+ dropped", detail), detail
            await pilot.press("z")
            await wait_until(pilot, lambda: table.size.width >= 100, what="the alerts pane zoomed")
            state = cell(table, b, "state")
            assert re.fullmatch(r"blocked · (9m|10m) left · \S+ dropped", state), state
            hits = {s.rule.id: s.hits for s in running.rule_status(engine)}
            assert hits[b.block.rule_id] >= b.dropped > 0  # the row's drops are the rule's kernel hits
            # The drops go on rising with the bursts, and the row with them
            await wait_until(pilot, lambda: (alert_of(app_, lab.ns_ip4) or b).dropped > b.dropped, what="more drops")
            syns.stop()
            await pilot.press("ctrl+q")

    try:
        asyncio.run(main())
    finally:
        syns.stop()
        source.close()


def _renewed(messages: list[str], source: str) -> list[str]:
    return [m for m in messages if f"auto-block of {source} renewed for" in m]


def test_an_auto_block_that_expires_during_the_incident_is_renewed_and_not_once_it_is_resolved(
    lab: netlab.Lab, tmp_path: Path
) -> None:
    flood = SynFloodConfig(window_secs=5, threshold=50, auto_block=True, block_ttl=4)
    engine = engine_on(lab, tmp_path, flood, AutoBlockLimits(quiet_secs=3))
    source = LiveSource(engine, None)
    syns = SynBursts(lab, n=120, every=1.0)
    notices: list[str] = []

    async def main() -> None:
        messages = Messages()
        app = make_app(TEST_SETTINGS, source, cursor_blink=False)
        with logging_to(app):
            async with app.run_test(size=(160, 48), message_hook=messages) as pilot:
                await messages.wait((SourceStarted, SourceFailed), pilot, after=0, timeout=START_TIMEOUT)
                assert isinstance(pilot.app, IronpostApp)
                app_ = pilot.app
                syns.start()
                await wait_until(pilot, lambda: any(f"auto-blocked {lab.ns_ip4} for 4 s (syn_flood), until " in n
                                                    for n in app_.state.notices), what="auto-blocked")  # fmt: skip
                first = alert_of(app_, lab.ns_ip4)
                assert first is not None
                rule_id = f"auto-syn_flood-{lab.ns_ip4}"
                expiry = {r.id: r.expires_at for r in running.rules(engine)}[rule_id]
                assert expiry is not None

                # It expires (4 s) while the bursts go on: the next burst renews it, the same incident
                await wait_until(pilot, lambda: _renewed(list(app_.state.notices), lab.ns_ip4), what="renewed")
                (line,) = _renewed(list(app_.state.notices), lab.ns_ip4)[:1]
                renewed = {r.id: r.expires_at for r in running.rules(engine)}.get(rule_id)
                assert renewed is not None and renewed > expiry + 3
                until = time.strftime("%H:%M:%S", time.localtime(renewed))
                assert f"renewed for 4 s, until {until}: alert {first.id} (syn_flood) still active" in line, line
                current = alert_of(app_, lab.ns_ip4)
                assert current is not None and current.id == first.id and not current.resolved

                # The negative control: the bursts stop, the incident is resolved (3 s of silence,
                # drops included), the block expires, and nothing renews it
                syns.stop()
                count = len(_renewed(list(app_.state.notices), lab.ns_ip4))
                await wait_until(pilot, lambda: (alert_of(app_, lab.ns_ip4) or first).resolved, what="resolved")
                await wait_until(pilot, lambda: rule_id not in {r.id for r in running.rules(engine)}, what="expired")
                # A burst now is a new incident, blocked afresh: not a renewal of the old one
                syns.burst()
                syns.burst()
                await wait_until(pilot, lambda: (alert_of(app_, lab.ns_ip4) or first).id != first.id, what="new alert")
                await wait_until(pilot, lambda: rule_id in {r.id for r in running.rules(engine)}, what="blocked again")
                assert len(_renewed(list(app_.state.notices), lab.ns_ip4)) == count
                notices.extend(app_.state.notices)
                await pilot.press("ctrl+q")

    try:
        asyncio.run(main())
    finally:
        syns.stop()
        source.close()
    assert sum(f"auto-blocked {lab.ns_ip4} for 4 s" in n for n in notices) == 2, notices


def test_a_renewal_stays_within_the_per_minute_cap(
    lab: netlab.Lab, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """max_blocks_per_minute 1: the first block uses the minute's one; when it expires during the
    incident the source is not blocked again, and the log says why."""
    flood = SynFloodConfig(window_secs=5, threshold=50, auto_block=True, block_ttl=2)
    engine = engine_on(lab, tmp_path, flood, AutoBlockLimits(max_blocks_per_minute=1, quiet_secs=30))
    syns = SynBursts(lab, n=120, every=0.7)
    rule_id = f"auto-syn_flood-{lab.ns_ip4}"
    caplog.set_level(logging.WARNING)
    engine.start()
    try:
        syns.start()
        seen_block = False
        end = time.monotonic() + 60
        while time.monotonic() < end:
            engine.tick(timeout_ms=50, events=False)
            present = rule_id in {r.id for r in running.rules(engine)}
            seen_block = seen_block or present
            if seen_block and not present and "not renewed" in caplog.text:
                break
        assert seen_block, caplog.text
        assert f"auto-block of {lab.ns_ip4} not renewed: 1 sources auto-blocked within a minute" in caplog.text
        assert "renewed for" not in caplog.text
        (alert,) = [a for a in engine.alerts() if a.source == lab.ns_ip4]
        assert not alert.resolved and alert.state is AlertState.ACTIVE
    finally:
        syns.stop()
        engine.close()
