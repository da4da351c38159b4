"""A selected row's fields in full ('source      198.18.0.5'), under a table.

One field a line in a pane 80 columns wide; in a wider pane the short fields sit side by side,
row by row in the order given (so the most useful stay when the pane is short), and the long
ones (a description, an nft command) each take a line of their own below them.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.content import Content
from textual.reactive import reactive
from textual.widget import Widget

LABEL_WIDTH = 12
VALUE_WIDTH = 28  # a short field's value fits in this; longer ones get a line of their own
GAP = 2

Fields = tuple[tuple[str, str], ...]


class FieldList(Widget):
    """The pane calls ``show`` with (label, value) pairs, most useful first."""

    DEFAULT_CSS = """
    FieldList { height: 1fr; min-height: 3; overflow: hidden; color: $foreground; }
    """

    fields: reactive[Fields] = reactive(tuple)
    empty: reactive[str] = reactive("")

    def show(self, fields: Sequence[tuple[str, str]], empty: str = "") -> None:
        self.fields = tuple(fields)
        self.empty = empty

    def render(self) -> Content:
        if not self.fields:
            return Content.styled(self.empty, "$text-muted")
        return Content("\n").join(layout(self.fields, self.size.width))


def layout(fields: Fields, width: int) -> list[Content]:
    """The lines for ``fields`` in ``width`` cells."""
    column = LABEL_WIDTH + VALUE_WIDTH
    per_line = max(1, (width + GAP) // (column + GAP))

    def field(label: str, value: str) -> Content:
        return Content.assemble((f"{label:<{LABEL_WIDTH}}", "$text-muted"), value)

    if per_line == 1:
        return [field(label, value) for label, value in fields]
    short = [(label, value) for label, value in fields if len(value) <= VALUE_WIDTH]
    long = [(label, value) for label, value in fields if len(value) > VALUE_WIDTH]
    lines = []
    for at in range(0, len(short), per_line):
        row = [field(label, value.ljust(VALUE_WIDTH)) for label, value in short[at : at + per_line]]
        lines.append(Content(" " * GAP).join(row).rstrip())
    lines.extend(field(label, value) for label, value in long)
    return lines
