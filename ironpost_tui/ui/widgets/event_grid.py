"""The events table (a LineGrid: the rows on screen drawn only).

A DataTable builds and measures every row it holds (about 120 µs a row), which under an
event flood was most of the console's CPU.  This grid keeps the events themselves, in a
bounded deque, and formats a row only when it is drawn.  A column is as wide as the widest
text it has drawn since the rows were last set: the rows on screen are measured before a
draw (once per change of the rows, the scroll position or the height), so a row that is
never on screen is never decoded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from textual.strip import Strip

from ironpost_tui.model import PacketEvent
from ironpost_tui.ui import format as fmt
from ironpost_tui.ui.table_sort import Column, SortOrder
from ironpost_tui.ui.widgets.line_grid import Cell, LineGrid, cells_of

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
RULE_WIDTH = 16  # longer rule ids cut in the middle (fmt.clip_id; the detail and `rule:ID` have them whole)
CLOCK_WIDTH = 8  # HH:MM:SS

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
        fmt.clip_id(fmt.text(rule_id or ""), RULE_WIDTH),
        fmt.protocol(proto),
        "" if icmp else str(dport),
        fmt.tcp_flags(flags) if proto == 6 else "",
        str(dst),
        "" if icmp else str(sport),
        str(length),
    )


class EventGrid(LineGrid):
    """Rows of packet events under a header, with a row cursor.  The pane calls
    ``set_rows`` / ``append``; the grid posts ``CursorMoved``."""

    COLUMNS = COLUMNS
    PREFIX = "event-grid"

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

    def __init__(self, maxlen: int, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.rows: deque[PacketEvent] = deque(maxlen=maxlen)  # in arrival order
        self.order = SortOrder()
        self._sorted: list[PacketEvent] | None = None  # the rows in ``order``; None: arrival order
        self._widths = [cells_of(label) for label in self.labels]
        self._changes = 0  # bumped when the rows or their order change
        self._measured: tuple[int, int, int] | None = None  # (changes, first row, rows) last measured

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
        self._widths = [max(w, cells_of(label)) for w, label in zip(self._widths, self.labels, strict=True)]
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
        self._changes += 1

    def _keep_cursor_on(self, event: PacketEvent | None) -> None:
        shown = self.shown
        at = next((i for i, e in enumerate(shown) if e is event), None) if event is not None else None
        self.cursor_row = at if at is not None else min(self.cursor_row, max(0, len(shown) - 1))

    def set_rows(self, rows: Iterable[PacketEvent]) -> None:
        """Replace the rows (widths measured afresh); the cursor goes to the newest (or, sorted,
        stays on its event while it is there)."""
        selected = self.selected
        self.rows.clear()
        self._widths = [cells_of(label) for label in self.labels]
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
            self.set_reactive(LineGrid.cursor_row, max(0, self.cursor_row - dropped))
            self.scroll_to(y=max(0, self.scroll_y - dropped), animate=False, immediate=True)
            self.refresh()
            self.post_message(self.CursorMoved(self))

    def retain(self, kept: set[int]) -> None:
        """Keep only the rows whose event is in ``kept`` (identities): a filtered view whose events the rings
        evicted (a flood's newer drops).  The cursor stays on its event while it is kept, or goes to the newest
        when it followed."""
        rows = [r for r in self.rows if id(r) in kept]
        if len(rows) == len(self.rows):
            return
        selected, follow = self.selected, self.following
        self.rows.clear()
        self.rows.extend(rows)
        self._changes += 1
        self.virtual_size = self.virtual_size.with_height(len(self.rows) + 1)
        if self.order != SortOrder():
            self._resort()
        if follow:
            self.move_to_newest()
        else:
            self._keep_cursor_on(selected)
            self.refresh()
            self.post_message(self.CursorMoved(self))

    def _add(self, rows: Iterable[PacketEvent]) -> int:
        """Add rows (measured when drawn); return how many old rows left."""
        maxlen = self.rows.maxlen or 0
        rows = list(rows)[-maxlen:] if maxlen else list(rows)  # only the newest can stay
        before = len(self.rows)
        self.rows.extend(rows)
        self._changes += 1
        self._widths[0] = max(self._widths[0], CLOCK_WIDTH)  # the time column: always HH:MM:SS
        self.virtual_size = self.virtual_size.with_height(len(self.rows) + 1)
        self._update_width()
        if self.order != SortOrder():
            self._resort()
        return before + len(rows) - len(self.rows)

    def _measure_shown(self) -> None:
        """Widen the columns for the rows on screen, before any of them is drawn.  Rows arrive by the
        thousand and a screenful is drawn: measuring them all as they came decoded every event."""
        top = self.scroll_offset.y
        count = max(0, min(self.size.height - 1, self.row_count - top))  # the lines under the header
        key = (self._changes, top, count)
        if key == self._measured:
            return
        self._measured = key
        shown, widths, grew = self.shown, self._widths, False
        for row in range(top, top + count):
            for i, text in enumerate(cells(shown[row], clock=False)):
                n = cells_of(text)  # a wide character takes two cells
                if n > widths[i]:
                    widths[i], grew = n, True
        if grew:
            self._update_width()
            self.refresh()  # lines drawn before with the narrower columns

    def move_to_newest(self) -> None:
        self.cursor_row = max(0, len(self.rows) - 1)

    # --- what the grid draws -------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        self._measure_shown()  # the first line of a draw measures the screenful; the others find it done
        return super().render_line(y)

    def row_cells(self, row: int) -> list[Cell]:
        event = self.shown[row]
        verdict = event.verdict.value
        return [(text, verdict if i == VERDICT_COLUMN else "") for i, text in enumerate(cells(event))]

    def _scroll_to_cursor(self) -> None:
        if self.following:  # follow-tail: the newest row at the bottom
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        else:
            super()._scroll_to_cursor()

    def action_last(self) -> None:
        self.move_to_newest()
