"""A top talker in full (enter on a row of the Top pane): its rates, its destination ports and
protocols, when it was first and last seen.  Escape or enter closes it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label

from ironpost_tui.ui.widgets.field_list import FieldList


class TopDetailScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape", "close", "Close"), Binding("enter", "close", "Close", show=False)]

    DEFAULT_CSS = """
    TopDetailScreen { align: center middle; }
    TopDetailScreen #dialog {
        width: 76;
        max-width: 100%;
        height: auto;
        border: thick $primary;
        background: $surface;
        padding: 0 1;
    }
    TopDetailScreen #title { text-style: bold; width: 100%; }
    TopDetailScreen FieldList { height: auto; min-height: 3; }
    """

    def __init__(self, title: str, fields: list[tuple[str, str]]) -> None:
        super().__init__()
        self.title_text = title
        self.fields = fields

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(f"{self.title_text} (esc closes)", id="title", markup=False)
            yield FieldList()

    def on_mount(self) -> None:
        self.query_one(FieldList).show(self.fields)

    def action_close(self) -> None:
        self.dismiss(None)
