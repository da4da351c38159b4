"""Every key of the console, by where it works."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Label, Static

from ironpost_tui.ui.screens.reading import ReadingScreen

KeyHelp = tuple[str, str]  # (keys, what they do)


class HelpScreen(ReadingScreen):
    """The app passes the sections (built from the bindings, so none is missing)."""

    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def __init__(self, sections: Sequence[tuple[str, Sequence[KeyHelp]]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("ironpost-tui keys", id="title")
            yield Label("↑/↓ or j/k scroll · esc, q or ? closes · ctrl+p: command palette", id="hint")
            with VerticalScroll():
                yield Static(render_help(self.sections))


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
