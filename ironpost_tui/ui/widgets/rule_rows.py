"""The rules pane's table: a Line API widget that renders only the rows on screen.

A DataTable builds and measures every row it holds (about 120 µs a row): with the 10,000 rules a
threat feed gives, the first table took over a second of the console's start, and redrawing it for
each tick's hit counts and each second's expiry times kept a core a third busy.  This grid keeps the
rules' statuses, formats a row's texts once per change of that row (the clock column: the rules that
expire, each second), and draws only the rows on screen.  It looks like a DataTable with a row cursor
(same header, cursor and hover styles, padding and auto-width columns), as the events grid does.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ironpost_tui.model import FilterRule, RuleStatus
from ironpost_tui.ui import format as fmt
from ironpost_tui.ui.table_sort import Column

# What a responder reads first, first: at 80 columns everything up to the map is on screen.
COLUMNS = (
    Column("id", "id"),
    Column("hits", "hits", numeric=True, right=True),
    Column("left", "left"),
    Column("action", "action"),
    Column("match", "match"),
    Column("map", "map"),
    Column("last hit", "last", numeric=True),
    Column("", "source"),  # auto: a detector's block; external: another tool's BLOCKLIST entry
)
KEYS = tuple(c.key for c in COLUMNS)
LEFT = KEYS.index("left")
ID_WIDTH = 16  # longer ids end in an ellipsis; the detail below the table shows them whole
PADDING = 1  # cells each side of a column, as a DataTable's cell_padding

# A cell: its text and the component class that colours it ("" for none).
Cell = tuple[str, str]


def source_of(rule: FilterRule) -> str | None:
    """Who put a rule in force when not the rules file: auto (a detector), external, crowdsec."""
    if rule.auto:
        return "auto"
    if rule.external:
        return "external"
    return "crowdsec" if rule.crowdsec else None


def left_cell(rule: FilterRule, now: float) -> Cell:
    if rule.expires_at is None:
        return "", ""
    return fmt.span(max(0.0, rule.expires_at - now)), "expiring"


def cells(s: RuleStatus, now: float) -> tuple[Cell, ...]:
    """A row's cells, one per column."""
    rule = s.rule
    source = source_of(rule)
    return (
        (fmt.clip(fmt.text(rule.id), ID_WIDTH), "auto" if rule.auto else ""),
        (fmt.short_count(s.hits), ""),
        left_cell(rule, now),
        (rule.action.value, rule.action.value),
        (fmt.rule_match(rule), ""),
        (fmt.text(s.map_name), ""),
        (fmt.clock(s.last_hit) if s.last_hit else "—", ""),
        (source or "", "external" if source == "crowdsec" else source or ""),  # a LAPI decision: another tool's
    )


class RuleRows(ScrollView, can_focus=True):
    """Rules under a header, with a row cursor.  The pane calls ``set_rows`` (each table it is
    given) and ``set_now`` (each redraw); the grid posts ``CursorMoved`` and ``Selected``."""

    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Cursor up", show=False),
        Binding("down,j", "cursor(1)", "Cursor down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,ctrl+home", "first", "First", show=False),
        Binding("end,ctrl+end", "last", "Last", show=False),
        Binding("enter", "select", "Select", show=False),
    ]

    COMPONENT_CLASSES = {
        "rule-rows--header",
        "rule-rows--cursor",
        "rule-rows--hover",
        "rule-rows--drop",
        "rule-rows--monitor",
        "rule-rows--expiring",
        "rule-rows--auto",
        "rule-rows--external",
    }

    # A DataTable's look (textual/widgets/_data_table.py), for a row cursor; the rule classes as the
    # rules pane's DataTable had them.
    DEFAULT_CSS = """
    RuleRows {
        background: $surface;
        color: $foreground;
        &:focus {
            background-tint: $foreground 5%;
            & > .rule-rows--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .rule-rows--header { background-tint: $foreground 5%; }
        }
        & > .rule-rows--header { text-style: bold; background: $panel; color: $foreground; }
        &:ansi > .rule-rows--header { background: ansi_bright_blue; color: ansi_default; }
        & > .rule-rows--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        & > .rule-rows--hover { background: $block-hover-background; }
        & > .rule-rows--drop { color: $error; text-style: $ironpost-emphasis; }
        & > .rule-rows--monitor { color: $warning; text-style: $ironpost-emphasis; }
        & > .rule-rows--expiring { color: $accent; }
        & > .rule-rows--auto { color: $accent; text-style: bold; }
        & > .rule-rows--external { color: $secondary; text-style: bold; }
    }
    """

    class CursorMoved(Message):
        """The cursor is on another row (or the rows under it changed)."""

        def __init__(self, grid: RuleRows) -> None:
            super().__init__()
            self.grid = grid

        @property
        def control(self) -> RuleRows:
            return self.grid

    class Selected(Message):
        """Enter, or a click on the cursor's row."""

        def __init__(self, grid: RuleRows) -> None:
            super().__init__()
            self.grid = grid

        @property
        def control(self) -> RuleRows:
            return self.grid

    cursor_row: reactive[int] = reactive(0, init=False, always_update=True, repaint=False)
    hover_row: reactive[int] = reactive(-1, init=False, repaint=False)

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.labels = [c.label for c in COLUMNS]
        self._rows: list[RuleStatus] = []
        self._keys: list[str] = []
        self._index: dict[str, int] = {}
        # rule id -> (the status its cells were made from, the cells): a row is formatted again only
        # when its status changes (hits, last hit, the rule), and its clock cell each set_now.
        self._made: dict[str, tuple[RuleStatus, tuple[Cell, ...]]] = {}
        self._expiring: list[int] = []  # rows whose "left" cell changes with the clock
        self._now = 0.0
        self._widths = [cell_len(label) for label in self.labels]

    # --- rows -------------------------------------------------------------------------
    @property
    def keys(self) -> list[str]:
        """The rules' ids as shown, top to bottom."""
        return self._keys

    @property
    def row_count(self) -> int:
        return len(self._rows)

    @property
    def selected(self) -> RuleStatus | None:
        return self._rows[self.cursor_row] if 0 <= self.cursor_row < len(self._rows) else None

    def cell(self, rule_id: str, key: str) -> str:
        """The text shown in one cell (KeyError: no such rule or column)."""
        return self._made[rule_id][1][KEYS.index(key)][0]

    def set_rows(self, rows: Sequence[RuleStatus], now: float, labels: list[str]) -> None:
        """Show ``rows`` (in order) under ``labels``; the cursor stays on its rule while it is shown,
        else on its row number."""
        selected = self._keys[self.cursor_row] if 0 <= self.cursor_row < len(self._keys) else None
        keys = [s.rule.id for s in rows]
        changed = keys != self._keys
        if changed:
            self._keys = keys
            self._index = {k: i for i, k in enumerate(keys)}
            self._made = {k: made for k, made in self._made.items() if k in self._index}
        self._rows = list(rows)
        self._now = now
        made = self._made
        for s in self._rows:
            old = made.get(s.rule.id)
            if old is None or (old[0] is not s and old[0] != s):  # the engine keeps unchanged statuses
                made[s.rule.id] = (s, cells(s, now))
                changed = True
        self._expiring = [i for i, s in enumerate(self._rows) if s.rule.expires_at is not None]
        if changed or labels != self.labels:
            self.labels = labels
            self._measure()
            changed = True
        changed = self._refresh_left(now) or changed
        self.virtual_size = self.virtual_size.with_height(len(self._rows) + 1)
        at = self._index.get(selected) if selected is not None else None
        row = at if at is not None else min(self.cursor_row, max(0, len(self._rows) - 1))
        if row != self.cursor_row:
            self.cursor_row = row  # its watcher redraws
        elif changed:
            self.refresh()  # nothing changed (an idle second's table): nothing is drawn again

    def set_now(self, now: float) -> None:
        """The clock moved: the rules that expire say their time left."""
        if now == self._now:
            return
        self._now = now
        if self._expiring and self._refresh_left(now):
            self.refresh()

    def _refresh_left(self, now: float) -> bool:
        """The "left" cells of the rules that expire, at ``now`` (the column widened if one needs it);
        whether one changed."""
        made = self._made
        changed = wider = False
        for i in self._expiring:
            s = self._rows[i]
            old_status, old = made[s.rule.id]
            left = left_cell(s.rule, now)
            if old[LEFT] != left:
                changed = True
                made[s.rule.id] = (old_status, (*old[:LEFT], left, *old[LEFT + 1 :]))
                if cell_len(left[0]) > self._widths[LEFT]:
                    self._widths[LEFT] = cell_len(left[0])
                    wider = True
        if wider:
            self._update_width()
        return changed

    def _measure(self) -> None:
        """Each column as wide as its widest text (the header's included), as a DataTable's auto width."""
        widths = [cell_len(label) for label in self.labels]
        for _status, row in self._made.values():
            for i, (text, _style) in enumerate(row):
                n = len(text) if text.isascii() else cell_len(text)  # a wide character takes two cells
                if n > widths[i]:
                    widths[i] = n
        self._widths = widths
        self._update_width()

    def _update_width(self) -> None:
        width = sum(self._widths) + 2 * PADDING * len(COLUMNS)
        self.virtual_size = self.virtual_size.with_width(width)

    # --- the cursor -------------------------------------------------------------------
    def validate_cursor_row(self, row: int) -> int:
        return max(0, min(row, len(self._rows) - 1))

    def watch_cursor_row(self) -> None:
        self._scroll_to_cursor()
        self.refresh()
        self.post_message(self.CursorMoved(self))

    def watch_hover_row(self) -> None:
        self.refresh()

    def move_cursor(self, row: int) -> None:
        self.cursor_row = row

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

    def action_last(self) -> None:
        self.cursor_row = len(self._rows) - 1

    def action_select(self) -> None:
        if self.selected is not None:
            self.post_message(self.Selected(self))

    def _row_at(self, event: events.MouseEvent) -> int | None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y < 1:
            return None
        row = round(self.scroll_y) + offset.y - 1
        return row if row < len(self._rows) else None

    def on_click(self, event: events.Click) -> None:
        row = self._row_at(event)
        if row is None:
            return
        if row == self.cursor_row:
            self.action_select()
        else:
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
            header = self.get_component_rich_style("rule-rows--header")
            segments = self._segments([(label, "") for label in self.labels], header, None, header=True)
        else:
            row = scroll_y + y - 1
            if row >= len(self._rows):
                return Strip.blank(width, base)
            style = base
            post = None
            if row == self.hover_row:
                style += self.get_component_rich_style("rule-rows--hover")
            if row == self.cursor_row:
                cursor = self.get_component_rich_style("rule-rows--cursor")
                style += cursor
                post = Style.from_color(cursor.color)  # the cursor's colour wins (DataTable's "css" priority)
            segments = self._segments(list(self._made[self._keys[row]][1]), style, post)
        line = Strip(segments).crop(scroll_x, scroll_x + width)
        return line.adjust_cell_length(width, base).simplify()

    def _segments(self, row: list[Cell], style: Style, post: Style | None, header: bool = False) -> list[Segment]:
        """A row's segments; ``header``: every label on the left, as a DataTable's are."""
        segments = []
        pad = " " * PADDING
        used = 0
        styles: dict[str, Style] = {}
        for column, (text, kind), w in zip(COLUMNS, row, self._widths, strict=True):
            n = len(text) if text.isascii() else cell_len(text)
            if n > w:
                text, n = set_cell_size(text, w), w
            gap = " " * (w - n)
            cell_style = style
            if kind:
                if kind not in styles:
                    styles[kind] = self.get_component_rich_style(f"rule-rows--{kind}", partial=True)
                cell_style = style + styles[kind]
            if post is not None:
                cell_style += post
            # The blanks around a coloured cell take its style too (see the events grid).
            blank = cell_style if kind else style
            right = column.right and not header
            segments.append(Segment(pad + gap if right else pad, blank))
            segments.append(Segment(text, cell_style))
            segments.append(Segment(pad if right else gap + pad, blank))
            used += w + 2 * PADDING
        segments.append(Segment(" " * max(0, self.size.width - used), style))
        return segments

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self.refresh()
