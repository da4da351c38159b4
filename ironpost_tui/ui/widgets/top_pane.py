"""Top talkers: sources (or destinations, or destination ports) ranked by rate over a window;
sort, filter, block, monitor, capture, detail."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import DataTable, Input, Static

from ironpost_tui.kernel.capture import CaptureFilter
from ironpost_tui.model import FilterRule
from ironpost_tui.triage.values import RateWindow, SourceDetail, TopKind, TopRow, TopSnapshot
from ironpost_tui.ui import format as fmt
from ironpost_tui.ui.messages import BlockSource, UnblockSource, WidgetRequest
from ironpost_tui.ui.rule_fields import monitor_rule
from ironpost_tui.ui.table_sort import Column, SortOrder, address_key
from ironpost_tui.ui.top_details import top_fields
from ironpost_tui.ui.top_filter import TopFilter
from ironpost_tui.ui.widgets.field_list import FieldList
from ironpost_tui.ui.widgets.row_keys import ROW_KEYS, first_row, scroll_by_column
from ironpost_tui.ui.widgets.shown_text import show

KEY_LABELS = {TopKind.SOURCES: "source", TopKind.DESTINATIONS: "destination", TopKind.PORTS: "port"}
WINDOWS = tuple(RateWindow)
KINDS = tuple(TopKind)


def columns(kind: TopKind) -> tuple[Column, ...]:
    """Who, then how much (packets/s first: the rank), then when (addresses only: a port's first and last seen
    are not kept, and the ports list showed two empty columns until session 25)."""
    counts = (
        Column(KEY_LABELS[kind], "key"),
        Column("pkt/s", "pps", numeric=True, right=True),
        Column("bit/s", "bps", numeric=True, right=True),
        Column("syn/s", "syn_ps", numeric=True, right=True),
        Column("drop/s", "drop_ps", numeric=True, right=True),
    )
    if kind is TopKind.PORTS:
        return counts
    return (*counts, Column("last", "last", numeric=True), Column("first", "first", numeric=True))


def capture_filter(kind: TopKind, key: str) -> CaptureFilter:
    """What `c` captures for a top talker: its source, its destination, or its port and protocol ("udp/53")."""
    if kind is TopKind.PORTS:
        proto, _, port = key.partition("/")
        number = fmt.PROTOCOL_NUMBERS.get(proto, int(proto) if proto.isdigit() else 0)
        return CaptureFilter(port=int(port), protocol=number)
    net = ipaddress.ip_network(key)
    return CaptureFilter(src=net) if kind is TopKind.SOURCES else CaptureFilter(dst=net)


SORT_KEYS: dict[str, Callable[[TopRow], Any]] = {
    "key": lambda r: address_key(r.key),
    "pps": lambda r: r.pps,
    "bps": lambda r: r.bps,
    "syn_ps": lambda r: r.syn_ps,
    "drop_ps": lambda r: r.drop_ps,
    "last": lambda r: r.last_seen,
    "first": lambda r: r.first_seen,
}


class TopGrid(DataTable[Text]):
    BINDINGS = ROW_KEYS

    def action_column(self, step: int) -> None:
        scroll_by_column(self, step)

    def action_first(self) -> None:
        first_row(self)


class TopPane(Vertical):
    """The screen sets ``top`` (the latest lists) and ``read_only``."""

    class BlockRequested(BlockSource):
        """Block this source address (the app asks for how long)."""

    class UnblockRequested(UnblockSource):
        """Delete the rule that blocks this source address."""

    class MonitorRequested(WidgetRequest):
        """Add this monitor rule."""

        def __init__(self, pane: TopPane, rule: FilterRule) -> None:
            super().__init__(pane)
            self.rule = rule

    class CaptureRequested(WidgetRequest):
        """Capture this row's packets (the app asks for how long, how much and where)."""

        def __init__(self, pane: TopPane, filt: CaptureFilter, what: str) -> None:
            super().__init__(pane)
            self.filt = filt
            self.what = what

    class DetailRequested(WidgetRequest):
        """Show this row in full."""

        def __init__(self, pane: TopPane, title: str, fields: list[tuple[str, str]]) -> None:
            super().__init__(pane)
            self.title = title
            self.fields = fields

    ALLOW_MAXIMIZE = True

    BINDINGS = [
        Binding("enter", "open_detail", "Detail"),
        # At 80 columns the footer holds these and the app's q Quit and ? Help (until session 23 they were past
        # the edge in this pane): u, m and / are in the help (?), as every key is.
        Binding("b", "block", "Block"),
        Binding("u", "unblock", "Unblock", show=False),
        Binding("m", "monitor", "Monitor rule", show=False),
        Binding("c", "capture", "Capture"),
        Binding("w", "next_window", "Window"),
        Binding("v", "next_list", "List"),
        Binding("slash", "filter", "Filter", show=False),
        Binding("s", "sort", "Sort by next column", show=False),
        Binding("S", "reverse_sort", "Reverse the sort", show=False),
        Binding("E", "app.export('top')", "Export top talkers", show=False),
    ]

    DEFAULT_CSS = """
    TopPane TopGrid { height: 1fr; }
    TopPane #top-filter { display: none; }
    TopPane.-filtering #top-filter { display: block; }
    TopPane FieldList { height: auto; max-height: 6; }
    TopPane #top-status { height: 1; color: $text-muted; }
    TopPane #top-status.-error { color: $error; text-style: bold; height: auto; }
    """

    top: reactive[TopSnapshot] = reactive(lambda: TopSnapshot(at=0.0), always_update=True, repaint=False)
    read_only: reactive[bool] = reactive(False)
    problem: reactive[str] = reactive("")
    order: reactive[SortOrder] = reactive(SortOrder)
    window: reactive[RateWindow] = reactive(RateWindow.S10)
    kind: reactive[TopKind] = reactive(TopKind.SOURCES)

    def __init__(self, *, cursor_blink: bool = True, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._filter = TopFilter("")
        self._cursor_blink = cursor_blink
        self._rows: list[TopRow] = []

    def compose(self) -> ComposeResult:
        yield TopGrid(cursor_type="row", id="top-grid")
        yield FieldList(id="top-detail")
        yield Input(
            placeholder="filter: words, src:ADDR dst:ADDR proto:tcp port:N verdict:drop (enter; empty clears)",
            id="top-filter",
            compact=True,
        )
        yield Static("", id="top-status", markup=False)  # problems quote rule ids and filters: [/] in one crashed it

    def on_mount(self) -> None:
        self.query_one(Input).cursor_blink = self._cursor_blink
        self._redraw(rebuild=True)

    @property
    def grid(self) -> TopGrid:
        return self.query_one(TopGrid)

    @property
    def filter_text(self) -> str:
        return self._filter.text

    def rows(self) -> list[TopRow]:
        """The rows shown, top to bottom: what an export writes."""
        return list(self._rows)

    def selected(self) -> TopRow | None:
        grid = self.grid
        if not grid.row_count:
            return None
        key = grid.coordinate_to_cell_key(grid.cursor_coordinate).row_key.value
        return next((r for r in self._rows if r.key == key), None)

    def watch_top(self) -> None:
        self._redraw()

    def watch_problem(self) -> None:
        self._show_status()

    def watch_order(self) -> None:
        self._redraw(rebuild=True)

    def watch_window(self) -> None:
        self._redraw()

    def watch_kind(self) -> None:
        self.order = SortOrder()
        self._redraw(rebuild=True)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("block", "unblock", "monitor") and self.read_only:
            return False  # a replay: hidden
        return True

    # --- rows -------------------------------------------------------------------
    def _detail(self, row: TopRow) -> SourceDetail | None:
        return self.top.detail(row.key) if self.kind is TopKind.SOURCES else None

    def _cells(self, r: TopRow) -> list[Text]:
        cells = [
            Text(fmt.text(r.key)),
            Text(fmt.si(r.pps), justify="right"),
            Text(fmt.si(r.bps), justify="right"),
            Text(fmt.si(r.syn_ps), justify="right"),
            Text(fmt.si(r.drop_ps), justify="right"),
        ]
        if self.kind is TopKind.PORTS:
            return cells
        return [
            *cells,
            Text(fmt.clock(r.last_seen) if r.last_seen else ""),
            Text(fmt.clock(r.first_seen) if r.first_seen else ""),
        ]

    def _redraw(self, rebuild: bool = False) -> None:
        if not self.is_mounted:
            return
        grid = self.grid
        listed = self.top.lists(self.window).rows(self.kind)
        if self._filter:
            listed = tuple(r for r in listed if self._filter.matches(self.kind, r, self._detail(r)))
        rows = self.order.apply(listed, SORT_KEYS)
        self._rows = rows
        keys = [r.key for r in rows]
        selected = self.selected()
        cols = columns(self.kind)
        if rebuild or [str(k.value) for k in grid.rows] != keys:
            grid.clear(columns=True)
            for column in cols:
                grid.add_column(self.order.label(column), key=column.key)
            for r in rows:
                grid.add_row(*self._cells(r), key=r.key, height=1)
            if selected is not None and selected.key in keys:
                grid.move_cursor(row=keys.index(selected.key), animate=False)
        else:
            for r in rows:
                for column, cell in zip(cols, self._cells(r), strict=True):
                    if grid.get_cell(r.key, column.key) != cell:
                        grid.update_cell(r.key, column.key, cell, update_width=True)
        self._show_detail()
        self._show_status()

    @on(DataTable.RowHighlighted, "#top-grid")
    def _row_highlighted(self) -> None:
        self._show_detail()

    def _fields(self, row: TopRow) -> list[tuple[str, str]]:
        return top_fields(self.kind, self.window, row, self._detail(row))

    def _show_detail(self) -> None:
        row = self.selected()
        fields = self._fields(row) if row is not None else []
        self.query_one(FieldList).show(fields, self._empty())

    def _empty(self) -> str:
        """What an empty list means: nothing counted, or a filter that lets nothing through (until session 24 a
        filter on sources, kept on the destinations list, said "nothing counted yet" in a flood)."""
        if self._filter and self.top.lists(self.window).rows(self.kind):
            return f"no {KEY_LABELS[self.kind]} matches the filter (/ changes it, v: next list)"
        return "nothing counted yet in this window"

    def _show_status(self) -> None:
        status = self.query_one("#top-status", Static)
        status.set_class(bool(self.problem), "-error")
        if self.problem:
            show(status, self.problem)
            return
        parts = [f"{self.kind.value} over {self.window.label} (w)", f"{len(self._rows)} shown (v: next list)"]
        if self._filter:  # before the sort: at 80 columns the line's end is cut, and the filter decides the rows
            parts.append(f"filter: {self._filter.text}")
        if self.order != SortOrder():
            parts.append(self.order.describe(columns(self.kind), "by packets/s"))
        show(status, " · ".join(parts))

    # --- actions ------------------------------------------------------------------
    def action_sort(self) -> None:
        self.order = self.order.next(columns(self.kind))

    def action_reverse_sort(self) -> None:
        self.order = self.order.reversed()

    def action_next_window(self) -> None:
        self.window = WINDOWS[(WINDOWS.index(self.window) + 1) % len(WINDOWS)]

    def action_next_list(self) -> None:
        self.kind = KINDS[(KINDS.index(self.kind) + 1) % len(KINDS)]

    @on(DataTable.RowSelected, "#top-grid")
    def _row_selected(self, message: DataTable.RowSelected) -> None:
        message.stop()
        self.action_open_detail()

    def _row(self) -> TopRow | None:
        row = self.selected()
        self.problem = "" if row is not None else "no row selected"
        return row

    def action_open_detail(self) -> None:
        row = self._row()
        if row is not None:
            title = f"{KEY_LABELS[self.kind]} {row.key}"
            self.post_message(self.DetailRequested(self, title, self._fields(row)))

    def _source_row(self, says: str) -> TopRow | None:
        """The selected row when it is a source; else None, and why not (``says``: "b blocks", "u unblocks")."""
        row = self._row()
        if row is not None and self.kind is not TopKind.SOURCES:
            self.problem = f"{says} a source: v shows the sources"
            return None
        return row

    def action_block(self) -> None:
        row = self._source_row("b blocks")
        if row is not None:
            why = f"blocked from the console: top talker, {fmt.si(row.pps)} pkt/s over {self.window.label}"
            self.post_message(self.BlockRequested(self, row.key, why))

    def action_unblock(self) -> None:
        row = self._source_row("u unblocks")
        if row is not None:
            self.post_message(self.UnblockRequested(self, row.key))

    def action_monitor(self) -> None:
        row = self._row()
        if row is not None:
            why = f"monitored from the console: top talker, {fmt.si(row.pps)} pkt/s over {self.window.label}"
            self.post_message(self.MonitorRequested(self, monitor_rule(self.kind, row.key, why)))

    def action_capture(self) -> None:
        row = self._row()
        if row is not None:
            self.post_message(self.CaptureRequested(self, capture_filter(self.kind, row.key), row.key))

    def action_filter(self) -> None:
        box = self.query_one(Input)
        box.value = self._filter.text
        self.add_class("-filtering")
        box.focus()

    @on(Input.Submitted, "#top-filter")
    def _apply_filter(self, message: Input.Submitted) -> None:
        message.stop()
        try:
            new = TopFilter.parse(message.value)
        except ValueError as exc:
            self.problem = f"filter not applied: {exc}"
            return
        self.problem = ""
        self._filter = new
        self._close_filter()
        self._redraw(rebuild=True)

    def _close_filter(self) -> None:
        self.remove_class("-filtering")
        self.grid.focus()

    def on_key(self, event: events.Key) -> None:
        if event.key == "escape" and self.has_class("-filtering"):
            event.stop()
            self.problem = ""
            self._close_filter()
