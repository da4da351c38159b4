"""The events table: a Line API widget that renders only the rows on screen.

A DataTable builds and measures every row it holds (about 120 µs a row), which under an
event flood was most of the console's CPU.  This grid keeps the events themselves, in a
bounded deque, and formats a row only when it is drawn; the column widths grow with what
arrives (as a DataTable's auto-width columns do).  It looks like a DataTable with a row
cursor: same header, cursor and hover styles.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ironpost_tui.model import PacketEvent
from ironpost_tui.ui import format as fmt
from ironpost_tui.ui.table_sort import Column, SortOrder

# What a responder reads first, first: when, who, what became of it and by which rule, then
# what it was aimed at.  At 80 columns (IPv4) everything up to the flags is on screen.
COLUMNS = (
    Column("time", "time", numeric=True),
    Column("source", "source"),
    Column("verdict", "verdict"),
    Column("rule", "rule"),
    Column("proto", "proto"),
    Column("dport", "dport", right=True),
    Column("flags", "flags"),
    Column("destination", "destination"),
    Column("sport", "sport", right=True),
    Column("len", "len", numeric=True, right=True),
)
VERDICT_COLUMN = 2
RULE_WIDTH = 16  # longer rule ids end in an ellipsis (the rules pane's detail and `rule:ID` have them whole)
CLOCK_WIDTH = 8  # HH:MM:SS
PADDING = 1  # cells each side of a column, as a DataTable's cell_padding

SORT_KEYS: dict[str, Callable[[PacketEvent], Any]] = {
    "time": lambda e: e.ts,
    "source": lambda e: (e.src.version, int(e.src)),
    "verdict": lambda e: e.verdict.value,
    "rule": lambda e: e.rule_id or "",
    "proto": lambda e: e.protocol,
    "dport": lambda e: e.dst_port,
    "flags": lambda e: e.tcp_flags,
    "destination": lambda e: (e.dst.version, int(e.dst)),
    "sport": lambda e: e.src_port,
    "len": lambda e: e.length,
}


def cells(e: PacketEvent, clock: bool = True) -> tuple[str, ...]:
    """The row's texts, one per column (``clock=False``: the time left empty, for measuring)."""
    ts, _family, src, dst, sport, dport, proto, flags, length, verdict, rule_id = e  # an engine's event: one decode
    icmp = proto in (1, 58)
    return (
        fmt.clock(ts) if clock else "",
        str(src),
        verdict.value,
        fmt.clip(fmt.text(rule_id or ""), RULE_WIDTH),
        fmt.protocol(proto),
        "" if icmp else str(dport),
        fmt.tcp_flags(flags) if proto == 6 else "",
        str(dst),
        "" if icmp else str(sport),
        str(length),
    )


class EventGrid(ScrollView, can_focus=True):
    """Rows of packet events under a header, with a row cursor.  The pane calls
    ``set_rows`` / ``append``; the grid posts ``CursorMoved``."""

    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Cursor up", show=False),
        Binding("down,j", "cursor(1)", "Cursor down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,ctrl+home", "first", "First", show=False),
        Binding("end,ctrl+end", "last", "Newest", show=False),
    ]

    COMPONENT_CLASSES = {
        "event-grid--header",
        "event-grid--cursor",
        "event-grid--hover",
        "event-grid--drop",
        "event-grid--monitor",
        "event-grid--protected",
        "event-grid--pass",
    }

    # A DataTable's look (textual/widgets/_data_table.py), for a row cursor.
    DEFAULT_CSS = """
    EventGrid {
        background: $surface;
        color: $foreground;
        &:focus {
            background-tint: $foreground 5%;
            & > .event-grid--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .event-grid--header { background-tint: $foreground 5%; }
        }
        & > .event-grid--header { text-style: bold; background: $panel; color: $foreground; }
        &:ansi > .event-grid--header { background: ansi_bright_blue; color: ansi_default; }
        & > .event-grid--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        & > .event-grid--hover { background: $block-hover-background; }
        & > .event-grid--drop { color: $error; text-style: $ironpost-emphasis; }
        & > .event-grid--monitor { color: $warning; text-style: $ironpost-emphasis; }
        & > .event-grid--protected { color: $accent; text-style: $ironpost-emphasis; }
        & > .event-grid--pass { color: $success; }
    }
    """

    class CursorMoved(Message):
        """The cursor is on another row (or the rows under it changed)."""

        def __init__(self, grid: EventGrid) -> None:
            super().__init__()
            self.grid = grid

        @property
        def control(self) -> EventGrid:
            return self.grid

    cursor_row: reactive[int] = reactive(0, init=False, always_update=True, repaint=False)
    hover_row: reactive[int] = reactive(-1, init=False, repaint=False)

    def __init__(self, maxlen: int, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.rows: deque[PacketEvent] = deque(maxlen=maxlen)  # in arrival order
        self.order = SortOrder()
        self._sorted: list[PacketEvent] | None = None  # the rows in ``order``; None: arrival order
        self._widths = [len(label) for label in self.labels]

    # --- rows -------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        """The header: each column's label, with the sort's arrow on one of them."""
        return [self.order.label(c) for c in COLUMNS]

    @property
    def shown(self) -> Sequence[PacketEvent]:
        """The rows as shown, top to bottom."""
        return self._sorted if self._sorted is not None else self.rows

    @property
    def selected(self) -> PacketEvent | None:
        shown = self.shown
        return shown[self.cursor_row] if 0 <= self.cursor_row < len(shown) else None

    @property
    def row_count(self) -> int:
        return len(self.rows)

    @property
    def following(self) -> bool:
        """In arrival order with the cursor on the newest row: new rows move it along (follow-tail)."""
        return self._sorted is None and self.cursor_row >= len(self.rows) - 1

    def set_order(self, order: SortOrder) -> None:
        """Sort by another column (the cursor stays on its event); SortOrder(): arrival order, following."""
        selected = self.selected
        self.order = order
        self._widths = [max(w, len(label)) for w, label in zip(self._widths, self.labels, strict=True)]
        self._update_width()
        self._resort()
        if self._sorted is None:
            self.move_to_newest()
        else:
            self._keep_cursor_on(selected)
        self.refresh()

    def _resort(self) -> None:
        # One sort of at most maxlen rows per batch (the redraw's), not per row: cheap at 5,000.
        self._sorted = None if self.order == SortOrder() else self.order.apply(self.rows, SORT_KEYS)

    def _keep_cursor_on(self, event: PacketEvent | None) -> None:
        shown = self.shown
        at = next((i for i, e in enumerate(shown) if e is event), None) if event is not None else None
        self.cursor_row = at if at is not None else min(self.cursor_row, max(0, len(shown) - 1))

    def set_rows(self, rows: Iterable[PacketEvent]) -> None:
        """Replace the rows (widths measured afresh); the cursor goes to the newest (or, sorted,
        stays on its event while it is there)."""
        selected = self.selected
        self.rows.clear()
        self._widths = [len(label) for label in self.labels]
        self._add(rows)
        if self._sorted is None:
            self.move_to_newest()
        else:
            self._keep_cursor_on(selected)
            self.refresh()

    def append(self, rows: Sequence[PacketEvent], follow: bool) -> None:
        """Add rows; the oldest leave past maxlen.  ``follow``: the cursor goes to the newest;
        else it stays on its event while that is kept."""
        if not rows:
            return
        selected = self.selected
        dropped = self._add(rows)
        if self._sorted is not None:
            self._keep_cursor_on(selected)
            self.refresh()
        elif follow:
            self.move_to_newest()
        else:
            self.set_reactive(EventGrid.cursor_row, max(0, self.cursor_row - dropped))
            self.scroll_to(y=max(0, self.scroll_y - dropped), animate=False, immediate=True)
            self.refresh()
            self.post_message(self.CursorMoved(self))

    def _add(self, rows: Iterable[PacketEvent]) -> int:
        """Add and measure rows; return how many old rows left."""
        maxlen = self.rows.maxlen or 0
        rows = list(rows)[-maxlen:] if maxlen else list(rows)  # only the newest can stay
        before = len(self.rows)
        self.rows.extend(rows)
        widths = self._widths
        widths[0] = max(widths[0], CLOCK_WIDTH)  # the time column: always HH:MM:SS
        for event in rows:
            for i, text in enumerate(cells(event, clock=False)):
                n = len(text) if text.isascii() else cell_len(text)  # a wide character takes two cells
                if n > widths[i]:
                    widths[i] = n
        self.virtual_size = self.virtual_size.with_height(len(self.rows) + 1)
        self._update_width()
        if self.order != SortOrder():
            self._resort()
        return before + len(rows) - len(self.rows)

    def _update_width(self) -> None:
        width = sum(self._widths) + 2 * PADDING * len(COLUMNS)
        self.virtual_size = self.virtual_size.with_width(width)

    def move_to_newest(self) -> None:
        self.cursor_row = max(0, len(self.rows) - 1)

    # --- the cursor -------------------------------------------------------------------
    def validate_cursor_row(self, row: int) -> int:
        return max(0, min(row, len(self.rows) - 1))

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
        if self.following:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        elif row < top:
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

    def action_last(self) -> None:
        self.move_to_newest()

    def _row_at(self, event: events.MouseEvent) -> int | None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y < 1:
            return None
        row = round(self.scroll_y) + offset.y - 1
        return row if row < len(self.rows) else None

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
            header = self.get_component_rich_style("event-grid--header")
            segments = self._segments(self.labels, header, header, None)
        else:
            row = scroll_y + y - 1
            if row >= len(self.rows):
                return Strip.blank(width, base)
            style = base
            post = None
            if row == self.hover_row:
                style += self.get_component_rich_style("event-grid--hover")
            if row == self.cursor_row:
                cursor = self.get_component_rich_style("event-grid--cursor")
                style += cursor
                post = Style.from_color(cursor.color)  # the cursor's colour wins (DataTable's "css" priority)
            event = self.shown[row]
            verdict = self.get_component_rich_style(f"event-grid--{event.verdict.value}", partial=True)
            segments = self._segments(list(cells(event)), style, style + verdict, post)
        line = Strip(segments).crop(scroll_x, scroll_x + width)
        return line.adjust_cell_length(width, base).simplify()

    def _segments(self, texts: list[str], style: Style, verdict_style: Style, post: Style | None) -> list[Segment]:
        segments = []
        pad = " " * PADDING
        used = 0
        for i, (column, text, w) in enumerate(zip(COLUMNS, texts, self._widths, strict=True)):
            n = len(text) if text.isascii() else cell_len(text)
            if n > w:
                text, n = set_cell_size(text, w), w
            gap = " " * (w - n)
            cell_style = verdict_style if i == VERDICT_COLUMN else style
            if post is not None:
                cell_style += post
            # The blanks around a coloured cell take its style too: a run of blanks that opens
            # the next text is drawn too narrow by some SVG renderers (the screenshots' PNGs).
            blank = cell_style if i == VERDICT_COLUMN else style
            segments.append(Segment(pad + gap if column.right else pad, blank))
            segments.append(Segment(text, cell_style))
            segments.append(Segment(pad if column.right else gap + pad, blank))
            used += w + 2 * PADDING
        segments.append(Segment(" " * max(0, self.size.width - used), style))
        return segments

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self.refresh()
