"""A selected row's fields in full, one per line ('source      198.18.0.5'), under a table."""

from __future__ import annotations

from collections.abc import Sequence

from textual.content import Content
from textual.widgets import Static

LABEL_WIDTH = 12


class FieldList(Static):
    """The pane calls ``show`` with (label, value) pairs, most useful first: when the pane is
    short the last ones are the ones cut off."""

    DEFAULT_CSS = """
    FieldList { height: 1fr; min-height: 3; overflow: hidden; color: $foreground; }
    """

    def show(self, fields: Sequence[tuple[str, str]], empty: str = "") -> None:
        if not fields:
            self.update(Content.styled(empty, "$text-muted") if empty else Content(""))
            return
        lines = [
            Content.assemble((f"{label:<{LABEL_WIDTH}}", "$text-muted"), Content(value)) for label, value in fields
        ]
        self.update(Content("\n").join(lines))
