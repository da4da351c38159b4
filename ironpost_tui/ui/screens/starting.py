"""Shown at once while the engine compiles and attaches (seconds), so the terminal is never blank.

Drawn on its own: an opaque background, no spinner.  A modal screen's default, translucent background
renders the whole console beneath it again, tinted, at each redraw of its own, and a spinner redraws it
sixteen times a second: on the core beside the engine's start, that made the start longer (the
console's first live frame 0.67 -> 0.63 s opaque, medians of 8 beside the same tree).  The time
counting up, twice a second, says the start goes on.
"""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static


class StartingScreen(ModalScreen[None]):
    """The app dismisses it when the source has started (or failed)."""

    DEFAULT_CSS = """
    StartingScreen { align: center middle; background: $background; }
    StartingScreen #dialog {
        width: 60;
        max-width: 100%;
        height: auto;
        border: thick $primary;
        background: $surface;
        padding: 0 1;
    }
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
            yield Label(f"compiling ironpost_xdp… attaching to {self.iface}…", id="steps", markup=False)
            yield Static(self._elapsed(), id="elapsed")

    def on_mount(self) -> None:
        self.set_interval(0.5, self._tick)

    def _elapsed(self) -> str:
        return f"{time.monotonic() - self._t0:.1f} s · q quits"

    def _tick(self) -> None:
        self.query_one("#elapsed", Static).update(self._elapsed())
