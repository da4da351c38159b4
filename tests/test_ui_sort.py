"""Sorting the rules, alerts and events tables by any column, with Pilot: `s` moves the sort to
the next column (numbers biggest first, words A to Z), `S` turns it the other way, and after
the last column the table is back in its own order; the header shows the sort with an arrow.

What is checked is what is drawn: the rows' order and the header line on screen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace

from support.screen_cells import row_text, screen_cells
from support.ui import FakeSource, Messages, alert, event, lab_update, live_app, play_to, replay_app
from textual.pilot import Pilot
from textual.widget import Widget

from ironpost_tui.model import PacketEvent, Verdict
from ironpost_tui.ui.app import IronpostApp
from ironpost_tui.ui.messages import EventsReceived, RulesRefreshed
from ironpost_tui.ui.table_sort import ASCENDING, DESCENDING
from ironpost_tui.ui.widgets import alert_table, event_grid, rules_pane
from ironpost_tui.ui.widgets.alert_table import AlertTable
from ironpost_tui.ui.widgets.event_table import EventTable
from ironpost_tui.ui.widgets.rules_pane import RulesPane

WIDE = (160, 48)


def header(app: IronpostApp, table: Widget) -> str:
    """The header line of a table as drawn."""
    r = table.region
    return row_text(screen_cells(app)[r.y])[r.x : r.x + r.width]


def arrows(line: str) -> list[str]:
    """The header's labels that carry a sort arrow."""
    return [word for word in line.split() if word.endswith((ASCENDING, DESCENDING))]


async def press(pilot: Pilot[int], *keys: str) -> None:
    await pilot.press(*keys)
    await pilot.pause()


def on_replay(scenario: Callable[[Pilot[int], IronpostApp], Awaitable[None]]) -> None:
    app, _source, clock = replay_app()

    async def main() -> None:
        async with app.run_test(size=WIDE) as pilot:
            await play_to(pilot, clock, 6.0)
            await scenario(pilot, app)

    asyncio.run(main())


def test_rules_sort_by_hits_both_ways_and_back_to_file_order() -> None:
    async def scenario(pilot: Pilot[int], app: IronpostApp) -> None:
        pane = app.main.query_one(RulesPane)
        grid = pane.grid
        order = lambda: list(grid.keys)  # noqa: E731
        file_order = ["watch-dns", "drop-telnet", "doc-net"]
        assert order() == file_order and arrows(header(app, grid)) == []
        await press(pilot, "4", "s")  # id, A to Z
        assert order() == ["doc-net", "drop-telnet", "watch-dns"]
        assert arrows(header(app, grid)) == [f"id{ASCENDING}"]
        await press(pilot, "s")  # hits, biggest first
        assert order() == ["drop-telnet", "watch-dns", "doc-net"]  # 263,664 180 0
        assert arrows(header(app, grid)) == [f"hits{DESCENDING}"]
        assert "sorted by hits ▼" in str(pane.query_one("#rule-status").render())
        await press(pilot, "S")
        assert order() == ["doc-net", "watch-dns", "drop-telnet"]
        assert arrows(header(app, grid)) == [f"hits{ASCENDING}"]
        await press(pilot, *["s"] * (len(rules_pane.COLUMNS) - 1))  # past the last column
        assert order() == file_order and arrows(header(app, grid)) == []

    on_replay(scenario)


def test_events_sort_by_destination_port_new_rows_in_place_and_cursor_kept() -> None:
    source = FakeSource()
    app = live_app(source)

    def ev(dport: int, length: int) -> PacketEvent:
        return event("198.51.100.7", dport=dport)._replace(length=length)

    async def main() -> None:
        messages = Messages()
        async with app.run_test(size=WIDE, message_hook=messages) as pilot:
            await messages.wait(RulesRefreshed, pilot, after=0)
            source.push(lab_update([ev(443, 1), ev(22, 2), ev(8080, 3), ev(80, 4)]))
            await messages.wait(EventsReceived, pilot, after=0)
            app.redraw()
            pane = app.main.query_one(EventTable)
            grid = pane.grid
            await press(pilot, "3")
            assert [e.dst_port for e in grid.shown] == [443, 22, 8080, 80]  # arrival order
            keys = [c.key for c in event_grid.COLUMNS]
            await press(pilot, *["s"] * (keys.index("dport") + 1))
            assert [e.dst_port for e in grid.shown] == [22, 80, 443, 8080]
            assert arrows(header(app, grid)) == [f"dport{ASCENDING}"]
            assert "sorted by dport ▲" in str(pane.query_one("#event-status").render())
            await press(pilot, "home", "down")  # on port 80
            chosen = pane.selected_event()
            assert chosen is not None and chosen.dst_port == 80
            source.push(lab_update([ev(25, 5), ev(9000, 6)]))
            await messages.wait(EventsReceived, pilot, after=1)
            app.redraw()
            await pilot.pause()
            assert [e.dst_port for e in grid.shown] == [22, 25, 80, 443, 8080, 9000]  # new rows in their place
            assert pane.selected_event() is chosen  # the cursor stayed on its event
            await press(pilot, "S")
            assert [e.dst_port for e in grid.shown] == [9000, 8080, 443, 80, 25, 22]
            assert arrows(header(app, grid)) == [f"dport{DESCENDING}"]
            await press(pilot, *["s"] * (len(keys) - keys.index("dport")))  # back to arrival order
            assert [e.length for e in grid.shown] == [1, 2, 3, 4, 5, 6] and pane.following
            assert arrows(header(app, grid)) == []

    asyncio.run(main())


def test_alerts_sort_by_source_as_addresses_and_by_count() -> None:
    """198.51.100.9 before 198.51.100.10 (a sort of the text would put .10 first)."""
    source = FakeSource()
    app = live_app(source)
    alerts = [
        replace(alert(1, "198.51.100.10", "high"), count=50),
        replace(alert(2, "198.51.100.9", "medium"), count=900),
        replace(alert(3, "2001:db8::1", "low"), count=7),
    ]

    async def main() -> None:
        messages = Messages()
        async with app.run_test(size=WIDE, message_hook=messages) as pilot:
            await messages.wait(RulesRefreshed, pilot, after=0)
            source.push(lab_update([event(verdict=Verdict.MONITOR)], alerts))
            await messages.wait(EventsReceived, pilot, after=0)
            app.redraw()
            pane = app.main.query_one(AlertTable)
            grid = pane.grid
            order = lambda: [str(k.value) for k in grid.rows]  # noqa: E731
            await press(pilot, "2")
            assert order() == ["1", "2", "3"]
            keys = [c.key for c in alert_table.COLUMNS]
            await press(pilot, *["s"] * (keys.index("source") + 1))
            assert order() == ["2", "1", "3"]  # .9, .10, then IPv6
            assert arrows(header(app, grid)) == [f"source{ASCENDING}"]
            await press(pilot, *["s"] * (keys.index("count") - keys.index("source")))
            assert order() == ["2", "1", "3"]  # 900, 50, 7
            assert arrows(header(app, grid)) == [f"count{DESCENDING}"]
            await press(pilot, "S")
            assert order() == ["3", "1", "2"]
            assert "sorted by count ▲" in str(pane.query_one("#alert-status").render())

    asyncio.run(main())


def test_address_order_is_numeric() -> None:
    from ironpost_tui.ui.table_sort import address_key

    texts = ["198.51.100.10", "many sources", "2001:db8::1", "198.51.100.9"]
    assert sorted(texts, key=address_key) == ["198.51.100.9", "198.51.100.10", "2001:db8::1", "many sources"]
