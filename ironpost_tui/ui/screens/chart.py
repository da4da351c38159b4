"""One protocol's history, larger: packets/s, bits/s and drops/s over the last minute or ten.

Each plot's title is a line of its own above it, its series named in their colours: plotext draws its
legend inside the plot, at the top left, over the earliest samples, which are the top of the window
once it has filled (until session 26 a flood's first minute was under "packets/s" and "drops/s")."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.color import Color
from textual.content import Content
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Label

from ironpost_tui.model import ProtoRates, StatsSample
from ironpost_tui.ui import format as fmt
from ironpost_tui.ui.widgets.traffic_pane import ROWS

WINDOWS = (60.0, 600.0)  # seconds: the last minute, the last ten minutes


class ChartScreen(Screen[None]):
    """The app sets ``samples`` on each redraw; ``bits`` follows the main view's toggle."""

    BINDINGS = [
        Binding("escape,g,q", "close", "Close"),
        Binding("w", "window", "1m/10m"),
        Binding("m", "units", "Bits/bytes"),
        Binding("up,k", "protocol(-1)", "Prev proto", show=False),
        Binding("down,j", "protocol(1)", "Next proto", show=False),
    ]

    DEFAULT_CSS = """
    ChartScreen #chart-title { width: 100%; background: $panel; padding: 0 1; text-style: bold; }
    ChartScreen .plot-title { width: 100%; text-align: center; }
    ChartScreen PlotextPlot { height: 1fr; }
    """

    samples: reactive[tuple[StatsSample, ...]] = reactive(tuple, always_update=True)
    protocol: reactive[str] = reactive("total")
    window: reactive[float] = reactive(WINDOWS[0])
    bits: reactive[bool] = reactive(True)

    def __init__(self, protocol: str, samples: Sequence[StatsSample], bits: bool) -> None:
        super().__init__()
        self.set_reactive(ChartScreen.protocol, protocol)
        self.set_reactive(ChartScreen.samples, tuple(samples))
        self.set_reactive(ChartScreen.bits, bits)

    def compose(self) -> ComposeResult:
        from textual_plotext import PlotextPlot  # plotext loads when a chart is first opened, not at launch

        yield Label("", id="chart-title", markup=False)
        yield Label("", id="rate-plot-title", classes="plot-title", markup=False)
        yield PlotextPlot(id="rate-plot")
        yield Label("", id="volume-plot-title", classes="plot-title", markup=False)
        yield PlotextPlot(id="volume-plot")
        yield Footer(show_command_palette=False)  # ctrl+p still opens it, as in the panes

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._draw())
        self.call_after_refresh(self._draw)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_window(self) -> None:
        self.window = WINDOWS[(WINDOWS.index(self.window) + 1) % len(WINDOWS)]

    def action_units(self) -> None:
        self.bits = not self.bits

    def action_protocol(self, step: int) -> None:
        self.protocol = ROWS[(ROWS.index(self.protocol) + step) % len(ROWS)]

    def watch_samples(self) -> None:
        self._draw()

    def watch_protocol(self) -> None:
        self._draw()

    def watch_window(self) -> None:
        self._draw()

    def watch_bits(self) -> None:
        self._draw()

    def _colour(self, variable: str) -> tuple[int, int, int]:
        return Color.parse(self.app.theme_variables.get(variable, "white")).rgb

    def _draw(self) -> None:
        if not self.is_mounted:
            return
        samples = self.samples
        last = samples[-1].at if samples else 0.0
        recent = [s for s in samples if last - s.at <= self.window]
        xs = [s.at - last for s in recent]
        rates = [s.rates.get(self.protocol, ProtoRates()) for s in recent]
        span = "last minute" if self.window == WINDOWS[0] else "last 10 minutes"
        unit = "bits/s" if self.bits else "bytes/s"
        self.query_one("#chart-title", Label).update(
            f"{self.protocol.upper()} · {span} · {len(recent)} samples · ↑/↓ protocol · w window · m {unit}"
        )
        scale = 1.0 if self.bits else 1 / 8
        self._plot(
            "#rate-plot",
            xs,
            [("packets/s", [r.pps for r in rates], "primary"), ("drops/s", [r.drops_ps for r in rates], "error")],
        )
        self._plot("#volume-plot", xs, [(unit, [r.bps * scale for r in rates], "accent")])

    def _plot(self, selector: str, xs: list[float], lines: list[tuple[str, list[float], str]]) -> None:
        from textual_plotext import PlotextPlot

        keys = [Content.styled("■ ", f"${colour}") + Content(label) for label, _ys, colour in lines]
        title = Content(f"{self.protocol.upper()} ") + Content(" and ").join(keys)
        self.query_one(f"{selector}-title", Label).update(title)
        widget = self.query_one(selector, PlotextPlot)
        plt = widget.plt
        plt.clear_data()
        plt.xlabel("seconds ago")
        plt.xlim(-self.window, 0)
        top = max((max(ys) for _label, ys, _colour in lines if ys), default=0.0) or 1.0
        ticks = [top * i / 4 for i in range(5)]
        plt.yticks(ticks, [fmt.si(t) for t in ticks])
        if xs:
            for _label, ys, colour in lines:
                plt.plot(xs, ys, color=self._colour(colour))  # no label: no legend over the samples
        widget.refresh()
