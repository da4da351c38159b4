"""A blocked source's flood of drop events does not evict another source's monitor events: drops and
rule matches are kept in separate bounded rings, and every eviction is counted and shown
("evicted N" beside "lost N").  The filter and the export see both rings."""

from __future__ import annotations

import asyncio
import heapq
import ipaddress
from collections import deque

import pytest
from support.ui import T0, event
from textual.app import App, ComposeResult

from ironpost_tui.kernel import abi
from ironpost_tui.kernel.events import EventDecoder
from ironpost_tui.kernel.ringbuf import EventRecords
from ironpost_tui.model import Action, FilterRule, PacketEvent, Verdict
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


# Verdict bytes as the kernel writes them, and ones it does not (read as PASS: not drops).
DROP, MONITOR, PROTECTED, PASS = abi.VERDICT_DROP, abi.VERDICT_MONITOR, abi.VERDICT_PROTECTED, abi.VERDICT_PASS
UNKNOWN = 200


def records(verdicts: list[int]) -> list[PacketEvent]:
    """RecordEvents, as the engine hands them over, with these verdict bytes; told apart by their length."""
    src, dst = (ipaddress.ip_address(a).packed.ljust(16, b"\0") for a in (FLOODER, SCANNER))
    data = b"".join(
        abi.PACKET_EVENT.pack(2_500_000_000 + i, src, dst, 40000, 23, i, 7, 4, 6, 0x02, v)
        for i, v in enumerate(verdicts)
    )
    return EventDecoder(T0, {7: FilterRule("block-flooder", Action.DROP)}.get).decode_all(
        EventRecords(data, abi.PACKET_EVENT)
    )


def reference(batches: list[list[PacketEvent]], maxlen: int) -> tuple[list[PacketEvent], int]:
    """The kept events and the evicted count, worked out one event at a time: two rings of (arrival, event)
    split by each event's ``verdict``, merged by arrival (the rings' first form)."""
    drops: deque[tuple[int, PacketEvent]] = deque(maxlen=maxlen)
    others: deque[tuple[int, PacketEvent]] = deque(maxlen=maxlen)
    arrived = 0
    for e in (e for batch in batches for e in batch):
        (drops if e.verdict is Verdict.DROP else others).append((arrived, e))
        arrived += 1
    kept = [e for _, e in heapq.merge(drops, others, key=lambda item: item[0])]
    return kept, arrived - len(kept)


def pattern(n: int) -> list[int]:
    """Mostly drops, with monitor, protected, pass and unknown verdicts among them."""
    every = ((17, UNKNOWN), (13, PASS), (11, PROTECTED), (7, MONITOR))
    return [next((v for k, v in every if i % k == 0), DROP) for i in range(1, n + 1)]


@pytest.mark.parametrize("kind", ["records", "plain", "mixed"])
def test_a_batch_bigger_than_the_rings_keeps_and_counts_what_feeding_it_one_by_one_does(kind: str) -> None:
    """One extend of a batch over three times the rings' size, of RecordEvents (verdict bytes read in C),
    plain PacketEvents, or both, after a first small batch: the same events kept, in the same order, and the
    same evictions as the events one at a time (the rings' one-event path, and the reference).  Negative
    control: the shortcut "of a big batch only its newest maxlen can stay" (true of one ring, the grid's)
    keeps fewer of the rarer verdicts, and the comparison sees it."""
    maxlen = 50
    made = records(pattern(3 * maxlen + 30))
    plain = [e.decoded() for e in made]
    mixed = [p if i % 2 else e for i, (e, p) in enumerate(zip(made, plain, strict=True))]
    events = {"records": made, "plain": plain, "mixed": mixed}[kind]
    first, big = events[:20], events[20:]
    want_kept, want_evicted = reference([first, big], maxlen)
    assert want_evicted == len(events) - 2 * maxlen and sum(e.verdict is not Verdict.DROP for e in want_kept) == maxlen

    rings = EventRings(maxlen)
    assert rings.extend(first) == 0
    assert rings.extend(big) == want_evicted
    kept = list(rings)
    assert len(kept) == len(want_kept) and all(a is b for a, b in zip(kept, want_kept, strict=True))
    assert rings.evicted == want_evicted and len(rings) == 2 * maxlen

    one_by_one = EventRings(maxlen)
    assert sum(one_by_one.extend([e]) for e in events) == want_evicted
    assert all(a is b for a, b in zip(one_by_one, want_kept, strict=True)) and one_by_one.evicted == want_evicted

    shortcut = EventRings(maxlen)
    shortcut.extend(first)
    shortcut.extend(big[-maxlen:])
    assert [e.length for e in shortcut] != [e.length for e in want_kept]
    assert sum(e.verdict is not Verdict.DROP for e in shortcut) < maxlen


@pytest.mark.parametrize("kind", ["records", "plain"])
def test_batches_of_one_verdict_and_mixed_ones_fill_each_ring_apart(kind: str) -> None:
    """All-drop batches (a flood's), all-monitor ones and mixed ones, each smaller than the rings: drops
    evict only drops, and the merge gives arrival order.  Negative control:
    one ring of the same capacity evicts the monitor events the two rings keep."""
    made = records([DROP] * 30 + [MONITOR] * 5 + pattern(40) + [DROP] * 30 + [MONITOR, DROP] * 4)
    events = made if kind == "records" else [e.decoded() for e in made]
    batches = [events[:30], events[30:35], events[35:75], events[75:105], events[105:]]
    rings = EventRings(25)
    evicted = [rings.extend(b) for b in batches]
    want_kept, want_evicted = reference(batches, 25)
    assert [e.length for e in rings] == [e.length for e in want_kept] and sum(evicted) == want_evicted
    assert evicted[1] == 0  # monitor events into a ring of their own: no drop evicted for them
    monitors = {e.length for e in batches[1]}
    assert monitors <= {e.length for e in rings}  # kept through 70 later events, most of them drops
    single = deque((e for b in batches for e in b), maxlen=50)  # as many kept, in one ring
    assert not monitors & {e.length for e in single}


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
