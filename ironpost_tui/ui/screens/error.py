"""A failure the console cannot go on after (the engine did not start): say it, then exit."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from ironpost_tui.text import visible


class ErrorScreen(ModalScreen[None]):
    """Dismissed by enter, escape or q; the app then exits with the error's code."""

    BINDINGS = [Binding("escape,q,enter", "close", "Exit")]

    DEFAULT_CSS = """
    ErrorScreen { align: center middle; }
    ErrorScreen #dialog {
        width: 72;
        max-width: 100%;
        height: auto;
        border: thick $error;
        background: $surface;
        padding: 0 1;
    }
    ErrorScreen #title { color: $error; text-style: bold; width: 100%; }
    ErrorScreen #text { margin: 1 0; }
    ErrorScreen Button { width: 100%; }
    """

    def __init__(self, title: str, text: str, exit_status: int) -> None:
        super().__init__()
        self.title_text = title
        self.text = text
        self.exit_status = exit_status

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(visible(self.title_text), id="title", markup=False)
            yield Static(visible(self.text, keep="\n"), id="text", markup=False)
            yield Button(f"Exit (status {self.exit_status})", id="exit", variant="error", compact=True)

    def on_button_pressed(self) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)
