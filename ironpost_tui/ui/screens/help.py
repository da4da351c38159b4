"""Every key of the console, by where it works."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Label, Static

KeyHelp = tuple[str, str]  # (keys, what they do)


class HelpScreen(ModalScreen[None]):
    """The app passes the sections (built from the bindings, so none is missing)."""

    BINDINGS = [
        Binding("escape,q,question_mark", "close", "Close"),
        Binding("j", "scroll('down')", "Scroll down", show=False),
        Binding("k", "scroll('up')", "Scroll up", show=False),
    ]

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen #dialog {
        width: 90;
        max-width: 100%;
        height: 100%;
        max-height: 44;
        border: thick $primary;
        background: $surface;
        padding: 0 1;
    }
    HelpScreen #title { text-style: bold; width: 100%; }
    HelpScreen #hint { color: $text-muted; width: 100%; }
    HelpScreen VerticalScroll { height: 1fr; }
    """

    def __init__(self, sections: Sequence[tuple[str, Sequence[KeyHelp]]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("ironpost-tui keys", id="title")
            yield Label("↑/↓ or j/k scroll · esc, q or ? closes · ctrl+p: command palette", id="hint")
            with VerticalScroll():
                yield Static(render_help(self.sections))

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


def render_help(sections: Sequence[tuple[str, Sequence[KeyHelp]]]) -> Content:
    lines: list[Content] = []
    for title, keys in sections:
        if lines:
            lines.append(Content(""))
        lines.append(Content.styled(title, "bold $accent"))
        for key, what in keys:
            # A key as long as the column or longer (a protected IPv6 address) keeps a space before its text.
            lines.append(Content.assemble((f"  {key:<18}" if len(key) < 18 else f"  {key} ", "bold $primary"), what))
    return Content("\n").join(lines)
