"""How long and how much to capture, and where: the dialog of `c` (events pane; the Top pane too)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from ironpost_tui import files
from ironpost_tui.config.durations import parse_duration
from ironpost_tui.config.sizes import parse_kib
from ironpost_tui.errors import IronpostError
from ironpost_tui.records.capture import check_output

DEFAULT_DURATION = "60s"
DEFAULT_SIZE = "16MiB"


@dataclass(frozen=True)
class CaptureOrder:
    """What the dialog was told: stop after ``seconds`` or at ``max_bytes``, write to ``path``."""

    seconds: int
    max_bytes: int
    path: Path


class CaptureScreen(ModalScreen[CaptureOrder | None]):
    """Dismissed with a CaptureOrder, or None when cancelled.  Every answer is checked here (a bad one
    is shown in the dialog, which stays open), the file as the command line checks it."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    DEFAULT_CSS = """
    CaptureScreen { align: center middle; }
    CaptureScreen #dialog {
        width: 72;
        max-width: 100%;
        height: auto;
        border: thick $primary;
        background: $surface;
        padding: 0 1;
    }
    CaptureScreen #title { text-style: bold; width: 100%; }
    CaptureScreen #hint { color: $text-muted; width: 100%; }
    CaptureScreen #problem { color: $error; width: 100%; }
    CaptureScreen Input { margin: 1 0 0 0; }
    """

    def __init__(self, what: str, path: Path, *, cursor_blink: bool = True) -> None:
        super().__init__()
        self.what = what
        self.path = path
        self.cursor_blink = cursor_blink

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(f"Capture {self.what} (pcapng, taken before the verdict)", id="title", markup=False)
            yield Input(DEFAULT_DURATION, id="duration", compact=True, tooltip="for how long: 30s, 5m, 1h")
            yield Input(DEFAULT_SIZE, id="size", compact=True, tooltip="at most this file size: 512KiB, 16MiB")
            yield Input(str(self.path), id="path", compact=True)
            yield Label("", id="problem", markup=False)
            yield Label("duration · size · file; enter: start · escape: cancel", id="hint")

    def on_mount(self) -> None:
        for box in self.query(Input):
            box.cursor_blink = self.cursor_blink
        self.query_one("#duration", Input).focus()

    @on(Input.Submitted)
    def _submitted(self, message: Input.Submitted) -> None:
        message.stop()
        order = self.order()
        if order is not None:
            self.dismiss(order)

    def order(self) -> CaptureOrder | None:
        """The answers as an order, or None with the problem shown."""
        problem = self.query_one("#problem", Label)
        duration = self.query_one("#duration", Input).value.strip()
        size = self.query_one("#size", Input).value.strip()
        try:
            seconds = parse_duration(duration)
        except ValueError as exc:
            problem.update(f"duration {duration!r} {exc}")
            return None
        try:
            kib = parse_kib(size)
        except ValueError as exc:
            problem.update(f"size {size!r} {exc}")
            return None
        try:
            path = check_output(Path(self.query_one("#path", Input).value.strip()), files.invoking_user())
        except IronpostError as exc:
            problem.update(exc.message)
            return None
        return CaptureOrder(seconds, kib * 1024, path)

    def action_cancel(self) -> None:
        self.dismiss(None)
