"""The console's last notices, whole and timed: what the notice line (some 29 cells at 80 columns) and the
toasts (gone after seconds) said, for a responder who looked away (`n`)."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from ironpost_tui.ui import format as fmt


class NoticesScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q,n", "close", "Close"),
        Binding("j", "scroll('down')", "Scroll down", show=False),
        Binding("k", "scroll('up')", "Scroll up", show=False),
    ]

    DEFAULT_CSS = """
    NoticesScreen { align: center middle; }
    NoticesScreen #dialog {
        width: 100;
        max-width: 100%;
        height: 100%;
        max-height: 44;
        border: thick $primary;
        background: $surface;
        padding: 0 1;
    }
    NoticesScreen #title { text-style: bold; width: 100%; }
    NoticesScreen #hint { color: $text-muted; width: 100%; }
    NoticesScreen VerticalScroll { height: 1fr; }
    """

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
        scroll = self.query_one(VerticalScroll)
        scroll.focus()
        scroll.scroll_end(animate=False)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_scroll(self, way: str) -> None:
        scroll = self.query_one(VerticalScroll)
        if way == "down":
            scroll.scroll_down()
        else:
            scroll.scroll_up()


def render_notices(said: Sequence[tuple[float, str]]) -> Content:
    """One line a notice (wrapped where long), its time first; texts as they came, never read as markup."""
    if not said:
        return Content.styled("nothing said yet", "$text-muted")
    lines = [Content.assemble((f"{fmt.clock(at)}  ", "bold $primary"), fmt.text(text)) for at, text in said]
    return Content("\n").join(lines)
