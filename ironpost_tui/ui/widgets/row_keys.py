"""The moves of a row table (DataTable with a row cursor), as the panes' own grids have them (line_grid.py):
j and k as down and up (less, k9s), home and end to the first and last row (home back to the first column too),
left and right a column at a time (a row cursor never needs DataTable's cell-by-cell scroll: reaching an alert's
last seen took some 45 presses until session 25)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from textual.binding import Binding, BindingType
from textual.widgets import DataTable

ROW_KEYS: list[BindingType] = [
    Binding("j", "cursor_down", "Down", show=False),
    Binding("k", "cursor_up", "Up", show=False),
    Binding("home", "first", "First", show=False),
    Binding("end", "scroll_bottom", "Last", show=False),
    Binding("right", "column(1)", "Next column", show=False),
    Binding("left", "column(-1)", "Previous column", show=False),
]


def column_stop(starts: Sequence[int], x: int, step: int) -> int:
    """Where a sideways scroll from ``x`` stops: the next column's start (``step`` > 0) or the previous one's."""
    if step > 0:
        return next((s for s in starts if s > x), x)
    return max((s for s in starts if s < x), default=0)


def scroll_by_column(table: DataTable[Any], step: int) -> None:
    """``table`` scrolled sideways to the start of the next (previous) column."""
    starts, x = [], 0
    for column in table.ordered_columns:
        starts.append(x)
        x += column.get_render_width(table)
    table.scroll_to(x=column_stop(starts, round(table.scroll_x), step), animate=False, immediate=True)


def first_row(table: DataTable[Any]) -> None:
    """home: the first row, and the first column in view again."""
    table.action_scroll_top()
    table.scroll_to(x=0, animate=False, immediate=True)
