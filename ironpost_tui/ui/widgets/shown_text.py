"""A Static's text set only when it changes, and laid out again only when its size may change.

Each Static.update lays the whole screen out again by default and draws every pane it spans: the console's
once-a-second figures, the same at idle, were a full screen's work each second (until session 26), and
under a flood, where they change each second, a layout of every pane for each of them (session 33: a
quarter of the console's time).  A text that changes without changing the widget's size needs a redraw of
the widget alone.
"""

from __future__ import annotations

from rich.cells import cell_len
from textual.content import Content
from textual.visual import VisualType
from textual.widgets import Static


def show(widget: Static, content: VisualType) -> None:
    """``widget.update(content)`` unless it shows ``content`` already (the same text, and for Content the
    same spans too: Content's equality compares the text alone); without a layout when the new text takes
    the room the old one did (``keeps_size``): a figure that changes and keeps its width, as most do."""
    old = widget.content
    if old != content or (
        isinstance(content, Content) and (not isinstance(old, Content) or old.spans != content.spans)
    ):
        widget.update(content, layout=not keeps_size(widget, old, content))


def extent(content: object) -> tuple[int, int] | None:
    """(lines, cells of the widest line) of a text whose cells are its characters' (a Content, or a str that
    markup cannot change: no "["); None for anything else (measured by a layout)."""
    if isinstance(content, Content):
        text = content.plain
    elif isinstance(content, str) and "[" not in content:
        text = content
    else:
        return None
    lines = text.split("\n")
    return len(lines), max(map(cell_len, lines))


def keeps_size(widget: Static, old: object, new: object) -> bool:
    """Whether ``new`` in place of ``old`` leaves ``widget``'s size as it is whatever its CSS says: as many
    lines, the same widest line (what an auto width, or an auto grid column, is measured from), and none
    wrapped (each fits the width the widget has now), so its height is the line count both times."""
    was, now = extent(old), extent(new)
    return was is not None and was == now and now[1] <= widget.content_size.width
