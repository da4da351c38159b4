"""The main view: status line, the five panes, the footer; which pane has the keys.

Wide and tall terminals show the panes in a grid; narrow or short ones
(80×24 over SSH) show one pane at a time, switched with 1-5 or tab.
"""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer

from ironpost_tui.ui.widgets.alert_table import AlertTable
from ironpost_tui.ui.widgets.event_table import EventTable
from ironpost_tui.ui.widgets.pane_tabs import PANE_TITLES, PaneTabs
from ironpost_tui.ui.widgets.rules_pane import RulesPane
from ironpost_tui.ui.widgets.status_bar import StatusBar
from ironpost_tui.ui.widgets.top_pane import TopPane
from ironpost_tui.ui.widgets.traffic_pane import TrafficPane


class MainScreen(Screen[None]):
    """The app sets the panes' attributes; this screen only arranges them and moves focus."""

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]

    BINDINGS = [
        Binding("q", "app.quit", "Quit"),
        Binding("tab", "next_pane(1)", "Next pane", show=False),
        Binding("shift+tab", "next_pane(-1)", "Previous pane", show=False),
        Binding("1", "pane(0)", "Traffic", show=False),
        Binding("2", "pane(1)", "Alerts", show=False),
        Binding("3", "pane(2)", "Events", show=False),
        Binding("4", "pane(3)", "Rules", show=False),
        Binding("5", "pane(4)", "Top", show=False),
        Binding("z", "zoom", "Zoom", show=False),
        Binding("space", "app.pause", "Pause"),
        Binding("a", "app.add_rule", "Add"),
        Binding("g", "app.chart", "Chart"),
        Binding("m", "app.units", "Bits/bytes", show=False),
        Binding("exclamation_mark", "app.panic", "Panic", show=False),
        Binding("r", "app.reload", "Reload", show=False),
        Binding("n", "app.notices", "Notices", show=False),
        Binding("E", "app.export('events')", "Export events", show=False),
        Binding("A", "app.export('alerts')", "Export alerts", show=False),
        Binding("left", "app.seek(-10)", "Replay: back 10 s", priority=True, show=False),
        Binding("right", "app.seek(10)", "Replay: forward 10 s", priority=True, show=False),
        Binding("plus", "app.speed(1)", "Replay: faster", show=False),
        Binding("minus", "app.speed(-1)", "Replay: slower", show=False),
    ]

    current: reactive[int] = reactive(0)

    def __init__(self, *, cursor_blink: bool = True) -> None:
        super().__init__()
        self._cursor_blink = cursor_blink

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield PaneTabs(id="tabs")
        with Container(id="panes"):
            yield TrafficPane(id="traffic", classes="pane")
            yield AlertTable(id="alerts", classes="pane")
            yield EventTable(id="events", classes="pane", cursor_blink=self._cursor_blink)
            yield RulesPane(id="rules", classes="pane")
            yield TopPane(id="top", classes="pane", cursor_blink=self._cursor_blink)
        yield Footer(compact=True, show_command_palette=False)  # ctrl+p still opens it: 80 columns are few

    @property
    def panes(self) -> tuple[Widget, ...]:
        return tuple(self.query_one(f"#{name}") for name in ("traffic", "alerts", "events", "rules", "top"))

    def on_mount(self) -> None:
        for i, (pane, title) in enumerate(zip(self.panes, PANE_TITLES, strict=True)):
            pane.border_title = f"{i + 1} {title}"
        self.watch_current(self.current)

    def _focus_target(self, pane: Widget) -> Widget:
        if isinstance(pane, TrafficPane):
            return pane
        return pane.query_one("DataTable, EventGrid, RuleRows")

    def watch_current(self, current: int) -> None:
        for i, pane in enumerate(self.panes):
            pane.set_class(i == current, "-current")
        self.query_one(PaneTabs).current = current
        target = self._focus_target(self.panes[current])
        if self.focused is None or self._pane_of(self.focused) != current:
            target.focus()
        if self.maximized is not None:
            self.maximize(self.panes[current], container=False)

    def _pane_of(self, widget: Widget) -> int | None:
        panes = self.panes
        for node in (widget, *widget.ancestors):
            if node in panes:
                return panes.index(node)
        return None

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        index = self._pane_of(event.widget)
        if index is not None:
            self.current = index

    def action_pane(self, index: int) -> None:
        self.current = index
        self._focus_target(self.panes[index]).focus()

    def action_next_pane(self, step: int) -> None:
        self.action_pane((self.current + step) % len(PANE_TITLES))

    def action_zoom(self) -> None:
        if self.maximized is not None:
            self.minimize()
        else:
            self.maximize(self.panes[self.current], container=False)
