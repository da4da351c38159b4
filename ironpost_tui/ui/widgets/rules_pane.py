"""The rules as the kernel holds them: which map enforces each, hits, expiry; edits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import Static

from ironpost_tui import collector
from ironpost_tui.engine.feed import RulesHead, count_drops, count_in_blocklist, replaced_at
from ironpost_tui.model import Action, FilterRule, RuleStatus
from ironpost_tui.rules.nft import nft_command
from ironpost_tui.ui import format as fmt
from ironpost_tui.ui.details import rule_fields
from ironpost_tui.ui.messages import RuleRequest, WidgetRequest
from ironpost_tui.ui.table_sort import SortOrder, maybe
from ironpost_tui.ui.widgets.field_list import FieldList
from ironpost_tui.ui.widgets.rule_rows import COLUMNS, RuleRows, source_of
from ironpost_tui.ui.widgets.shown_text import show

SORT_KEYS: dict[str, Callable[[RuleStatus], Any]] = {
    "id": lambda s: s.rule.id,
    "hits": lambda s: s.hits,
    "left": lambda s: (s.rule.expires_at is None, s.rule.expires_at or 0.0),  # the soonest first; never last
    "action": lambda s: s.rule.action.value,
    "match": lambda s: fmt.rule_match(s.rule),
    "map": lambda s: s.map_name,
    "last": lambda s: maybe(s.last_hit),
    "source": lambda s: source_of(s.rule) or "",
}


class TableCounts:
    """A table's rules in BLOCKLIST and its drop rules, counted again only where a new table differs from
    the last one counted (the same length: its rows compared by object, in C), else whole."""

    def __init__(self) -> None:
        self._rows: tuple[RuleStatus, ...] = ()
        self._counts = (0, 0)

    def of(self, rows: tuple[RuleStatus, ...]) -> tuple[int, int]:
        """(in BLOCKLIST, drop rules) of ``rows``."""
        last = self._rows
        if rows is last:
            return self._counts
        if len(rows) == len(last):
            places = replaced_at(rows, last)
            was = [last[i] for i in places]
            now = [rows[i] for i in places]
            used, drops = self._counts
            used += count_in_blocklist(now) - count_in_blocklist(was)
            drops += count_drops(now) - count_drops(was)
        else:
            used, drops = count_in_blocklist(rows), count_drops(rows)
        self._rows, self._counts = rows, (used, drops)
        return used, drops


class RulesPane(Vertical):
    """The screen sets ``rules``, ``now``, ``capacity``, ``read_only`` and ``problem``."""

    class RuleFormRequested(RuleRequest):
        """Open the rule form: to add (rule None) or edit ``rule``."""

    class RuleDeleteRequested(RuleRequest):
        rule: FilterRule

        def __init__(self, pane: RulesPane, rule: FilterRule) -> None:
            super().__init__(pane, rule)

    class RuleChanged(RuleRequest):
        """The operator changed a rule in place (x: drop <-> monitor); ``shown``, the rule as the pane had it."""

        rule: FilterRule

        def __init__(self, pane: RulesPane, rule: FilterRule, shown: FilterRule) -> None:
            super().__init__(pane, rule)
            self.shown = shown

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
        Binding("s", "sort", "Sort by next column", show=False),
        Binding("S", "reverse_sort", "Reverse the sort", show=False),
    ]

    DEFAULT_CSS = """
    RulesPane RuleRows { height: 1fr; }
    RulesPane #rule-status { height: 1; color: $text-muted; }
    RulesPane #rule-status.-error { color: $error; text-style: bold; }
    """

    rules: reactive[tuple[RuleStatus, ...]] = reactive(tuple, always_update=True, repaint=False)
    now: reactive[float] = reactive(0.0, repaint=False)
    capacity: reactive[int] = reactive(0)
    decisions: reactive[int] = reactive(0)  # CrowdSec's entries in BLOCKLIST (one row for all of them)
    rules_path = ""  # where the operator's rules are saved (SourceInfo.rules_path), for the detail's origin
    read_only: reactive[bool] = reactive(False)
    problem: reactive[str] = reactive("")
    order: reactive[SortOrder] = reactive(SortOrder)
    head: RulesHead | None = None  # ``rules`` are a long table's first rows: these are its counts (set first)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._counts = TableCounts()

    def compose(self) -> ComposeResult:
        yield RuleRows(id="rule-grid")
        yield FieldList(id="rule-detail")
        yield Static("", id="rule-status", markup=False)  # problems quote rule ids and filters: [/] in one crashed it

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._redraw(rebuild=True))

    @property
    def grid(self) -> RuleRows:
        return self.query_one(RuleRows)

    def selected(self) -> FilterRule | None:
        status = self.grid.selected
        return status.rule if status is not None else None

    def watch_rules(self) -> None:
        self._redraw()

    def watch_now(self) -> None:
        if self.is_mounted:
            self.grid.set_now(self.now)  # the time left of the rules that expire: not the whole table
            self._show_detail()

    def watch_problem(self) -> None:
        self._show_status()

    def watch_capacity(self) -> None:
        # Set when the source has started, which may be after its rules have arrived: the status said
        # "blocklist 8744/0" until the next change of the rules (until session 26).
        self._show_status()

    def watch_decisions(self) -> None:
        self._show_status()

    def watch_order(self) -> None:
        self._redraw(rebuild=True)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("edit", "delete", "switch") and self.read_only:
            return False  # a replay: hidden
        return True

    # --- rows -------------------------------------------------------------------
    def _redraw(self, rebuild: bool = False) -> None:
        if not self.is_mounted:
            return
        grid = self.grid
        if rebuild:
            grid.refresh()  # a theme: the same texts in new colours
        rows = self.order.apply(self.rules, SORT_KEYS)
        with collector.held():  # a new table formats a row of cells per rule: 10,000 at a start
            grid.set_rows(rows, self.now, [self.order.label(c) for c in COLUMNS])
        self._show_detail()
        self._show_status()

    @on(RuleRows.CursorMoved, "#rule-grid")
    def _row_highlighted(self) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        status = self.grid.selected
        detail = self.query_one(FieldList)
        detail.show(
            rule_fields(status, self.now, self.rules_path) if status is not None else [], "no rules: a adds one"
        )

    def _show_status(self) -> None:
        if not self.is_mounted:
            return
        status = self.query_one("#rule-status", Static)
        status.set_class(bool(self.problem), "-error")
        if self.problem:
            show(status, self.problem)
            return
        head = self.head
        if head is not None:
            total, drops, used = head.total, head.drops, head.blocklist
        else:
            total = len(self.rules)
            used, drops = self._counts.of(self.rules)
        c = fmt.count
        text = f"{c(total)} rules ({c(drops)} drop) · blocklist {c(used + self.decisions)}/{c(self.capacity)}"
        if self.order != SortOrder():
            text += f" · {self.order.describe(COLUMNS, 'file order')}"
        show(status, text + (" · read-only replay" if self.read_only else ""))

    # --- actions ------------------------------------------------------------------
    def action_sort(self) -> None:
        self.order = self.order.next(COLUMNS)

    def action_reverse_sort(self) -> None:
        self.order = self.order.reversed()

    def _need_rule(self) -> FilterRule | None:
        rule = self.selected()
        self.problem = "" if rule is not None else "no rule selected"
        return rule

    @on(RuleRows.Selected, "#rule-grid")
    def _row_selected(self, message: RuleRows.Selected) -> None:
        message.stop()
        if not self.read_only:
            self.action_edit()

    def _editable(self, rule: FilterRule | None) -> FilterRule | None:
        """The rule, unless another tool owns it (an external rule changes with that tool)."""
        if rule is not None and rule.external:
            self.problem = f"{fmt.text(rule.id)} is another tool's BLOCKLIST entry: d deletes it"
            return None
        return rule

    def action_edit(self) -> None:
        rule = self._editable(self._need_rule())
        if rule is not None:
            self.post_message(self.RuleFormRequested(self, rule))

    def action_delete(self) -> None:
        rule = self._need_rule()
        if rule is not None:
            self.post_message(self.RuleDeleteRequested(self, rule))

    def action_switch(self) -> None:
        rule = self._editable(self._need_rule())
        if rule is not None:
            other = Action.MONITOR if rule.action is Action.DROP else Action.DROP
            self.post_message(self.RuleChanged(self, replace(rule, action=other), rule))

    def action_copy(self) -> None:
        """The rule as an nft command: on the clipboard (OSC 52) and shown; a replay too."""
        rule = self._need_rule()
        if rule is not None:
            self.post_message(self.CopyRequested(self, nft_command(rule), f"copied: nft command for {rule.id}"))
