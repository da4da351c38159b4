"""The rules pane's table (a LineGrid: the rows on screen drawn only).

With the 10,000 rules a threat feed gives, a DataTable took over a second of the console's start, and
redrawing it for each tick's hit counts and each second's expiry times kept a core a third busy.  This
grid keeps the rules' statuses, formats a row's texts once per change of that row (the clock column: the
rules that expire, each second), and is drawn again only when something shown changed.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual import events
from textual.binding import Binding

from ironpost_tui.engine.feed import replaced_at
from ironpost_tui.model import FilterRule, RuleStatus
from ironpost_tui.ui import format as fmt
from ironpost_tui.ui.table_sort import Column
from ironpost_tui.ui.widgets.line_grid import Cell, LineGrid, cells_of

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
ID_WIDTH = 16  # longer ids are cut in the middle (fmt.clip_id); the detail below the table shows them whole


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
        (fmt.clip_id(fmt.text(rule.id), ID_WIDTH), "auto" if rule.auto else ""),
        (fmt.short_count(s.hits), ""),
        left_cell(rule, now),
        (rule.action.value, rule.action.value),
        (fmt.rule_match(rule), ""),
        (fmt.text(s.map_name), ""),
        (fmt.clock(s.last_hit) if s.last_hit else "—", ""),
        (source or "", "external" if source == "crowdsec" else source or ""),  # a LAPI decision: another tool's
    )


class RuleRows(LineGrid):
    """Rules under a header, with a row cursor.  The pane calls ``set_rows`` (each table it is
    given) and ``set_now`` (each redraw); the grid posts ``CursorMoved`` and ``Selected``."""

    COLUMNS = COLUMNS
    PREFIX = "rule-rows"
    HEADER_ALIGNED = False  # every label on the left, as the DataTable it replaced had them

    BINDINGS = [Binding("enter", "select", "Select", show=False)]

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

    class Selected(LineGrid.GridMessage):
        """Enter, or a click on the cursor's row."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._labels = [c.label for c in COLUMNS]
        self._rows: list[RuleStatus] = []
        self._keys: list[str] = []
        self._index: dict[str, int] = {}
        # rule id -> (the status its cells were made from, the cells): a row is formatted again only
        # when its status changes (hits, last hit, the rule), and its clock cell each set_now.
        self._made: dict[str, tuple[RuleStatus, tuple[Cell, ...]]] = {}
        self._expiring: list[int] = []  # rows whose "left" cell changes with the clock
        self._now = 0.0

    # --- rows -------------------------------------------------------------------------
    @property
    def keys(self) -> list[str]:
        """The rules' ids as shown, top to bottom."""
        return self._keys

    @property
    def row_count(self) -> int:
        return len(self._rows)

    @property
    def labels(self) -> list[str]:
        return self._labels

    def row_cells(self, row: int) -> tuple[Cell, ...]:
        return self._made[self._keys[row]][1]

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
        prev = self._rows
        places = None  # the rows whose status is another object, when every rule is where it was
        if len(rows) == len(prev) and self._widths:
            moved = replaced_at(rows, prev)
            if all(rows[i].rule.id == self._keys[i] for i in moved):
                places = moved
        if places is not None:  # a flood's second: one rule's hits; the other 9,999 rows are not looked at
            changed = False
            looked: Sequence[RuleStatus] = [rows[i] for i in places]
            expiring = any((rows[i].rule.expires_at is None) != (prev[i].rule.expires_at is None) for i in places)
        else:
            keys = [s.rule.id for s in rows]
            changed = keys != self._keys
            if changed:
                self._keys = keys
                self._index = {k: i for i, k in enumerate(keys)}
                self._made = {k: made for k, made in self._made.items() if k in self._index}
            looked, expiring = rows, True
        measure = changed or labels != self._labels or not self._widths
        self._rows = list(rows)
        self._now = now
        made = self._made
        widths = self._widths
        for s in looked:
            old = made.get(s.rule.id)
            if old is None or (old[0] is not s and old[0] != s):  # the engine keeps unchanged statuses
                new = made[s.rule.id] = (s, cells(s, now))
                changed = True
                if not measure:  # the same rows: the columns widen for this one, or are measured again
                    measure = self._widen(old[1] if old else None, new[1], widths)
        if expiring:
            self._expiring = [i for i, s in enumerate(self._rows) if s.rule.expires_at is not None]
        if measure:
            self._labels = labels
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
                if cells_of(left[0]) > self._widths[LEFT]:
                    self._widths[LEFT] = cells_of(left[0])
                    wider = True
        if wider:
            self._update_width()
        return changed

    def _widen(self, old: tuple[Cell, ...] | None, new: tuple[Cell, ...], widths: list[int]) -> bool:
        """Widen the columns for a row whose cells went from ``old`` to ``new``; True when every row must be
        measured again (a cell that was as wide as its column got narrower)."""
        wider = False
        for i, (text, _style) in enumerate(new):
            n = cells_of(text)
            if n > widths[i]:
                widths[i] = n
                wider = True
            elif old is not None and n < widths[i] and cells_of(old[i][0]) == widths[i]:
                return True
        if wider:
            self._update_width()
        return False

    def _measure(self) -> None:
        """Each column as wide as its widest text (the header's included), as a DataTable's auto width."""
        widths = [cells_of(label) for label in self._labels]
        for _status, row in self._made.values():
            for i, (text, _style) in enumerate(row):
                n = cells_of(text)  # a wide character takes two cells
                if n > widths[i]:
                    widths[i] = n
        self._widths = widths
        self._update_width()

    def move_cursor(self, row: int) -> None:
        self.cursor_row = row

    def action_select(self) -> None:
        if self.selected is not None:
            self.post_message(self.Selected(self))

    def on_click(self, event: events.Click) -> None:
        row = self._row_at(event)
        if row is None:
            return
        if row == self.cursor_row:
            self.action_select()
        else:
            self.cursor_row = row
