"""A short table of rules with the rules pane's colours: the alert detail's rules on the alert's sources
(a few rows: a DataTable; the rules pane's own table is rule_rows.RuleRows)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from ironpost_tui.ui.widgets.row_keys import ROW_KEYS, first_row, scroll_by_column


class RuleGrid(DataTable[Text]):
    COMPONENT_CLASSES = {
        "rule-grid--drop",
        "rule-grid--monitor",
        "rule-grid--expiring",
        "rule-grid--auto",
        "rule-grid--external",
    }
    DEFAULT_CSS = """
    RuleGrid > .rule-grid--drop { color: $error; text-style: $ironpost-emphasis; }
    RuleGrid > .rule-grid--monitor { color: $warning; text-style: $ironpost-emphasis; }
    RuleGrid > .rule-grid--expiring { color: $accent; }
    RuleGrid > .rule-grid--auto { color: $accent; text-style: bold; }
    RuleGrid > .rule-grid--external { color: $secondary; text-style: bold; }
    """
    BINDINGS = ROW_KEYS

    def action_column(self, step: int) -> None:
        scroll_by_column(self, step)

    def action_first(self) -> None:
        first_row(self)
