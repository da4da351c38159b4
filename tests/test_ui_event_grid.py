"""The events pane's grid on its own: follow-tail, the cursor staying on its event while
old rows leave, the keys and the mouse, bounded rows, and a draw that formats only the
rows on screen."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest
from support.ui import T0, event
from textual.app import App, ComposeResult
from textual.pilot import Pilot

from ironpost_tui.model import PacketEvent, Verdict
from ironpost_tui.ui import format as fmt
from ironpost_tui.ui.event_filter import EventFilter
from ironpost_tui.ui.state import EVENTS_KEPT
from ironpost_tui.ui.themes import VARIABLE_DEFAULTS
from ironpost_tui.ui.widgets import event_grid
from ironpost_tui.ui.widgets.event_grid import EventGrid
from ironpost_tui.ui.widgets.event_table import EventTable

Scenario = Callable[[Pilot[None], EventTable], Awaitable[None]]


class PaneApp(App[None]):
    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(VARIABLE_DEFAULTS)

    def compose(self) -> ComposeResult:
        yield EventTable(cursor_blink=False)


def run(scenario: Scenario) -> None:
    async def main() -> None:
        app = PaneApp()
        async with app.run_test(size=(100, 20)) as pilot:
            pane = app.query_one(EventTable)
            pane.grid.focus()
            await pilot.pause()
            await scenario(pilot, pane)

    asyncio.run(main())


def count_waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The poll loop's waits from now on (their timeouts), counted instead of waited."""
    from ironpost_tui.ui import poll_loop

    waits: list[float] = []

    class CountingEvent:
        def wait(self, timeout: float | None = None) -> bool:
            waits.append(float(timeout or 0.0))
            return False

    monkeypatch.setattr(poll_loop.threading, "Event", CountingEvent)
    return waits


def numbered(start: int, n: int) -> list[PacketEvent]:
    """Events told apart by their length field."""
    return [event()._replace(length=i) for i in range(start, start + n)]


def status(pane: EventTable) -> str:
    return str(pane.query_one("#event-status").render())


def test_follows_the_tail_and_keeps_the_cursor_on_its_event_when_scrolled_back() -> None:
    async def scenario(pilot: Pilot[None], pane: EventTable) -> None:
        pane.add_events(numbered(0, 30))
        await pilot.pause()
        assert pane.following and pane.selected_event() is pane._shown[-1]
        await pilot.press("up", "up")
        chosen = pane.selected_event()
        assert chosen is not None and chosen.length == 27 and not pane.following
        assert "scrolled back (end: newest)" in status(pane)
        pane.add_events(numbered(30, 10))
        await pilot.pause()
        assert pane.selected_event() is chosen  # new rows do not move it
        await pilot.press("end")
        assert pane.following and pane.selected_event() is pane._shown[-1]
        assert "scrolled back" not in status(pane)

    run(scenario)


def test_rows_are_bounded_and_the_cursor_follows_its_event_up() -> None:
    async def scenario(pilot: Pilot[None], pane: EventTable) -> None:
        pane.add_events(numbered(0, EVENTS_KEPT))
        await pilot.pause()
        await pilot.press("home")
        await pilot.press("down", "down", "down")
        assert pane.grid.cursor_row == 3
        pane.add_events(numbered(EVENTS_KEPT, 2))  # the two oldest leave
        await pilot.pause()
        assert pane.row_count == EVENTS_KEPT
        assert pane.grid.cursor_row == 1 and pane.selected_event() is not None
        assert pane.selected_event().length == 3  # type: ignore[union-attr]
        pane.add_events(numbered(EVENTS_KEPT + 2, 3 * EVENTS_KEPT))  # a batch bigger than the pane
        await pilot.pause()
        assert pane.row_count == EVENTS_KEPT and pane.grid.cursor_row == 0
        assert pane._shown[-1].length == 4 * EVENTS_KEPT + 1
        assert f"{EVENTS_KEPT:,} shown of {EVENTS_KEPT:,} kept" in status(pane)

    run(scenario)


def test_page_home_and_click_move_the_cursor() -> None:
    async def scenario(pilot: Pilot[None], pane: EventTable) -> None:
        pane.add_events(numbered(0, 100))
        await pilot.pause()
        grid = pane.grid
        page = grid.scrollable_content_region.height - 1
        await pilot.press("pageup")
        assert grid.cursor_row == 99 - page
        await pilot.press("home")
        assert grid.cursor_row == 0 and grid.scroll_y == 0
        await pilot.press("pagedown")
        assert grid.cursor_row == page
        await pilot.press("home")
        await pilot.click(EventGrid, offset=(5, 3))  # the header is line 0
        assert grid.cursor_row == 2

    run(scenario)


def count_formatting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """From now on the grid's row formatting (event_grid.cells) counts its calls in the list returned."""
    calls = [0]
    cells = event_grid.cells

    def counting(e: PacketEvent, clock: bool = True) -> tuple[str, ...]:
        calls[0] += 1
        return cells(e, clock)

    monkeypatch.setattr(event_grid, "cells", counting)
    return calls


def test_a_draw_formats_only_the_rows_on_screen(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(pilot: Pilot[None], pane: EventTable) -> None:
        pane.add_events(numbered(0, EVENTS_KEPT))
        await pilot.pause()
        formatted = count_formatting(monkeypatch)
        pane.grid.refresh()
        await pilot.pause()
        assert 0 < formatted[0] <= 2 * pane.grid.size.height

    run(scenario)


def test_sorted_5000_rows_still_draw_only_the_rows_on_screen(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sorting keeps the grid cheap: the kept events are sorted once per batch (not per row), and a
    draw formats only the rows on screen; new rows land in their sorted place."""
    from ironpost_tui.ui.table_sort import SortOrder

    async def scenario(pilot: Pilot[None], pane: EventTable) -> None:
        lengths = [(i * 7919) % EVENTS_KEPT for i in range(EVENTS_KEPT)]  # a shuffle of 0..4999
        pane.add_events([event()._replace(length=n) for n in lengths])
        await pilot.pause()
        pane.grid.set_order(SortOrder("len", descending=True))
        await pilot.pause()
        assert [e.length for e in pane._shown[:3]] == [4999, 4998, 4997]
        pane.add_events([event()._replace(length=10_000)])  # the oldest (length 0) leaves
        await pilot.pause()
        assert pane._shown[0].length == 10_000 and pane._shown[-1].length == 1
        formatted = count_formatting(monkeypatch)
        pane.grid.refresh()
        await pilot.pause()
        assert 0 < formatted[0] <= 2 * pane.grid.size.height

    run(scenario)


def test_the_poll_worker_batches_small_polls_and_follows_big_ones_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under a flood each poll brings a few events at once: the worker waits out
    BATCH_SECS after such a poll instead of polling again (and posting) at once.

    The waits are counted, not timed (a loaded machine makes timing assertions flaky)."""
    from ironpost_tui.engine.feed import Update
    from ironpost_tui.ui import poll_loop

    waits = count_waits(monkeypatch)

    def polls(per_poll: int, count: int) -> list[float]:
        calls = 0
        waits.clear()

        class Flood:
            def poll(self, timeout: float) -> Update:
                nonlocal calls
                calls += 1
                return Update(events=tuple(numbered(0, per_poll)), at=float(calls))

        poll_loop.run_poll(Flood(), lambda _m: None, lambda: calls >= count, timeout=1.0)  # type: ignore[arg-type]
        return list(waits)

    paced = polls(1, 5)
    assert len(paced) == 4 and all(0 < w <= poll_loop.BATCH_SECS for w in paced)  # a wait after each of the first four
    assert polls(poll_loop.BIG_BATCH, 5) == []  # not paced
    assert polls(0, 5) == []  # an empty poll already waited out its timeout: not paced either


def test_a_failing_poll_is_said_with_its_error_and_retried_after_a_wait(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poll that raises (not an IronpostError) is retried, never spun on, and what failed reaches the
    log (the console turns warnings and errors into its notice line): not a bare "failed"."""
    from ironpost_tui.engine.feed import Update
    from ironpost_tui.ui import poll_loop

    calls = 0
    waits = count_waits(monkeypatch)

    class Broken:
        def poll(self, timeout: float) -> Update:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise OSError(9, "Bad file descriptor")
            return Update(at=1.0)

    with caplog.at_level(logging.ERROR):
        poll_loop.run_poll(Broken(), lambda _m: None, lambda: calls >= 2, timeout=0.2)  # type: ignore[arg-type]
    assert calls == 2  # retried after the failure
    assert waits == [0.2]  # after one wait of its timeout (only the failure waits): a failing source is not spun on
    said = [r.getMessage() for r in caplog.records if "polling the source failed" in r.getMessage()]
    assert said == ["polling the source failed, retrying: OSError: [Errno 9] Bad file descriptor"]


def test_columns_line_up_by_terminal_cells_with_wide_characters_in_a_rule_id() -> None:
    """An event's rule id of CJK characters (two cells each) widens its column by cells: the protocol
    column starts at the same cell on every row."""
    from rich.cells import cell_len

    async def scenario(pilot: Pilot[None], pane: EventTable) -> None:
        pane.add_events([event()._replace(rule_id="規則ブロック"), event()._replace(rule_id="ascii-rule")])
        await pilot.pause()
        rows = [pane.grid.render_line(y).text for y in (1, 2)]
        at = [cell_len(row[: row.index(" tcp ")]) for row in rows]
        assert at[0] == at[1], rows

    run(scenario)


@pytest.mark.parametrize("way", ["scrolled", "sorted"])
def test_columns_widen_for_the_rows_drawn_not_for_the_rows_that_arrive(
    way: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """5,000 rows arrive and none is formatted then; a draw measures the rows on screen.  One row's long
    IPv6 source is off screen: its column stays as wide as the IPv4 sources drawn (negative control: what
    is not drawn does not widen it).  Brought on screen (scrolled to, or sorted to the top), it is drawn
    whole and every column lines up with the header."""
    from rich.cells import cell_len

    from ironpost_tui.ui.table_sort import SortOrder

    wide = "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"

    async def scenario(pilot: Pilot[None], pane: EventTable) -> None:
        grid = pane.grid
        pane.add_events(numbered(0, 100))
        await pilot.pause()
        formatted = count_formatting(monkeypatch)
        pane.add_events([*numbered(1, 2_500), event(wide), *numbered(2_501, EVENTS_KEPT - 2_501)])
        assert formatted[0] == 0  # nothing formatted as the rows arrive
        await pilot.pause()
        assert 0 < formatted[0] <= 2 * grid.size.height  # the rows on screen: measured, then drawn
        lines = [grid.render_line(y).text for y in range(grid.size.height)]
        assert not any(wide in line for line in lines)
        assert lines[1].startswith(f" {fmt.clock(T0 + 50)}  198.51.100.7  drop ")  # as wide as the IPv4 sources

        if way == "scrolled":
            grid.cursor_row = 2_500
        else:
            await pilot.press("home")
            await pilot.pause()
            assert wide not in grid.render_line(1).text
            grid.set_order(SortOrder("source", descending=True))  # IPv6 first; the cursor's row second
        await pilot.pause()
        lines = [grid.render_line(y).text for y in range(grid.size.height)]
        assert f" {wide}  drop " in lines[1]
        verdict_at = {cell_len(line[: line.index(" verdict " if y == 0 else " drop ")]) for y, line in enumerate(lines)}
        assert len(verdict_at) == 1, lines  # the header's and every row's verdict column start at one cell

    run(scenario)


def test_a_filtered_view_lets_go_of_the_rows_the_rings_evicted() -> None:
    """A filter on a source's drops, then a flood of other drops that evicts them from the rings: the view shows
    what is kept, as the export writes (until session 24 it showed the evicted rows for minutes, "Export 0
    events", and "0 shown of 7,552 kept" once the same filter was applied again).  The control: a monitor event of
    that source, in the other ring, stays."""

    async def scenario(pilot: Pilot[None], pane: EventTable) -> None:
        watched = [event(src="198.18.5.5") for _ in range(3)] + [event(src="198.18.5.5", verdict=Verdict.MONITOR)]
        pane.add_events(watched)
        pane._filter = EventFilter.parse("src:198.18.5.5")
        pane._rebuild()
        assert pane.row_count == 4 and len(pane.exportable()) == 4
        pane.add_events([event(src="198.18.9.9") for _ in range(EVENTS_KEPT)])  # the flood's drops
        await pilot.pause()
        assert pane.row_count == 1 and len(pane.exportable()) == 1
        assert pane._shown[0].verdict is Verdict.MONITOR and "1 shown of" in status(pane)

    run(scenario)
