"""Packet events, newest at the bottom, following the tail; pause, filter, block."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import DataTable, Input, Static

from ..model import PacketEvent
from . import format as fmt
from .event_filter import EventFilter
from .messages import BlockRequested, FilterChanged, UnblockRequested
from .state import EVENTS_KEPT

ROWS_SHOWN = 1_000  # rows in the table; DataTable's cost grows with rows, the memory bound is EVENTS_KEPT
ROWS_SLACK = 500  # appended past ROWS_SHOWN before the table is rebuilt to the newest ROWS_SHOWN

COLUMNS = (
    ("time", "time"),
    ("source", "src"),
    ("sport", "sport"),
    ("destination", "dst"),
    ("dport", "dport"),
    ("proto", "proto"),
    ("verdict", "verdict"),
    ("rule", "rule"),
    ("flags", "flags"),
    ("len", "len"),
)


class EventGrid(DataTable[Text]):
    """The table itself, with the verdict colours as component classes (theme variables)."""

    COMPONENT_CLASSES = {"event-grid--drop", "event-grid--monitor", "event-grid--protected", "event-grid--pass"}
    DEFAULT_CSS = """
    EventGrid > .event-grid--drop { color: $error; text-style: $ironpost-emphasis; }
    EventGrid > .event-grid--monitor { color: $warning; text-style: $ironpost-emphasis; }
    EventGrid > .event-grid--protected { color: $accent; text-style: $ironpost-emphasis; }
    EventGrid > .event-grid--pass { color: $success; }
    """


class EventTable(Vertical):
    """The screen calls ``add_events`` with each batch and sets ``paused``, ``lost``,
    ``read_only``; the pane posts BlockRequested / UnblockRequested."""

    ALLOW_MAXIMIZE = True

    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("b", "block", "Block"),
        Binding("u", "unblock", "Unblock"),
        Binding("end", "follow", "Newest", show=False),
    ]

    DEFAULT_CSS = """
    EventTable EventGrid { height: 1fr; }
    EventTable #event-filter { display: none; }
    EventTable.-filtering #event-filter { display: block; }
    EventTable #event-status { height: 1; color: $text-muted; }
    EventTable.-paused #event-status { color: $warning; text-style: bold; }
    EventTable #event-status.-error { color: $error; text-style: bold; }
    """

    paused: reactive[bool] = reactive(False)
    lost: reactive[int] = reactive(0)
    read_only: reactive[bool] = reactive(False)
    problem: reactive[str] = reactive("")

    def __init__(self, *, cursor_blink: bool = True, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._kept: deque[PacketEvent] = deque(maxlen=EVENTS_KEPT)
        self._shown: deque[PacketEvent] = deque()  # one per table row, in order
        self._held = 0  # arrived while paused
        self._received = 0
        self._filter = EventFilter("")
        self._cursor_blink = cursor_blink

    def compose(self) -> ComposeResult:
        grid = EventGrid(cursor_type="row", zebra_stripes=False, id="event-grid")
        for label, key in COLUMNS:
            grid.add_column(label, key=key)
        yield grid
        yield Input(
            placeholder="filter: words, src:ADDR dst:ADDR proto:tcp port:N verdict:drop rule:ID (enter; empty clears)",
            id="event-filter",
            compact=True,
        )
        yield Static("", id="event-status")

    def on_mount(self) -> None:
        self.query_one(Input).cursor_blink = self._cursor_blink
        self.query_one(EventGrid).app.theme_changed_signal.subscribe(self, lambda _theme: self._rebuild())
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

    def selected_event(self) -> PacketEvent | None:
        grid = self.grid
        if not grid.row_count or not 0 <= grid.cursor_row < len(self._shown):
            return None
        return self._shown[grid.cursor_row]

    def exportable(self) -> list[PacketEvent]:
        """The kept events the filter lets through, oldest first: what an export writes."""
        return [e for e in self._kept if self._filter.matches(e)] if self._filter else list(self._kept)

    # --- attributes from the screen ----------------------------------------------
    def add_events(self, events: Iterable[PacketEvent]) -> None:
        events = list(events)
        if not events:
            return
        self._received += len(events)
        self._kept.extend(events)
        if self.paused:
            self._held += len(events)
            self._show_status()
            return
        new = [e for e in events if self._filter.matches(e)] if self._filter else events
        grid = self.grid
        if grid.row_count + len(new) > ROWS_SHOWN + ROWS_SLACK:
            self._rebuild()
            return
        follow = self.following  # decided before the rows move, not from a later message
        for event in new:
            self._append(event)
        self._after_rows(follow)

    def reset(self) -> None:
        self._kept.clear()
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
    def _row(self, e: PacketEvent) -> list[Text]:
        style = self.grid.get_component_rich_style(f"event-grid--{e.verdict.value}", partial=True)
        icmp = e.protocol in (1, 58)
        return [
            Text(fmt.clock(e.ts)),
            Text(str(e.src)),
            Text("" if icmp else str(e.src_port), justify="right"),
            Text(str(e.dst)),
            Text("" if icmp else str(e.dst_port), justify="right"),
            Text(fmt.protocol(e.protocol)),
            Text(e.verdict.value, style=style),
            Text(e.rule_id or ""),
            Text(fmt.tcp_flags(e.tcp_flags) if e.protocol == 6 else ""),
            Text(str(e.length), justify="right"),
        ]

    def _append(self, event: PacketEvent) -> None:
        self.grid.add_row(*self._row(event), height=1)
        self._shown.append(event)

    def _rebuild(self) -> None:
        if not self.is_mounted:
            return
        grid = self.grid
        grid.clear()
        self._shown.clear()
        matching = [e for e in self._kept if self._filter.matches(e)] if self._filter else list(self._kept)
        for event in matching[-ROWS_SHOWN:]:
            self._append(event)
        self._after_rows(follow=True)

    @property
    def following(self) -> bool:
        """The cursor is on the newest row: new rows move it along (follow-tail)."""
        grid = self.grid
        return grid.cursor_row >= grid.row_count - 1

    def _after_rows(self, follow: bool) -> None:
        grid = self.grid
        if follow and grid.row_count:
            grid.move_cursor(row=grid.row_count - 1, animate=False)
        self._show_status()

    @on(DataTable.RowHighlighted, "#event-grid")
    def _on_row(self) -> None:
        self._show_status()

    def _show_status(self) -> None:
        if not self.is_mounted:
            return
        status = self.query_one("#event-status", Static)
        if self.problem:
            status.set_class(True, "-error")
            status.update(self.problem)
            return
        status.set_class(False, "-error")
        parts = [f"{fmt.count(self.grid.row_count)} shown of {fmt.count(len(self._kept))} kept"]
        if self.paused:
            parts.insert(0, f"PAUSED, {fmt.count(self._held)} new held (space resumes)")
        elif not self.following:
            parts.append("scrolled back (end: newest)")
        if self._filter:
            parts.append(f"filter: {self._filter.text}")
        parts.append(f"lost {fmt.count(self.lost)}")
        status.update(" · ".join(parts))

    # --- actions ------------------------------------------------------------------
    def action_filter(self) -> None:
        box = self.query_one(Input)
        box.value = self._filter.text
        self.add_class("-filtering")
        box.focus()

    def action_follow(self) -> None:
        self._after_rows(follow=True)

    def action_block(self) -> None:
        event = self.selected_event()
        if event is None:
            self.problem = "no event selected: move to a row first"
            return
        self.problem = ""
        why = f"blocked from the console: {fmt.protocol(event.protocol)} to {event.dst}"
        if event.rule_id:
            why += f", matched {event.rule_id}"
        self.post_message(BlockRequested(str(event.src), why, "events"))

    def action_unblock(self) -> None:
        event = self.selected_event()
        if event is None:
            self.problem = "no event selected: move to a row first"
            return
        self.problem = ""
        self.post_message(UnblockRequested(str(event.src), "events"))

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
        self.post_message(FilterChanged(new.text))

    def _close_filter(self) -> None:
        self.remove_class("-filtering")
        self.grid.focus()

    def on_key(self, event: events.Key) -> None:
        if event.key == "escape" and self.has_class("-filtering"):
            event.stop()
            self.problem = ""
            self._close_filter()
