"""shown_text.show sets a Static's text only when it changed (each update lays the screen out again): the
same text is left alone, a new text or the same text in a new style is set."""

from __future__ import annotations

import asyncio

from textual.app import App, ComposeResult
from textual.content import Content
from textual.widgets import Static

from ironpost_tui.ui.widgets.shown_text import show


class One(App[None]):
    def compose(self) -> ComposeResult:
        yield Static("idle", id="s")


def test_show_sets_only_what_changed() -> None:
    async def run() -> None:
        app = One()
        async with app.run_test():
            s = app.query_one(Static)
            calls = []
            update = s.update
            s.update = lambda content="", **kw: (calls.append(content), update(content, **kw))  # type: ignore[method-assign]
            show(s, "idle")
            assert calls == []  # the same text: nothing laid out again
            show(s, "busy")
            assert calls == ["busy"]
            bold = Content.styled("busy", "bold")
            show(s, bold)  # the same words, now styled (Content compares its text alone): set
            assert calls[-1] is bold
            show(s, Content.styled("busy", "bold"))
            assert len(calls) == 2  # the same words in the same style: left alone
            show(s, Content.styled("busy", "italic"))
            assert len(calls) == 3

    asyncio.run(run())
