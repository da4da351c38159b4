"""The question before leaving with drop rules in force: remove them, keep them enforcing, or stay.

Quitting detaches the program, and every drop rule goes with it: one habitual `q` in an
incident would lift all enforcement.  So `q` and `ctrl+c` ask first, naming what is at stake.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from ironpost_tui.model import StrEnum


class QuitChoice(StrEnum):
    REMOVE = "remove"  # quit: the program and its drop rules leave the interface
    KEEP = "keep"  # quit, the program pinned and still enforcing (as --persist leaves it)
    STAY = "stay"


class QuitScreen(ModalScreen[QuitChoice]):
    """Dismissed with the choice; Stay is focused first, so `enter` changes nothing."""

    BINDINGS = [
        Binding("r", "choose('remove')", "Quit and remove"),
        Binding("k", "choose('keep')", "Keep enforcing and quit"),
        Binding("escape,s", "choose('stay')", "Stay"),
    ]

    DEFAULT_CSS = """
    QuitScreen { align: center middle; }
    QuitScreen #dialog {
        width: 76;
        max-width: 100%;
        height: auto;
        border: thick $error;
        background: $surface;
        padding: 0 1;
    }
    QuitScreen #title { text-style: bold; width: 100%; }
    QuitScreen #text { margin: 1 0; }
    QuitScreen #buttons { height: auto; align-horizontal: right; }
    QuitScreen Button { margin: 0 0 0 1; }
    """

    def __init__(self, what: str, iface: str, *, keepable: bool) -> None:
        """``what``: the drop rules in force ("12 drop rules"); ``keepable``: offer to keep them."""
        super().__init__()
        self.what = what
        self.iface = iface
        self.keepable = keepable

    @property
    def question(self) -> str:
        return f"Quit with {self.what} on {self.iface}?"

    def compose(self) -> ComposeResult:
        text = f"Quitting detaches the program from {self.iface}: the blocked sources get through again."
        if self.keepable:
            text += (
                f"\nKeep enforcing pins the program, as --persist does, so it stays after you leave; "
                f"`ironpost-tui cleanup {self.iface}` removes it later."
            )
        else:
            text += "\nThe demo lab is removed with it."
        with Vertical(id="dialog"):
            yield Label(self.question, id="title", markup=False)
            yield Static(text, id="text", markup=False)
            with Horizontal(id="buttons"):
                yield Button("Quit and remove (r)", id="remove", variant="error", compact=True)
                if self.keepable:
                    yield Button("Keep enforcing (k)", id="keep", variant="warning", compact=True)
                yield Button("Stay (esc)", id="stay", compact=True)

    def on_mount(self) -> None:
        self.query_one("#stay", Button).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "choose" and parameters == ("keep",) and not self.keepable:
            return False
        return True

    def action_choose(self, choice: str) -> None:
        self.dismiss(QuitChoice(choice))

    @on(Button.Pressed)
    def _pressed(self, message: Button.Pressed) -> None:
        self.dismiss(QuitChoice(message.button.id or "stay"))
