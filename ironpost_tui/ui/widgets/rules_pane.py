"""The rules as the kernel holds them: which map enforces each, hits, expiry; edits."""

from __future__ import annotations

from dataclasses import replace

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import DataTable, Static

from ironpost_tui.kernel.abi import MapName
from ironpost_tui.model import Action, FilterRule, RuleStatus
from ironpost_tui.rules.nft import nft_command
from ironpost_tui.ui import format as fmt
from ironpost_tui.ui.messages import RuleRequest, WidgetRequest

COLUMNS = (
    ("id", "id"),
    ("action", "action"),
    ("match", "match"),
    ("map", "map"),
    ("hits", "hits"),
    ("last hit", "last"),
    ("left", "left"),
    ("", "auto"),
)


class RuleGrid(DataTable[Text]):
    COMPONENT_CLASSES = {"rule-grid--drop", "rule-grid--monitor", "rule-grid--expiring", "rule-grid--auto"}
    DEFAULT_CSS = """
    RuleGrid > .rule-grid--drop { color: $error; text-style: $ironpost-emphasis; }
    RuleGrid > .rule-grid--monitor { color: $warning; text-style: $ironpost-emphasis; }
    RuleGrid > .rule-grid--expiring { color: $accent; }
    RuleGrid > .rule-grid--auto { color: $accent; text-style: bold; }
    """
    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
    ]


class RulesPane(Vertical):
    """The screen sets ``rules``, ``now``, ``capacity``, ``read_only`` and ``problem``."""

    class RuleFormRequested(RuleRequest):
        """Open the rule form: to add (rule None) or edit ``rule``."""

    class RuleDeleteRequested(RuleRequest):
        rule: FilterRule

        def __init__(self, pane: RulesPane, rule: FilterRule) -> None:
            super().__init__(pane, rule)

    class RuleChanged(RuleRequest):
        """The operator changed a rule in place (x: drop <-> monitor)."""

        rule: FilterRule

        def __init__(self, pane: RulesPane, rule: FilterRule) -> None:
            super().__init__(pane, rule)

    class CopyRequested(WidgetRequest):
        """``text`` wanted on the clipboard and shown (a rule's nft command)."""

        def __init__(self, pane: RulesPane, text: str, title: str) -> None:
            super().__init__(pane)
            self.text = text
            self.title = title

    ALLOW_MAXIMIZE = True

    BINDINGS = [
        Binding("e", "edit", "Edit"),
        Binding("d", "delete", "Delete"),
        Binding("x", "switch", "Drop/monitor"),
        Binding("c", "copy", "Copy as nft", show=False),
    ]

    DEFAULT_CSS = """
    RulesPane RuleGrid { height: 1fr; }
    RulesPane #rule-status { height: 1; color: $text-muted; }
    RulesPane #rule-status.-error { color: $error; text-style: bold; }
    """

    rules: reactive[tuple[RuleStatus, ...]] = reactive(tuple, always_update=True)
    now: reactive[float] = reactive(0.0)
    capacity: reactive[int] = reactive(0)
    read_only: reactive[bool] = reactive(False)
    problem: reactive[str] = reactive("")

    def compose(self) -> ComposeResult:
        grid = RuleGrid(cursor_type="row", id="rule-grid")
        for label, key in COLUMNS:
            grid.add_column(label, key=key)
        yield grid
        yield Static("", id="rule-status")

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._redraw(rebuild=True))

    @property
    def grid(self) -> RuleGrid:
        return self.query_one(RuleGrid)

    def selected(self) -> FilterRule | None:
        grid = self.grid
        if not grid.row_count:
            return None
        key = grid.coordinate_to_cell_key(grid.cursor_coordinate).row_key.value
        return next((s.rule for s in self.rules if s.rule.id == key), None)

    def watch_rules(self) -> None:
        self._redraw()

    def watch_now(self) -> None:
        self._redraw()

    def watch_problem(self) -> None:
        self._show_status()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("edit", "delete", "switch") and self.read_only:
            return False  # a replay: hidden
        return True

    # --- rows -------------------------------------------------------------------
    def _cells(self, s: RuleStatus) -> list[Text]:
        grid = self.grid
        rule = s.rule
        action = grid.get_component_rich_style(f"rule-grid--{rule.action.value}", partial=True)
        if rule.expires_at is None:
            left = Text("")
        else:
            remaining = rule.expires_at - self.now
            style = grid.get_component_rich_style("rule-grid--expiring", partial=True)
            left = Text(fmt.span(remaining) if remaining > 0 else "expired", style=style)
        auto = grid.get_component_rich_style("rule-grid--auto", partial=True)
        return [
            Text(fmt.text(rule.id)),
            Text(rule.action.value, style=action),
            Text(fmt.rule_match(rule)),
            Text(fmt.text(s.map_name)),
            Text(fmt.count(s.hits), justify="right"),
            Text(fmt.clock(s.last_hit) if s.last_hit else "—"),
            left,
            Text("auto", style=auto) if rule.auto else Text(""),
        ]

    def _redraw(self, rebuild: bool = False) -> None:
        if not self.is_mounted:
            return
        grid = self.grid
        keys = [s.rule.id for s in self.rules]
        shown = [str(k.value) for k in grid.rows]
        if rebuild or keys != shown:
            selected = self.selected()
            row = grid.cursor_row
            grid.clear()
            for status in self.rules:
                grid.add_row(*self._cells(status), key=status.rule.id, height=1)
            if selected is not None and selected.id in keys:
                grid.move_cursor(row=keys.index(selected.id), animate=False)
            elif keys:
                grid.move_cursor(row=min(row, len(keys) - 1), animate=False)
        else:
            for status in self.rules:
                for (_label, column), cell in zip(COLUMNS, self._cells(status), strict=True):
                    if grid.get_cell(status.rule.id, column) != cell:
                        grid.update_cell(status.rule.id, column, cell, update_width=True)
        self._show_status()

    def _show_status(self) -> None:
        if not self.is_mounted:
            return
        status = self.query_one("#rule-status", Static)
        status.set_class(bool(self.problem), "-error")
        if self.problem:
            status.update(self.problem)
            return
        used = sum(1 for s in self.rules if s.map_name == MapName.BLOCKLIST)
        drops = sum(1 for s in self.rules if s.rule.action is Action.DROP)
        text = f"{len(self.rules)} rules ({drops} drop) · blocklist {used}/{self.capacity}"
        status.update(text + (" · read-only replay" if self.read_only else ""))

    # --- actions ------------------------------------------------------------------
    def _need_rule(self) -> FilterRule | None:
        rule = self.selected()
        self.problem = "" if rule is not None else "no rule selected"
        return rule

    @on(DataTable.RowSelected, "#rule-grid")
    def _row_selected(self, message: DataTable.RowSelected) -> None:
        message.stop()
        if not self.read_only:
            self.action_edit()

    def action_edit(self) -> None:
        rule = self._need_rule()
        if rule is not None:
            self.post_message(self.RuleFormRequested(self, rule))

    def action_delete(self) -> None:
        rule = self._need_rule()
        if rule is not None:
            self.post_message(self.RuleDeleteRequested(self, rule))

    def action_switch(self) -> None:
        rule = self._need_rule()
        if rule is not None:
            other = Action.MONITOR if rule.action is Action.DROP else Action.DROP
            self.post_message(self.RuleChanged(self, replace(rule, action=other)))

    def action_copy(self) -> None:
        """The rule as an nft command: on the clipboard (OSC 52) and shown; a replay too."""
        rule = self._need_rule()
        if rule is not None:
            self.post_message(self.CopyRequested(self, nft_command(rule), f"copied: nft command for {rule.id}"))
