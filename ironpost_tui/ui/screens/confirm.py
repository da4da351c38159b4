"""A yes/no question before something that cannot be undone (delete, panic, force)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static


class ConfirmScreen(ModalScreen[bool]):
    """Dismissed with True only by the confirm button or `y`; Cancel is focused first."""

    BINDINGS = [
        Binding("escape,n", "answer(False)", "Cancel"),
        Binding("y", "answer(True)", "Confirm"),
    ]

    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen #dialog {
        width: 64;
        max-width: 100%;
        height: auto;
        border: thick $warning;
        background: $surface;
        padding: 0 1;
    }
    ConfirmScreen.-danger #dialog { border: thick $error; }
    ConfirmScreen #title { text-style: bold; width: 100%; }
    ConfirmScreen #text { margin: 1 0; }
    ConfirmScreen #buttons { height: auto; align-horizontal: right; }
    ConfirmScreen Button { margin: 0 0 0 1; }
    """

    def __init__(self, title: str, text: str, confirm: str = "Confirm", *, danger: bool = True) -> None:
        super().__init__(classes="-danger" if danger else None)
        self.title_text = title
        self.text = text
        self.confirm = confirm

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.title_text, id="title", markup=False)  # a rule id may hold [ ]: a crash ends enforcement
            yield Static(self.text, id="text", markup=False)
            with Horizontal(id="buttons"):
                yield Button(f"{self.confirm} (y)", id="yes", variant="error", compact=True)
                yield Button("Cancel (n)", id="no", compact=True)

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    @on(Button.Pressed)
    def _pressed(self, message: Button.Pressed) -> None:
        self.dismiss(message.button.id == "yes")
