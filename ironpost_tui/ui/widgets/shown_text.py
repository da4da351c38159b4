"""A Static's text set only when it changes: each Static.update lays the whole screen out again and
draws every pane it spans, so the console's once-a-second figures, the same at idle, were a full
screen's work each second."""

from __future__ import annotations

from textual.content import Content
from textual.visual import VisualType
from textual.widgets import Static


def show(widget: Static, content: VisualType) -> None:
    """``widget.update(content)`` unless it shows ``content`` already (the same text, and for Content the
    same spans too: Content's equality compares the text alone)."""
    old = widget.content
    if old != content or (
        isinstance(content, Content) and (not isinstance(old, Content) or old.spans != content.spans)
    ):
        widget.update(content)
