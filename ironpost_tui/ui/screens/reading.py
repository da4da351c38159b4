"""A dialog to read: a title, a hint, and a scrolled text (the keys' help, the last notices)."""

from __future__ import annotations

from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen


class ReadingScreen(ModalScreen[None]):
    """A subclass composes ``#dialog`` with ``#title``, ``#hint`` and a VerticalScroll, and adds its close keys;
    j / k scroll as ↓ / ↑ do."""

    BINDINGS = [
        Binding("j", "scroll('down')", "Scroll down", show=False),
        Binding("k", "scroll('up')", "Scroll up", show=False),
    ]

    DEFAULT_CSS = """
    ReadingScreen { align: center middle; }
    ReadingScreen #dialog {
        width: 90;
        max-width: 100%;
        height: 100%;
        max-height: 44;
        border: thick $primary;
        background: $surface;
        padding: 0 1;
    }
    ReadingScreen #title { text-style: bold; width: 100%; }
    ReadingScreen #hint { color: $text-muted; width: 100%; }
    ReadingScreen VerticalScroll { height: 1fr; }
    """

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_scroll(self, way: str) -> None:
        scroll = self.query_one(VerticalScroll)
        if way == "down":
            scroll.scroll_down()
        else:
            scroll.scroll_up()
