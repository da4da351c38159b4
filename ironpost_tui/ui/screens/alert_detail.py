"""An alert's detail (`enter` on an alert): every field in full, the rules on its source, its events.

The app sets ``view`` at each redraw and passes the new events of its source with ``add_events``;
the screen posts what the operator asks (acknowledge, block, unblock) and never edits anything itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Label, Static

from ironpost_tui.detectors import Alert
from ironpost_tui.detectors.alerts import MANY_SOURCES
from ironpost_tui.model import PacketEvent, RuleStatus
from ironpost_tui.records.export import alert_state
from ironpost_tui.ui import format as fmt
from ironpost_tui.ui.alert_scope import event_filter
from ironpost_tui.ui.details import state_text
from ironpost_tui.ui.event_filter import EventFilter
from ironpost_tui.ui.messages import BlockSource, UnblockSource, WidgetRequest
from ironpost_tui.ui.state import EVENTS_KEPT
from ironpost_tui.ui.widgets.event_grid import EventGrid
from ironpost_tui.ui.widgets.rule_grid import RuleGrid

RULE_COLUMNS = ("id", "action", "match", "hits", "last hit", "left")


@dataclass(frozen=True)
class AlertView:
    alert: Alert
    acknowledged: bool
    rules: tuple[RuleStatus, ...]  # the rules on its source
    kept: int  # events kept in all (of any source)
    now: float
    talker: tuple[tuple[str, str], ...] = ()  # its source as the top talkers count it (label, value)


def stamp(ts: float) -> str:
    """A full local date and time, for the detail (the tables show HH:MM:SS)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def fields(alert: Alert, acknowledged: bool, now: float, talker: tuple[tuple[str, str], ...] = ()) -> str:
    """Every field of the alert, one per line, in full (``now``: what a block's time left counts from),
    then its source's traffic as the top talkers count it (``talker``)."""
    lines = [
        f"source    {fmt.text(alert.source)}",
        f"target    {fmt.text(alert.where)}",  # the destinations, on the interface (the table says the same)
        f"count     {fmt.count(alert.count)} within {fmt.span(alert.window_secs)} ({fmt.si(alert.rate)}/s)"
        f" · peak {fmt.count(alert.peak)}",
        f"seen      {stamp(alert.first_seen)} → {stamp(alert.last_seen)}"
        + (f" · resolved {stamp(alert.resolved_at)}" if alert.resolved_at is not None else ""),
        f"state     {state_text(alert, acknowledged, now)}"
        + (f" (by {fmt.text(alert.block.rule_id)})" if alert.block is not None and not alert.resolved else ""),
        f"summary   {fmt.text(alert.summary)}",
    ]
    lines += [f"{label:<10}{value}" for label, value in talker]
    return "\n".join(lines)


class AlertDetailScreen(Screen[None]):
    """One alert; ``escape`` (or ``q``) goes back to the panes."""

    class AcknowledgeRequested(WidgetRequest):
        def __init__(self, screen: AlertDetailScreen, alert_id: int) -> None:
            super().__init__(screen)
            self.alert_id = alert_id

    class BlockRequested(BlockSource):
        """Block the alert's source (the app asks for how long)."""

    class UnblockRequested(UnblockSource):
        """Delete the rule that blocks the alert's source."""

    BINDINGS = [
        Binding("escape,q", "close", "Back"),
        Binding("o", "acknowledge", "Ack / un-ack"),
        Binding("b", "block", "Block"),
        Binding("u", "unblock", "Unblock"),
        Binding("tab", "app.focus_next", "Rules / events", show=False),
    ]

    DEFAULT_CSS = """
    AlertDetailScreen #detail-title { width: 100%; background: $panel; padding: 0 1; text-style: bold; }
    AlertDetailScreen #detail-title.-severe { background: $error 40%; }
    AlertDetailScreen #detail-fields { padding: 0 1; height: auto; }
    AlertDetailScreen .head { color: $text-muted; text-style: bold; padding: 0 1; width: 100%; }
    AlertDetailScreen #detail-problem { color: $error; text-style: bold; padding: 0 1; height: auto; }
    AlertDetailScreen #detail-rules { height: auto; max-height: 6; }
    AlertDetailScreen #detail-events { height: 1fr; }
    AlertDetailScreen Vertical { height: 1fr; }
    """

    view: reactive[AlertView | None] = reactive(None, always_update=True)
    problem: reactive[str] = reactive("")

    def __init__(self, view: AlertView, events: Iterable[PacketEvent], *, read_only: bool = False) -> None:
        super().__init__()
        self.alert_id = view.alert.id
        self.filter: EventFilter = event_filter(view.alert)
        self.read_only = read_only
        self._initial = (view, list(events))

    def compose(self) -> ComposeResult:
        yield Label("", id="detail-title", markup=False)
        yield Static("", id="detail-fields", markup=False)
        yield Static("", id="detail-problem", markup=False).set_styles("display: none;")
        with Vertical():
            yield Label("", id="rules-head", classes="head", markup=False)
            grid = RuleGrid(cursor_type="row", id="detail-rules")
            for label in RULE_COLUMNS:
                grid.add_column(label, key=label)
            yield grid
            yield Label("", id="events-head", classes="head", markup=False)
            yield EventGrid(EVENTS_KEPT, id="detail-events")
        yield Footer(compact=True, show_command_palette=False)  # ctrl+p still opens it: 80 columns are few

    def on_mount(self) -> None:
        view, events = self._initial
        self.events.set_rows(events)
        self.set_reactive(AlertDetailScreen.view, view)
        self._draw(view)
        self.events.focus()

    @property
    def events(self) -> EventGrid:
        return self.query_one("#detail-events", EventGrid)

    def add_events(self, events: Iterable[PacketEvent]) -> None:
        """New events of any source: those of this alert's scope join the list."""
        mine = [e for e in events if self.filter.matches(e)] if self.filter else []
        if mine:
            grid = self.events
            grid.append(mine, follow=grid.following)
            self._show_heads()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("block", "unblock") and self.read_only:
            return False  # a replay
        return True

    # --- drawing ----------------------------------------------------------------------
    def watch_view(self, view: AlertView | None) -> None:
        if view is not None and self.is_mounted:
            self._draw(view)

    def _draw(self, view: AlertView) -> None:
        a = view.alert
        title = self.query_one("#detail-title", Label)
        state = alert_state(a, view.acknowledged)
        title.update(f"Alert {a.id} · {fmt.text(a.severity.upper())} · {a.detector} · {state}   (esc: back)")
        title.set_class(a.severity in ("critical", "high") and not a.resolved and not view.acknowledged, "-severe")
        self.query_one("#detail-fields", Static).update(fields(a, view.acknowledged, view.now, view.talker))
        self._show_rules(view)
        self._show_heads()

    def _show_rules(self, view: AlertView) -> None:
        grid = self.query_one("#detail-rules", RuleGrid)
        row = grid.cursor_row
        grid.clear()
        for s in view.rules:
            rule = s.rule
            left = "" if rule.expires_at is None else fmt.span(rule.expires_at - view.now)
            action = grid.get_component_rich_style(f"rule-grid--{rule.action.value}", partial=True)
            grid.add_row(
                Text(fmt.text(rule.id)),
                Text(rule.action.value, style=action),
                Text(fmt.rule_match(rule)),
                Text(fmt.count(s.hits), justify="right"),
                Text(fmt.clock(s.last_hit) if s.last_hit else "—"),
                Text(left),
                key=rule.id,
            )
        if view.rules:
            grid.move_cursor(row=min(row, len(view.rules) - 1), animate=False)
        grid.display = bool(view.rules)

    def _show_heads(self) -> None:
        view = self.view
        if view is None:
            return
        a = view.alert
        scope = self.filter.text or "nothing to scope to"
        if a.source == MANY_SOURCES:
            on = f"its target {fmt.text(a.target)} (many sources)"
        else:
            on = fmt.text(a.source)
        n = len(view.rules)
        rules = f"rules on {on}: {n}" if n else f"rules on {on}: none" + ("" if self.read_only else " (b blocks it)")
        self.query_one("#rules-head", Label).update(rules)
        shown = self.events.row_count
        self.query_one("#events-head", Label).update(
            f"events {scope}: {fmt.count(shown)} of {fmt.count(view.kept)} kept"
        )

    def watch_problem(self, problem: str) -> None:
        if not self.is_mounted:
            return  # closed: nothing to say it on (a late call must never end the console)
        line = self.query_one("#detail-problem", Static)
        line.update(problem)
        line.display = bool(problem)

    # --- actions ----------------------------------------------------------------------
    def action_close(self) -> None:
        self.dismiss(None)

    def action_acknowledge(self) -> None:
        self.post_message(self.AcknowledgeRequested(self, self.alert_id))

    def _source(self) -> str | None:
        view = self.view
        if view is None:
            return None
        if view.alert.source == MANY_SOURCES:
            self.problem = "many sources: block them one by one from the events pane"
            return None
        self.problem = ""
        return view.alert.source

    def action_block(self) -> None:
        source = self._source()
        if source is not None and self.view is not None:
            a = self.view.alert
            self.post_message(self.BlockRequested(self, source, f"blocked from the console: alert {a.id} {a.detector}"))

    def action_unblock(self) -> None:
        source = self._source()
        if source is not None:
            self.post_message(self.UnblockRequested(self, source))
