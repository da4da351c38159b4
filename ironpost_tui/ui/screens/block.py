"""How long to block a source: 10m (the default), 1h, 24h or permanently; `1`-`4` choose at once."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

CHOICES = (("10m", 600), ("1h", 3_600), ("24h", 86_400), ("permanent", 0))


class BlockScreen(ModalScreen[int | None]):
    """Dismissed with seconds (0: permanent), or None when cancelled."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        *(Binding(str(i + 1), f"choose({i})", label, show=False) for i, (label, _secs) in enumerate(CHOICES)),
    ]

    DEFAULT_CSS = """
    BlockScreen { align: center middle; }
    BlockScreen #dialog {
        width: 56;
        max-width: 100%;
        height: auto;
        border: thick $error;
        background: $surface;
        padding: 0 1;
    }
    BlockScreen #title { text-style: bold; width: 100%; }
    BlockScreen #why { color: $text-muted; width: 100%; }
    BlockScreen OptionList { height: auto; margin: 1 0 0 0; }
    """

    def __init__(self, address: str, why: str) -> None:
        super().__init__()
        self.address = address
        self.why = why

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(f"Block {self.address} for (1-4, enter; esc cancels):", id="title", markup=False)
            yield Label(self.why, id="why", markup=False)
            yield OptionList(
                *(Option(f"{i + 1}  {label}", id=label) for i, (label, _) in enumerate(CHOICES)), id="durations"
            )

    def on_mount(self) -> None:
        self.query_one(OptionList).highlighted = 0  # 10m: the shortest, so a slip costs the least

    def action_choose(self, index: int) -> None:
        self.dismiss(CHOICES[index][1])

    @on(OptionList.OptionSelected)
    def _chosen(self, message: OptionList.OptionSelected) -> None:
        seconds = dict(CHOICES)[message.option.id or CHOICES[0][0]]
        self.dismiss(seconds)

    def action_cancel(self) -> None:
        self.dismiss(None)
