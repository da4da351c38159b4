"""A blocked source's flood of drop events does not evict another source's monitor events: drops and
rule matches are kept in separate bounded rings, and every eviction is counted and shown
("evicted N" beside "lost N").  The filter and the export see both rings."""

from __future__ import annotations

import asyncio
from collections import deque

from support.ui import event
from textual.app import App, ComposeResult

from ironpost_tui.model import PacketEvent, Verdict
from ironpost_tui.ui.event_filter import EventFilter
from ironpost_tui.ui.event_rings import EventRings
from ironpost_tui.ui.state import EVENTS_KEPT, ConsoleState
from ironpost_tui.ui.themes import VARIABLE_DEFAULTS
from ironpost_tui.ui.widgets.event_table import EventTable

FLOODER, SCANNER = "198.18.200.7", "198.18.200.66"


def monitor_events(n: int = 100) -> list[PacketEvent]:
    return [event(SCANNER, dport=1000 + i, verdict=Verdict.MONITOR, rule="watch-scans") for i in range(n)]


def drops(n: int = 10_000) -> list[PacketEvent]:
    return [event(FLOODER, verdict=Verdict.DROP, rule="block-flooder")._replace(length=i) for i in range(n)]


def test_ten_thousand_drops_do_not_evict_another_sources_monitor_events_and_evictions_are_exact() -> None:
    rings = EventRings(EVENTS_KEPT)
    rings.extend(monitor_events())
    assert rings.extend(drops()) == 10_000 - EVENTS_KEPT
    scanner = [e for e in rings if EventFilter.parse(f"src:{SCANNER}").matches(e)]
    assert len(scanner) == 100 and rings.evicted == 5_000 and len(rings) == 5_100
    kept = list(rings)  # arrival order: the monitor events first, then the newest 5,000 drops
    assert kept[:100] == monitor_events() and [e.length for e in kept[100:]] == list(range(5_000, 10_000))

    # The negative control: one ring of the same size, fed the same, keeps none of the scanner's
    single: deque[PacketEvent] = deque(maxlen=EVENTS_KEPT)
    for e in [*monitor_events(), *drops()]:
        single.append(e)
    assert not [e for e in single if str(e.src) == SCANNER]
    assert 10_100 - len(single) == 5_100  # what it would have evicted


def test_events_evicted_between_two_redraws_are_counted_too() -> None:
    state = ConsoleState()
    state.add_events(tuple(monitor_events()))
    state.add_events(tuple(drops(EVENTS_KEPT + 7)))
    taken, evicted = state.take_events()
    assert evicted == 7 and len(taken) == EVENTS_KEPT + 100
    assert state.take_events() == ([], 0)


class PaneApp(App[None]):
    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(VARIABLE_DEFAULTS)

    def compose(self) -> ComposeResult:
        yield EventTable(cursor_blink=False)


def test_the_events_pane_shows_evicted_beside_lost_and_its_filter_and_export_see_both_rings() -> None:
    async def main() -> None:
        app = PaneApp()
        async with app.run_test(size=(120, 20)) as pilot:
            pane = app.query_one(EventTable)
            pane.lost = 3
            pane.add_events(monitor_events())
            await pilot.pause()
            assert "lost 3 · evicted 0" in str(pane.query_one("#event-status").render())
            pane.add_events(drops(), evicted=2)  # 2 more went before they reached the pane
            await pilot.pause()
            status = str(pane.query_one("#event-status").render())
            assert "5,100 kept" in status and "lost 3 · evicted 5,002" in status, status
            await pilot.press("slash")
            for key in f"src:{SCANNER}":
                await pilot.press(key)
            await pilot.press("enter")
            await pilot.pause()
            assert pane.row_count == 100 and len(pane.exportable()) == 100
            assert {str(e.src) for e in pane.exportable()} == {SCANNER}

    asyncio.run(main())
