"""The console's last notices, whole and timed: what the notice line (some 29 cells at 80 columns) and the
toasts (gone after seconds) said, for a responder who looked away (`n`)."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Label, Static

from ironpost_tui.ui import format as fmt
from ironpost_tui.ui.screens.reading import ReadingScreen


class NoticesScreen(ReadingScreen):
    BINDINGS = [Binding("escape,q,n", "close", "Close")]
    DEFAULT_CSS = "NoticesScreen Vertical#dialog { width: 100; }  /* wider than help: whole notices */"

    def __init__(self, said: Sequence[tuple[float, str]]) -> None:
        super().__init__()
        self.said = tuple(said)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(f"Notices: the last {len(self.said)}, newest last", id="title")
            yield Label("↑/↓ or j/k scroll · esc, q or n closes · the log has every one", id="hint")
            with VerticalScroll():
                yield Static(render_notices(self.said), id="notices")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one(VerticalScroll).scroll_end(animate=False)


def render_notices(said: Sequence[tuple[float, str]]) -> Content:
    """One line a notice (wrapped where long), its time first; texts as they came, never read as markup."""
    if not said:
        return Content.styled("nothing said yet", "$text-muted")
    lines = [Content.assemble((f"{fmt.clock(at)}  ", "bold $primary"), fmt.text(text)) for at, text in said]
    return Content("\n").join(lines)
