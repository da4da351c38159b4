"""shown_text.show sets a Static's text only when it changed (each update lays the screen out again): the
same text is left alone, a new text or the same text in a new style is set; and lays the screen out again
only when the new text may change the widget's size."""

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


def test_a_text_that_keeps_its_size_is_drawn_again_without_a_layout() -> None:
    """show() lays the screen out again only when the new text may change the widget's size: more or
    fewer lines, a wider or narrower widest line, a line that does not fit (it wraps), or markup it cannot
    measure.  What is drawn is the new text either way."""

    class Two(App[None]):
        CSS = "#fixed { width: 10; height: auto; } #auto { width: auto; height: 1; }"

        def compose(self) -> ComposeResult:
            yield Static("1", id="fixed", markup=False)
            yield Static("cd", id="auto", markup=False)

    app = Two()

    async def main() -> None:
        async with app.run_test(size=(40, 6)) as pilot:
            await pilot.pause()
            fixed, auto = app.query_one("#fixed", Static), app.query_one("#auto", Static)
            layouts: list[tuple[str, bool]] = []
            for widget in (fixed, auto):
                real = widget.refresh

                def counted(*args: object, _w: Static = widget, _real: object = real, **kwargs: object) -> object:
                    layouts.append((_w.id or "", bool(kwargs.get("layout"))))
                    return _real(*args, **kwargs)  # type: ignore[operator]

                widget.refresh = counted  # type: ignore[method-assign]

            def shown(widget: Static, text: str) -> bool:
                layouts.clear()
                show(widget, text)
                return any(layout for _id, layout in layouts)

            assert shown(fixed, "2") is False  # a figure that keeps its width: redrawn alone
            await pilot.pause()
            assert fixed.render_line(0).text.startswith("2")
            assert shown(fixed, "12,345") is True  # wider: measured again (a width or a column may be the text's)
            assert shown(fixed, "12,346") is False
            assert shown(fixed, "x" * 20) is True  # wider than the widget: it wraps, its height changes
            assert shown(fixed, "y" * 20) is True  # as wide as before, but wrapped: measured
            assert shown(fixed, "a\nb") is True  # another line
            assert shown(fixed, "c\nd") is False
            assert shown(fixed, "[b]x") is True  # markup might make it any width: measured
            assert shown(auto, "ef") is False  # width: auto, the same width
            assert shown(auto, "efg") is True  # width: auto, wider
            await pilot.pause()
            assert auto.size.width == 3

    asyncio.run(main())
