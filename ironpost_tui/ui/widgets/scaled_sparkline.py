"""A sparkline drawn against a scale it is given, so that several share one.

Textual's Sparkline scales each line to its own minimum and maximum: 0.99 pkt/s of OTHER
then draws as tall as 179,000 pkt/s of TCP.  This one draws from zero to ``scale``.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style
from textual.color import Color
from textual.reactive import reactive
from textual.widgets import Sparkline

BARS = "▁▂▃▄▅▆▇█"


def columns(data: Sequence[float], width: int) -> list[float]:
    """One value per column: the largest of the samples that fall in it, the newest at the right."""
    if not data or width <= 0:
        return [0.0] * max(0, width)
    if len(data) <= width:  # fewer samples than columns: the newest at the right
        return [0.0] * (width - len(data)) + [float(v) for v in data]
    return [max(data[i * len(data) // width : (i + 1) * len(data) // width] or [0.0]) for i in range(width)]


def heights(data: Sequence[float], scale: float, width: int) -> list[float]:
    """Each column's share of ``scale``, 0..1: all that the bars drawn depend on, beside the size and colours."""
    return [min(1.0, max(0.0, v / scale)) if scale > 0 else 0.0 for v in columns(data, width)]


class ScaledBars:
    """Bars for ``data`` (one per column, the largest value of the samples that fall in it),
    ``height`` lines tall, full height at ``scale``."""

    def __init__(self, data: Sequence[float], scale: float, width: int, height: int, low: Color, high: Color) -> None:
        self.data = data
        self.scale = scale
        self.width = width
        self.height = height
        self.low = low
        self.high = high

    def _columns(self) -> list[float]:
        return columns(self.data, self.width)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        levels = len(BARS) * self.height
        ratios = heights(self.data, self.scale, self.width)
        for line in reversed(range(self.height)):
            for ratio in ratios:
                level = int(ratio * (levels - 1))  # 0 (a baseline) .. levels-1 (full)
                bottom = line * len(BARS)
                if level < bottom:
                    yield Segment(" ")
                    continue
                bar = "█" if level >= bottom + len(BARS) else BARS[level - bottom]
                yield Segment(bar, Style(color=self.low.blend(self.high, ratio).rich_color))
            if line:
                yield Segment.line()


class ScaledSparkline(Sparkline):
    """The pane sets ``data`` and ``scale`` (the largest value any of the lines sharing it shows) with
    ``plot``."""

    _drawn: tuple[object, list[float]] | None = None

    scale: reactive[float] = reactive(0.0)

    def plot(self, data: list[float], scale: float) -> None:
        """Set ``data`` and ``scale``, and redraw only when the bars drawn at the present size change: the
        pane sets every line each second, and ten sparklines redrawn with nothing to show (the first minute of an
        idle console, its history filling with zeros) were most of what its screen cost at idle.  The new data are
        kept either way, so a resize draws them."""
        drawn = (self.size, heights(data, scale, self.size.width))
        self.set_reactive(ScaledSparkline.data, data)
        self.set_reactive(ScaledSparkline.scale, scale)
        if drawn != self._drawn:
            self._drawn = drawn
            self.refresh()

    def render(self) -> ScaledBars:
        _, base = self.background_colors
        low = base + self.get_component_styles("sparkline--min-color").color
        high = base + self.get_component_styles("sparkline--max-color").color
        return ScaledBars(list(self.data or []), self.scale, self.size.width, self.size.height, low, high)
