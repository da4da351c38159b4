"""A table drawn through Textual's Line API: a header, the rows on screen only, a row cursor, with a
DataTable's look (same header, cursor and hover styles, padding, auto-width columns).

A DataTable builds and measures every row it holds (about 120 µs a row): under an event flood that
was most of the console's CPU, and with a threat feed's 10,000 rules over a second of its start.  The
events and rules tables are subclasses (event_grid.py, rule_rows.py): each keeps its own rows and says
how many there are and what one row's cells are; this draws them and moves the cursor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ironpost_tui.ui.table_sort import Column
from ironpost_tui.ui.widgets.row_keys import column_stop

PADDING = 1  # cells each side of a column, as a DataTable's cell_padding

# A cell: its text and the component class that colours it, less the grid's prefix ("" for none).
Cell = tuple[str, str]


def cells_of(text: str) -> int:
    """The terminal cells ``text`` takes (a wide character two)."""
    return len(text) if text.isascii() else cell_len(text)


class LineGrid(ScrollView, can_focus=True):
    """Rows under a header, with a row cursor; posts ``CursorMoved``.  A subclass sets COLUMNS and
    PREFIX (its component classes are PREFIX--header, --cursor, --hover and one per cell kind), keeps
    ``_widths`` (cells per column) and implements ``row_count`` and ``row_cells``."""

    COLUMNS: ClassVar[tuple[Column, ...]] = ()
    PREFIX: ClassVar[str] = ""
    HEADER_ALIGNED: ClassVar[bool] = True  # a right-aligned column's label on the right too

    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Cursor up", show=False),
        Binding("down,j", "cursor(1)", "Cursor down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,ctrl+home", "first", "First", show=False),
        Binding("end,ctrl+end", "last", "Last", show=False),
        Binding("right", "column(1)", "Next column", show=False),
        Binding("left", "column(-1)", "Previous column", show=False),
    ]

    class GridMessage(Message):
        """A message of the grid's; ``control`` is the grid (for ``@on(..., "#id")``)."""

        def __init__(self, grid: LineGrid) -> None:
            super().__init__()
            self.grid = grid

        @property
        def control(self) -> LineGrid:
            return self.grid

    class CursorMoved(GridMessage):
        """The cursor is on another row (or the rows under it changed)."""

    cursor_row: reactive[int] = reactive(0, init=False, always_update=True, repaint=False)
    hover_row: reactive[int] = reactive(-1, init=False, repaint=False)

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._widths = [cells_of(c.label) for c in self.COLUMNS]

    # --- what a subclass says -----------------------------------------------------------
    @property
    def row_count(self) -> int:
        raise NotImplementedError

    @property
    def labels(self) -> list[str]:
        return [c.label for c in self.COLUMNS]

    def row_cells(self, row: int) -> Sequence[Cell]:
        """Row ``row``'s cells as shown (top to bottom), one per column."""
        raise NotImplementedError

    def _update_width(self) -> None:
        width = sum(self._widths) + 2 * PADDING * len(self.COLUMNS)
        self.virtual_size = self.virtual_size.with_width(width)

    # --- the cursor -------------------------------------------------------------------
    def validate_cursor_row(self, row: int) -> int:
        return max(0, min(row, self.row_count - 1))

    def watch_cursor_row(self) -> None:
        self._scroll_to_cursor()
        self.refresh()
        self.post_message(self.CursorMoved(self))

    def watch_hover_row(self) -> None:
        self.refresh()

    @property
    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)  # rows under the header

    def _scroll_to_cursor(self) -> None:
        row, top, page = self.cursor_row, round(self.scroll_y), self._page
        if row < top:
            self.scroll_to(y=row, animate=False, immediate=True)
        elif row >= top + page:
            self.scroll_to(y=row - page + 1, animate=False, immediate=True)

    def on_resize(self) -> None:
        self._scroll_to_cursor()

    def action_cursor(self, step: int) -> None:
        self.hover_row = -1
        self.cursor_row += step

    def action_page(self, step: int) -> None:
        self.hover_row = -1
        self.scroll_to(y=self.scroll_y + step * self._page, animate=False, immediate=True)
        self.cursor_row += step * self._page

    def action_first(self) -> None:
        self.cursor_row = 0
        self.scroll_to(x=0, animate=False, immediate=True)  # the first column in view again

    def action_column(self, step: int) -> None:
        """left / right: a column at a time (ScrollView's own scroll moves one cell)."""
        starts = [sum(self._widths[:i]) + 2 * PADDING * i for i in range(len(self._widths))]
        self.scroll_to(x=column_stop(starts, round(self.scroll_x), step), animate=False, immediate=True)

    def action_last(self) -> None:
        self.cursor_row = max(0, self.row_count - 1)

    def _row_at(self, event: events.MouseEvent) -> int | None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y < 1:
            return None
        row = round(self.scroll_y) + offset.y - 1
        return row if row < self.row_count else None

    def on_click(self, event: events.Click) -> None:
        row = self._row_at(event)
        if row is not None:
            self.cursor_row = row

    def on_mouse_move(self, event: events.MouseMove) -> None:
        row = self._row_at(event)
        self.hover_row = -1 if row is None else row

    def on_leave(self) -> None:
        self.hover_row = -1

    # --- drawing ----------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        scroll_x, scroll_y = self.scroll_offset
        if y == 0:
            header = self.get_component_rich_style(f"{self.PREFIX}--header")
            segments = self._segments([(label, "") for label in self.labels], header, None, header=True)
        else:
            row = scroll_y + y - 1
            if row >= self.row_count:
                return Strip.blank(width, base)
            style = base
            post = None
            if row == self.hover_row:
                style += self.get_component_rich_style(f"{self.PREFIX}--hover")
            if row == self.cursor_row:
                cursor = self.get_component_rich_style(f"{self.PREFIX}--cursor")
                style += cursor
                post = Style.from_color(cursor.color)  # the cursor's colour wins (DataTable's "css" priority)
            segments = self._segments(self.row_cells(row), style, post)
        line = Strip(segments).crop(scroll_x, scroll_x + width)
        return line.adjust_cell_length(width, base).simplify()

    def _segments(self, row: Sequence[Cell], style: Style, post: Style | None, header: bool = False) -> list[Segment]:
        segments = []
        pad = " " * PADDING
        used = 0
        styles: dict[str, Style] = {}
        for column, (text, kind), w in zip(self.COLUMNS, row, self._widths, strict=True):
            n = cells_of(text)
            if n > w:
                text, n = set_cell_size(text, w), w
            gap = " " * (w - n)
            cell_style = style
            if kind:
                if kind not in styles:
                    styles[kind] = self.get_component_rich_style(f"{self.PREFIX}--{kind}", partial=True)
                cell_style = style + styles[kind]
            if post is not None:
                cell_style += post
            # The blanks around a coloured cell take its style too: a run of blanks that opens the next
            # text is drawn too narrow by some SVG renderers (the screenshots' PNGs).
            blank = cell_style if kind else style
            right = column.right and (self.HEADER_ALIGNED or not header)
            segments.append(Segment(pad + gap if right else pad, blank))
            segments.append(Segment(text, cell_style))
            segments.append(Segment(pad if right else gap + pad, blank))
            used += w + 2 * PADDING
        segments.append(Segment(" " * max(0, self.size.width - used), style))
        return segments

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self.refresh()
