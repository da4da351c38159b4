"""Alerts: one row per incident, updated in place; open its detail, acknowledge, block the source."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import DataTable, Static

from ironpost_tui.detectors import Alert
from ironpost_tui.detectors.alerts import MANY_SOURCES
from ironpost_tui.records.export import alert_state
from ironpost_tui.ui import format as fmt
from ironpost_tui.ui.details import alert_fields, state_text
from ironpost_tui.ui.messages import BlockSource, UnblockSource, WidgetRequest
from ironpost_tui.ui.table_sort import Column, SortOrder, address_key
from ironpost_tui.ui.widgets.field_list import FieldList
from ironpost_tui.ui.widgets.row_keys import ROW_KEYS, first_row, scroll_by_column
from ironpost_tui.ui.widgets.shown_text import show

SEVERE = ("critical", "high")
SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}
STATE_RANK = {"resolved": 0, "acked": 1, "blocked": 2, "ACTIVE": 3}

# What a responder reads first, first: who, against what, how much, then when.  At 80 columns
# everything up to the detector is on screen; the detail below the table shows the rest.
COLUMNS = (
    Column("#", "id", right=True),
    Column("severity", "severity", numeric=True),
    Column("source", "source"),
    Column("target", "target"),
    Column("count", "count", numeric=True, right=True),
    Column("state", "state", numeric=True),
    Column("detector", "detector"),
    Column("last", "last", numeric=True),
    Column("first", "first", numeric=True),
    Column("peak", "peak", numeric=True, right=True),
    Column("summary", "summary"),
)
TARGET_WIDTH = 21  # "198.18.200.1:65535" fits; a longer list of targets is cut (whole in the detail)
SUMMARY_WIDTH = 40
WIDE_STATE = 100  # a pane narrower than this says "blocked 9m", wider "blocked · 9m left · 239k dropped"


class AlertGrid(DataTable[Text]):
    COMPONENT_CLASSES = {
        "alert-grid--critical",
        "alert-grid--high",
        "alert-grid--medium",
        "alert-grid--low",
        "alert-grid--resolved",
        "alert-grid--acked",
    }
    BINDINGS = ROW_KEYS

    def action_column(self, step: int) -> None:
        scroll_by_column(self, step)

    def action_first(self) -> None:
        first_row(self)

    DEFAULT_CSS = """
    AlertGrid > .alert-grid--critical { color: $error; text-style: bold reverse; }
    AlertGrid > .alert-grid--high { color: $error; text-style: $ironpost-emphasis; }
    AlertGrid > .alert-grid--medium { color: $warning; text-style: $ironpost-emphasis; }
    AlertGrid > .alert-grid--low { color: $primary; }
    AlertGrid > .alert-grid--resolved { color: $ironpost-resolved; }
    AlertGrid > .alert-grid--acked { color: $ironpost-acked; }
    """


class AlertTable(Vertical):
    """The screen sets ``alerts`` (every incident, newest last), ``now`` and ``read_only``."""

    class BlockRequested(BlockSource):
        """Block this source address (the app asks for how long)."""

    class UnblockRequested(UnblockSource):
        """Delete the rule that blocks this source address."""

    class AlertAcknowledged(WidgetRequest):
        """The operator acknowledged alert ``alert_id`` (``acknowledged`` False: took it back)."""

        def __init__(self, table: AlertTable, alert_id: int, acknowledged: bool = True) -> None:
            super().__init__(table)
            self.alert_id = alert_id
            self.acknowledged = acknowledged

    class DetailRequested(WidgetRequest):
        """Open this alert's detail: its fields, its source's events and rules."""

        def __init__(self, table: AlertTable, alert: Alert) -> None:
            super().__init__(table)
            self.alert = alert

    ALLOW_MAXIMIZE = True

    BINDINGS = [
        Binding(
            "enter", "open_detail", "Detail: its events and rules"
        ),  # the grid's own enter (RowSelected) comes first, the same
        # Not k (a motion, as in less and k9s: j/k move in every table) nor enter (the detail).
        Binding("o", "acknowledge", "Ack / un-ack"),
        Binding("b", "block", "Block"),
        Binding("u", "unblock", "Unblock"),
        Binding("s", "sort", "Sort by next column", show=False),
        Binding("S", "reverse_sort", "Reverse the sort", show=False),
    ]

    DEFAULT_CSS = """
    AlertTable AlertGrid { height: 1fr; }
    AlertTable #alert-status { height: 1; color: $text-muted; }
    AlertTable #alert-status.-error { color: $error; text-style: bold; }
    """

    alerts: reactive[tuple[Alert, ...]] = reactive(tuple, always_update=True, repaint=False)
    capped = False  # more alerts are active than the console holds (state.ACTIVE_KEPT; set before ``alerts``)
    now: reactive[float] = reactive(0.0, repaint=False)  # the source's clock: what a block's time left counts from
    read_only: reactive[bool] = reactive(False)
    problem: reactive[str] = reactive("")
    order: reactive[SortOrder] = reactive(SortOrder)

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.acknowledged: set[int] = set()

    def compose(self) -> ComposeResult:
        grid = AlertGrid(cursor_type="row", id="alert-grid")
        for column in COLUMNS:
            grid.add_column(self.order.label(column), key=column.key)
        yield grid
        yield FieldList(id="alert-detail")
        yield Static("", id="alert-status", markup=False)  # problems quote rule ids and filters: [/] in one crashed it

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._redraw(rebuild=True))

    @property
    def grid(self) -> AlertGrid:
        return self.query_one(AlertGrid)

    def selected(self) -> Alert | None:
        grid = self.grid
        if not grid.row_count:
            return None
        key = grid.coordinate_to_cell_key(grid.cursor_coordinate).row_key.value
        return next((a for a in self.alerts if str(a.id) == key), None)

    def watch_alerts(self) -> None:
        self._redraw()

    def watch_problem(self) -> None:
        self._show_status()

    def on_resize(self) -> None:
        if any(a.block is not None for a in self.alerts):
            self._redraw()

    def watch_now(self, old: float, new: float) -> None:
        # Time left is shown in whole seconds: redraw once a second, and only while a block counts down.
        if int(old) != int(new) and any(a.blocked_until is not None and not a.resolved for a in self.alerts):
            self._redraw()

    def watch_order(self) -> None:
        self._redraw(rebuild=True)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("block", "unblock") and self.read_only:
            return False  # a replay: hidden
        return True

    # --- rows -------------------------------------------------------------------
    def _style(self, alert: Alert) -> str:
        if alert.resolved:
            return "alert-grid--resolved"
        if alert.id in self.acknowledged:
            return "alert-grid--acked"
        return f"alert-grid--{alert.severity}"

    def _sort_keys(self) -> dict[str, Callable[[Alert], Any]]:
        acked = self.acknowledged
        return {
            "id": lambda a: a.id,
            "severity": lambda a: SEVERITY_RANK.get(a.severity, -1),
            "source": lambda a: address_key(a.source),
            "target": lambda a: a.target_text,
            "count": lambda a: a.count,
            "state": lambda a: STATE_RANK[alert_state(a, a.id in acked)],
            "detector": lambda a: str(a.detector),
            "last": lambda a: a.last_seen,
            "first": lambda a: a.first_seen,
            "peak": lambda a: a.peak,
            "summary": lambda a: a.summary,
        }

    def _cells(self, a: Alert) -> list[Text]:
        grid = self.grid
        style = grid.get_component_rich_style(self._style(a), partial=True)
        whole_row = a.resolved or a.id in self.acknowledged  # dimmed as a whole: no longer news
        # When the source last sent, as the README says, also once resolved (until session 25 a resolved alert
        # showed its resolution, quiet_secs later: a timeline read from it stretched every attack by 30 s).
        last = a.last_seen
        # The destinations attacked when known (whole ones, as ADDRESS:PORT, then "+N"), else the
        # incident's target, cut.
        targets = [str(t) for t in a.targets]
        target = fmt.whole_values(targets, TARGET_WIDTH) if targets else fmt.clip(a.target, TARGET_WIDTH)
        cells = [
            Text(str(a.id), justify="right"),
            Text(fmt.text(a.severity.upper()), style=style),
            Text(fmt.text(a.source)),
            Text(fmt.text(target)),
            Text(fmt.count(a.count), justify="right"),
            Text(state_text(a, a.id in self.acknowledged, self.now, self.size.width < WIDE_STATE), style=style),
            Text(a.detector),
            Text(fmt.clock(last)),
            Text(fmt.clock(a.first_seen)),
            Text(fmt.count(a.peak), justify="right"),
            Text(fmt.clip(fmt.text(a.summary), SUMMARY_WIDTH)),
        ]
        if whole_row:
            for cell in cells:
                cell.stylize(style)
        return cells

    def _redraw(self, rebuild: bool = False) -> None:
        if not self.is_mounted:
            return
        grid = self.grid
        rows = self.order.apply(self.alerts, self._sort_keys())
        keys = [str(a.id) for a in rows]
        shown = [str(k.value) for k in grid.rows]
        if rebuild or keys[: len(shown)] != shown:
            selected = self.selected()
            grid.clear(columns=True)
            for column in COLUMNS:
                grid.add_column(self.order.label(column), key=column.key)
            for alert in rows:
                grid.add_row(*self._cells(alert), key=str(alert.id), height=1)
            if selected is not None and str(selected.id) in keys:
                grid.move_cursor(row=keys.index(str(selected.id)), animate=False)
        else:
            for alert in rows[: len(shown)]:
                for column, cell in zip(COLUMNS, self._cells(alert), strict=True):
                    if grid.get_cell(str(alert.id), column.key) != cell:
                        grid.update_cell(str(alert.id), column.key, cell, update_width=True)
            for alert in rows[len(shown) :]:
                grid.add_row(*self._cells(alert), key=str(alert.id), height=1)
        self.set_class(
            any(a.severity in SEVERE and not a.resolved and a.id not in self.acknowledged for a in self.alerts),
            "-critical",
        )
        self._show_detail()
        self._show_status()

    @on(DataTable.RowHighlighted, "#alert-grid")
    def _row_highlighted(self) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        alert = self.selected()
        fields = alert_fields(alert, alert.id in self.acknowledged, self.now) if alert is not None else []
        self.query_one(FieldList).show(fields, "no alerts: the detectors have seen nothing yet")

    def _show_status(self) -> None:
        status = self.query_one("#alert-status", Static)
        status.set_class(bool(self.problem), "-error")
        if self.problem:
            show(status, self.problem)
            return
        active = [a for a in self.alerts if not a.resolved]
        new = [a for a in active if a.id not in self.acknowledged]
        blocked = sum(1 for a in active if a.block is not None)
        c = fmt.count
        held = f" ({c(blocked)} blocked)" if blocked else ""
        resolved = len(self.alerts) - len(active)
        text = f"{c(len(active))} active{held}, {c(len(new))} not acknowledged, {c(resolved)} resolved"
        if self.capped:
            text += " · more are active: the ones seen last are shown"
        if self.order != SortOrder():
            text += f" · {self.order.describe(COLUMNS, 'by number')}"
        show(status, text)

    # --- actions ------------------------------------------------------------------
    def action_sort(self) -> None:
        self.order = self.order.next(COLUMNS)

    def action_reverse_sort(self) -> None:
        self.order = self.order.reversed()

    @on(DataTable.RowSelected, "#alert-grid")
    def _row_selected(self, message: DataTable.RowSelected) -> None:
        message.stop()
        self.open_detail()

    def action_open_detail(self) -> None:
        self.open_detail()

    def open_detail(self) -> None:
        alert = self.selected()
        self.problem = "" if alert is not None else "no alert selected"
        if alert is not None:
            self.post_message(self.DetailRequested(self, alert))

    def action_acknowledge(self) -> None:
        alert = self.selected()
        if alert is not None:
            self.toggle_acknowledged(alert.id)

    def toggle_acknowledged(self, alert_id: int) -> bool:
        """Acknowledge the alert, or take the acknowledgement back (a slip undone with the same key)."""
        acked = alert_id not in self.acknowledged
        if acked:
            self.acknowledged.add(alert_id)
        else:
            self.acknowledged.discard(alert_id)
        self._redraw()
        self.post_message(self.AlertAcknowledged(self, alert_id, acked))
        return acked

    def _source(self) -> str | None:
        alert = self.selected()
        if alert is None:
            self.problem = "no alert selected"
            return None
        if alert.source == MANY_SOURCES:
            self.problem = f"alert {alert.id} comes from many sources: block them one by one from the events pane"
            return None
        self.problem = ""
        return alert.source

    def action_block(self) -> None:
        alert = self.selected()
        source = self._source()
        if source is not None and alert is not None:
            self.post_message(
                self.BlockRequested(self, source, f"blocked from the console: alert {alert.id} {alert.detector}")
            )

    def action_unblock(self) -> None:
        source = self._source()
        if source is not None:
            self.post_message(self.UnblockRequested(self, source))
