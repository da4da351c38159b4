"""The moves of a row table (DataTable with a row cursor), as the panes' own grids have them (line_grid.py):
j and k as down and up (less, k9s), home and end to the first and last row (DataTable's own scroll sideways,
which a row cursor never needs)."""

from __future__ import annotations

from textual.binding import Binding, BindingType

ROW_KEYS: list[BindingType] = [
    Binding("j", "cursor_down", "Down", show=False),
    Binding("k", "cursor_up", "Up", show=False),
    Binding("home", "scroll_top", "First", show=False),
    Binding("end", "scroll_bottom", "Last", show=False),
]
