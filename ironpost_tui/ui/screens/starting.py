"""Shown at once while the engine compiles and attaches (seconds), so the terminal is never blank."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, LoadingIndicator, Static


class StartingScreen(ModalScreen[None]):
    """The app dismisses it when the source has started (or failed)."""

    DEFAULT_CSS = """
    StartingScreen { align: center middle; }
    StartingScreen #dialog {
        width: 60;
        max-width: 100%;
        height: auto;
        border: thick $primary;
        background: $surface;
        padding: 0 1;
    }
    StartingScreen LoadingIndicator { height: 1; color: $primary; }
    StartingScreen #steps { width: 100%; }
    StartingScreen #elapsed { color: $text-muted; width: 100%; }
    """

    BINDINGS = [Binding("q", "app.quit", "Quit")]

    def __init__(self, iface: str) -> None:
        super().__init__()
        self.iface = iface
        self._t0 = time.monotonic()

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield LoadingIndicator()
            yield Label(f"compiling ironpost_xdp… attaching to {self.iface}…", id="steps", markup=False)
            yield Static("", id="elapsed")

    def on_mount(self) -> None:
        self.set_interval(0.5, self._tick)

    def _tick(self) -> None:
        self.query_one("#elapsed", Static).update(f"{time.monotonic() - self._t0:.1f} s · q quits")
