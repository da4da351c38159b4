"""Where to export the events or the alerts: the format (csv/json) and the path."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, RadioButton, RadioSet

from ironpost_tui.records.export import FORMATS


class ExportScreen(ModalScreen[tuple[str, Path] | None]):
    """Dismissed with (format, path), or None when cancelled.  Choosing a format changes
    the path's extension while it still has the other one."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    DEFAULT_CSS = """
    ExportScreen { align: center middle; }
    ExportScreen #dialog {
        width: 72;
        max-width: 100%;
        height: auto;
        border: thick $primary;
        background: $surface;
        padding: 0 1;
    }
    ExportScreen #title { text-style: bold; width: 100%; }
    ExportScreen #hint { color: $text-muted; width: 100%; }
    ExportScreen RadioSet { layout: horizontal; height: auto; width: auto; margin: 1 0 0 0; }
    ExportScreen #format > RadioButton { width: auto; margin: 0 2 0 0; }
    ExportScreen Input { margin: 1 0 0 0; }
    """

    def __init__(self, kind: str, count: int, path: Path, *, cursor_blink: bool = True) -> None:
        super().__init__()
        self.kind = kind
        self.count = count
        self.path = path
        self.cursor_blink = cursor_blink

    @property
    def format(self) -> str:
        pressed = self.query_one(RadioSet).pressed_button
        return str(pressed.label) if pressed is not None else FORMATS[0]

    def compose(self) -> ComposeResult:
        fmt = self.path.suffix.lstrip(".")
        with Vertical(id="dialog"):
            yield Label(f"Export {self.count:,} {self.kind}", id="title", markup=False)
            with RadioSet(id="format", compact=True):
                for name in FORMATS:
                    yield RadioButton(name, value=name == fmt, compact=True)
            yield Input(str(self.path), id="path", compact=True)
            yield Label("enter: write · escape: cancel · times in UTC (ISO 8601)", id="hint")

    def on_mount(self) -> None:
        box = self.query_one(Input)
        box.cursor_blink = self.cursor_blink
        box.focus()

    @on(RadioSet.Changed)
    def _format_chosen(self, message: RadioSet.Changed) -> None:
        box = self.query_one(Input)
        path = Path(box.value)
        if path.suffix.lstrip(".") in FORMATS:
            box.value = str(path.with_suffix(f".{message.pressed.label}"))

    @on(Input.Submitted)
    def _submitted(self, message: Input.Submitted) -> None:
        message.stop()
        if message.value.strip():
            self.dismiss((self.format, Path(message.value.strip())))

    def action_cancel(self) -> None:
        self.dismiss(None)
