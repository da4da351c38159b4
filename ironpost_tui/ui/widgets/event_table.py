"""Packet events, newest at the bottom, following the tail; pause, filter, block."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import Input, Static

from ironpost_tui.model import PacketEvent
from ironpost_tui.ui import format as fmt
from ironpost_tui.ui.event_filter import EventFilter
from ironpost_tui.ui.event_rings import EventRings
from ironpost_tui.ui.messages import BlockSource, CaptureSource, UnblockSource, WidgetRequest
from ironpost_tui.ui.state import EVENTS_KEPT
from ironpost_tui.ui.table_sort import SortOrder
from ironpost_tui.ui.widgets.event_grid import COLUMNS, EventGrid
from ironpost_tui.ui.widgets.shown_text import show


class EventTable(Vertical):
    """The screen calls ``add_events`` with each batch and sets ``paused``, ``lost``,
    ``read_only``; the pane posts BlockRequested / UnblockRequested / CaptureRequested."""

    class BlockRequested(BlockSource):
        """Block this source address (the app asks for how long)."""

    class UnblockRequested(UnblockSource):
        """Delete the rule that blocks this source address."""

    class CaptureRequested(CaptureSource):
        """Capture this source address's packets to a pcapng file."""

    class FilterChanged(WidgetRequest):
        """The events filter changed (the app keeps nothing of it; for observers and tests)."""

        def __init__(self, table: EventTable, text: str) -> None:
            super().__init__(table)
            self.text = text

    ALLOW_MAXIMIZE = True

    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("b", "block", "Block"),
        Binding("u", "unblock", "Unblock"),
        Binding("c", "capture", "Capture"),
        Binding("end", "follow", "Newest", show=False),
        Binding("s", "sort", "Sort by next column", show=False),
        Binding("S", "reverse_sort", "Reverse the sort", show=False),
    ]

    DEFAULT_CSS = """
    EventTable EventGrid { height: 1fr; }
    EventTable #event-filter { display: none; }
    EventTable.-filtering #event-filter { display: block; }
    EventTable #event-status { height: 1; color: $text-muted; }
    EventTable.-paused #event-status { color: $warning; text-style: bold; }
    EventTable #event-status.-error { color: $error; text-style: bold; height: auto; }
    """

    paused: reactive[bool] = reactive(False)
    lost: reactive[int] = reactive(0)
    read_only: reactive[bool] = reactive(False)
    problem: reactive[str] = reactive("")

    def __init__(self, *, cursor_blink: bool = True, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._kept = EventRings(EVENTS_KEPT)  # drops and rule matches apart: a flood evicts only drops
        self._evicted_before = 0  # evicted before reaching the pane (between two redraws)
        self._held = 0  # arrived while paused
        self._received = 0
        self._filter = EventFilter("")
        self._cursor_blink = cursor_blink

    def compose(self) -> ComposeResult:
        yield EventGrid(EVENTS_KEPT, id="event-grid")
        yield Input(
            placeholder="filter: words, src:ADDR dst:ADDR proto:tcp port:N verdict:drop rule:ID (enter; empty clears)",
            id="event-filter",
            compact=True,
        )
        yield Static("", id="event-status", markup=False)  # problems quote rule ids and filters: [/] in one crashed it

    def on_mount(self) -> None:
        self.query_one(Input).cursor_blink = self._cursor_blink
        self._show_status()

    @property
    def grid(self) -> EventGrid:
        return self.query_one(EventGrid)

    @property
    def filter_text(self) -> str:
        return self._filter.text

    @property
    def row_count(self) -> int:
        return self.grid.row_count

    @property
    def _shown(self) -> Sequence[PacketEvent]:
        """The events in the table, one per row, top to bottom (oldest first unless sorted)."""
        return self.grid.shown

    def selected_event(self) -> PacketEvent | None:
        return self.grid.selected

    @property
    def kept_count(self) -> int:
        return len(self._kept)

    def kept_matching(self, flt: EventFilter) -> list[PacketEvent]:
        """The kept events ``flt`` lets through (none for an empty filter), oldest first: an alert's detail."""
        return [e for e in self._kept if flt.matches(e)] if flt else []

    def exportable(self) -> list[PacketEvent]:
        """The kept events the filter lets through, oldest first: what an export writes."""
        return [e for e in self._kept if self._filter.matches(e)] if self._filter else list(self._kept)

    # --- attributes from the screen ----------------------------------------------
    @property
    def evicted(self) -> int:
        """Events that arrived and are no longer kept (a ring was full), since the last reset."""
        return self._kept.evicted + self._evicted_before

    def add_events(self, events: Iterable[PacketEvent], evicted: int = 0) -> None:
        """``evicted``: events that arrived before these and were evicted on the way here."""
        events = list(events)
        self._evicted_before += evicted
        if not events:
            return
        self._received += len(events)
        gone = self._kept.extend(events)
        if gone and self._filter and self.grid.row_count and not self.paused:
            # A filtered view holds fewer rows than the rings: rows the rings evicted would stay on screen, which
            # the export (the rings) no longer has (until session 24: "0 shown of 7,552 kept" once re-applied).
            self.grid.retain(self._kept.ids())
        if self.paused:
            self._held += len(events)
            self._show_status()
            return
        events = events[-EVENTS_KEPT:]  # older ones of a big batch are not kept
        new = [e for e in events if self._filter.matches(e)] if self._filter else events
        self.grid.append(new, follow=self.following)
        self._show_status()

    def reset(self) -> None:
        self._kept.clear()
        self._evicted_before = 0
        self._held = 0
        self._received = 0
        self._rebuild()

    def watch_paused(self, paused: bool) -> None:
        self.set_class(paused, "-paused")
        if not paused and self._held:
            self._held = 0
            self._rebuild()
        self._show_status()

    def watch_lost(self) -> None:
        self._show_status()

    def watch_problem(self) -> None:
        self._show_status()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("block", "unblock") and self.read_only:
            return False  # a replay: hidden
        return True

    # --- rows ---------------------------------------------------------------------
    def _rebuild(self) -> None:
        if not self.is_mounted:
            return
        kept = self._kept
        self.grid.set_rows([e for e in kept if self._filter.matches(e)] if self._filter else kept)
        self._show_status()

    @property
    def following(self) -> bool:
        """The cursor is on the newest row: new rows move it along (follow-tail)."""
        return self.grid.following

    @on(EventGrid.CursorMoved, "#event-grid")
    def _on_row(self) -> None:
        self._show_status()

    def _show_status(self) -> None:
        if not self.is_mounted:
            return
        status = self.query_one("#event-status", Static)
        if self.problem:
            status.set_class(True, "-error")
            show(status, self.problem)
            return
        status.set_class(False, "-error")
        parts = [f"{fmt.count(self.grid.row_count)} shown of {fmt.count(len(self._kept))} kept"]
        order = self.grid.order
        if self.paused:
            parts.insert(0, f"PAUSED, {fmt.count(self._held)} new held (space resumes)")
        if order != SortOrder():
            parts.append(order.describe(COLUMNS, "arrival order"))
        elif not self.paused and not self.following:
            parts.append("scrolled back (end: newest)")
        parts.append(f"lost {fmt.count(self.lost)}")
        parts.append(f"evicted {fmt.count(self.evicted)}")
        if self._filter:  # last: the typed filter is as long as typed, and the line is one line (it cut the counts)
            parts.append(f"filter: {self._filter.text}")
        show(status, " · ".join(parts))

    # --- actions ------------------------------------------------------------------
    def action_filter(self) -> None:
        box = self.query_one(Input)
        box.value = self._filter.text
        self.add_class("-filtering")
        box.focus()

    def action_follow(self) -> None:
        self.grid.move_to_newest()

    def action_sort(self) -> None:
        self.grid.set_order(self.grid.order.next(COLUMNS))
        self._show_status()

    def action_reverse_sort(self) -> None:
        self.grid.set_order(self.grid.order.reversed())
        self._show_status()

    def action_block(self) -> None:
        event = self.selected_event()
        if event is None:
            self.problem = "no event selected: move to a row first"
            return
        self.problem = ""
        why = f"blocked from the console: {fmt.protocol(event.protocol)} to {event.dst}"
        if event.rule_id:
            why += f", matched {event.rule_id}"
        self.post_message(self.BlockRequested(self, str(event.src), why))

    def action_unblock(self) -> None:
        event = self.selected_event()
        if event is None:
            self.problem = "no event selected: move to a row first"
            return
        self.problem = ""
        self.post_message(self.UnblockRequested(self, str(event.src)))

    def action_capture(self) -> None:
        event = self.selected_event()
        if event is None:
            self.problem = "no event selected: move to a row first"
            return
        self.problem = ""
        self.post_message(self.CaptureRequested(self, str(event.src)))

    @on(Input.Submitted, "#event-filter")
    def _apply_filter(self, message: Input.Submitted) -> None:
        message.stop()
        try:
            new = EventFilter.parse(message.value)
        except ValueError as exc:
            self.problem = f"filter not applied: {exc}"
            return
        self.problem = ""
        self._filter = new
        self._close_filter()
        self._rebuild()
        self.post_message(self.FilterChanged(self, new.text))

    def _close_filter(self) -> None:
        self.remove_class("-filtering")
        self.grid.focus()

    def on_key(self, event: events.Key) -> None:
        if event.key == "escape" and self.has_class("-filtering"):
            event.stop()
            self.problem = ""
            self._close_filter()
