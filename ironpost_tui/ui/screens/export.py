"""Where to export the events or the alerts: the format (csv/json) and the path."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, Label, RadioButton, RadioSet

from ironpost_tui.records.export import FORMATS


class FormatChoice(RadioSet):
    """CSV or JSON: arrows move, space picks, and enter picks the highlighted one and writes
    (a RadioSet's enter would only pick it)."""

    BINDINGS = [Binding("enter", "write", "Write", show=False)]

    class WriteRequested(Message):
        def __init__(self, fmt: str) -> None:
            super().__init__()
            self.fmt = fmt

    def action_write(self) -> None:
        highlighted = self._selected
        buttons = list(self.query(RadioButton))
        if highlighted is not None and 0 <= highlighted < len(buttons):
            chosen = buttons[highlighted]
            if not chosen.value:
                chosen.value = True
            self.post_message(self.WriteRequested(str(chosen.label)))
        elif self.pressed_button is not None:
            self.post_message(self.WriteRequested(str(self.pressed_button.label)))


class ExportScreen(ModalScreen[tuple[str, Path] | None]):
    """Dismissed with (format, path), or None when cancelled.  Choosing a format changes
    the path's extension while it still has the other one; enter in the path writes the format its extension
    names, if it names one."""

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
        pressed = self.query_one(FormatChoice).pressed_button
        return str(pressed.label) if pressed is not None else FORMATS[0]

    def compose(self) -> ComposeResult:
        fmt = self.path.suffix.lstrip(".")
        with Vertical(id="dialog"):
            yield Label(f"Export {self.count:,} {self.kind}", id="title", markup=False)
            with FormatChoice(id="format", compact=True):
                for name in FORMATS:
                    yield RadioButton(name, value=name == fmt, compact=True)
            yield Input(str(self.path), id="path", compact=True)
            yield Label("enter: write · space: pick · escape: cancel · times UTC, ISO 8601", id="hint")

    def on_mount(self) -> None:
        box = self.query_one(Input)
        box.cursor_blink = self.cursor_blink
        box.focus()

    def _path_for(self, fmt: str) -> Path:
        """The path in the box, its extension changed to ``fmt`` while it has the other one."""
        path = Path(self.query_one(Input).value.strip())
        return path.with_suffix(f".{fmt}") if path.suffix.lstrip(".").lower() in FORMATS else path

    @on(RadioSet.Changed)
    def _format_chosen(self, message: RadioSet.Changed) -> None:
        box = self.query_one(Input)
        if box.value.strip():
            box.value = str(self._path_for(str(message.pressed.label)))

    @on(FormatChoice.WriteRequested)
    def _write_from_choice(self, message: FormatChoice.WriteRequested) -> None:
        message.stop()
        self._write(message.fmt)

    @on(Input.Submitted)
    def _submitted(self, message: Input.Submitted) -> None:
        """Enter in the path: a path typed with a format's extension (alerts.json) is written in that format (until
        session 24 the format picked won, and alerts.json was written as alerts.csv)."""
        message.stop()
        typed = Path(self.query_one(Input).value.strip()).suffix.lstrip(".").lower()  # alerts.JSON too
        self._write(typed if typed in FORMATS else self.format)

    def _write(self, fmt: str) -> None:
        path = self._path_for(fmt)
        if str(path) not in ("", "."):
            self.dismiss((fmt, path))

    def action_cancel(self) -> None:
        self.dismiss(None)
