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
    the room the old one did (``keeps_size``)."""
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
    """Whether ``new`` in place of ``old`` leaves ``widget``'s size as it is: as many lines, none wrapped
    (each fits the width the widget has now, the old text's too), and a width that is not the text's
    (``width: auto``) or the same widest line."""
    was, now = extent(old), extent(new)
    if was is None or now is None or was[0] != now[0]:
        return False
    room = widget.content_size.width
    if max(was[1], now[1]) > room:
        return False  # wrapped, or it may be now: its height is the layout's to say
    width = widget.styles.width
    return was[1] == now[1] or (width is not None and not width.is_auto)
