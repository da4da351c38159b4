"""Traffic by protocol: packets/s and bits/s sparklines on one scale, rates and drops; and,
when the pane is shown alone, the top offenders."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.content import Content
from textual.reactive import reactive
from textual.widgets import Label, Static

from ironpost_tui.model import PROTOCOLS, ProtoRates, StatsSample
from ironpost_tui.ui import format as fmt
from ironpost_tui.ui.offenders import Offender
from ironpost_tui.ui.widgets.scaled_sparkline import ScaledSparkline
from ironpost_tui.ui.widgets.shown_text import show

ROWS = (*PROTOCOLS, "total")  # tcp udp icmp other total
SPARK_SAMPLES = 60  # the sparklines show the last minute of 1 s samples


class TrafficPane(Vertical, can_focus=True):
    """The screen sets ``samples``, ``bits`` and ``offenders``; up/down select the protocol
    that `g` charts.  The sparklines of a column share one scale, labelled in its header."""

    ALLOW_MAXIMIZE = True

    BINDINGS = [
        Binding("up,k", "select(-1)", "Previous protocol", show=False),
        Binding("down,j", "select(1)", "Next protocol", show=False),
    ]

    DEFAULT_CSS = """
    TrafficPane Grid {
        grid-size: 7;
        grid-columns: 6 1fr 7 1fr 8 7 7;
        grid-gutter: 0 1;
        grid-rows: 1 1fr 1fr 1fr 1fr 1fr;
        height: 1fr;
        min-height: 11;
    }
    TrafficPane #offenders { height: auto; max-height: 6; color: $foreground; }
    TrafficPane .head { color: $text-muted; text-style: bold; }
    TrafficPane .num { width: 100%; text-align: right; }
    TrafficPane .proto { text-style: bold; }
    TrafficPane .proto.-selected { background: $primary 40%; }
    TrafficPane:focus .proto.-selected { background: $primary; color: $text; }
    TrafficPane .drops.-dropping { color: $error; text-style: $ironpost-emphasis; }
    TrafficPane .total { text-style: bold; }
    TrafficPane Sparkline { width: 100%; height: 100%; }
    TrafficPane Sparkline > .sparkline--max-color { color: $primary; }
    TrafficPane Sparkline > .sparkline--min-color { color: $primary 30%; }
    TrafficPane Sparkline.bits > .sparkline--max-color { color: $accent; }
    TrafficPane Sparkline.bits > .sparkline--min-color { color: $accent 30%; }
    """

    samples: reactive[tuple[StatsSample, ...]] = reactive(tuple, always_update=True, repaint=False)
    bits: reactive[bool] = reactive(True)
    selected: reactive[str] = reactive("total")
    offenders: reactive[tuple[Offender, ...]] = reactive(tuple, repaint=False)

    def compose(self) -> ComposeResult:
        with Grid():
            yield Label("proto", classes="head")
            yield Label("packets/s", id="pps-head", classes="head")
            yield Label("pkt/s", classes="head num")
            yield Label("bits/s", id="volume-head", classes="head")
            yield Label("", id="rate-head", classes="head num")
            yield Label("drops", classes="head num")
            yield Label("drop/s", classes="head num")
            for proto in ROWS:
                extra = " total" if proto == "total" else ""
                yield Label(proto.upper(), id=f"name-{proto}", classes=f"proto{extra}")
                yield ScaledSparkline([], id=f"pps-{proto}")
                yield Static("0", id=f"ppsv-{proto}", classes=f"num{extra}")
                yield ScaledSparkline([], id=f"bps-{proto}", classes="bits")
                yield Static("0", id=f"bpsv-{proto}", classes=f"num{extra}")
                yield Static("0", id=f"drops-{proto}", classes=f"num drops{extra}")
                yield Static("0", id=f"dps-{proto}", classes=f"num drops{extra}")
        yield Static("", id="offenders")

    def on_mount(self) -> None:
        self.watch_bits(self.bits)
        self.watch_selected(self.selected)
        self.watch_offenders(self.offenders)

    def watch_offenders(self, offenders: tuple[Offender, ...]) -> None:
        """Top offenders, from the top talkers (or the alerts): one line each, the source never cut."""
        if not self.is_mounted:
            return
        counted = any(o.rates for o in offenders)
        what = "top talkers over 10 s (5: Top pane)" if counted else "top offenders (from the alerts)"
        head = Content.styled(what, "bold $text-muted")
        if not offenders:
            lines = [head + Content.styled(": none active", "$text-muted")]
        else:
            lines = [head]
            for o in offenders:
                lines.append(Content.assemble((fmt.text(o.source) + "  ", "bold"), o.found()))
        show(self.query_one("#offenders", Static), Content("\n").join(lines))

    def action_select(self, step: int) -> None:
        self.selected = ROWS[(ROWS.index(self.selected) + step) % len(ROWS)]

    def watch_selected(self, selected: str) -> None:
        for proto in ROWS:
            self.query_one(f"#name-{proto}").set_class(proto == selected, "-selected")

    def watch_bits(self, bits: bool) -> None:
        show(self.query_one("#rate-head", Label), "bit/s" if bits else "B/s")
        self.watch_samples(self.samples)

    def watch_samples(self, samples: Sequence[StatsSample]) -> None:
        if not self.is_mounted:
            return
        recent = samples[-SPARK_SAMPLES:]
        latest = recent[-1] if recent else None
        scale = 1.0 if self.bits else 1 / 8
        # One scale per column: the largest rate of any protocol in the window.
        pps_max = max((r.pps for s in recent for r in s.rates.values()), default=0.0)
        bps_max = max((r.bps * scale for s in recent for r in s.rates.values()), default=0.0)
        show(self.query_one("#pps-head", Label), f"max {fmt.si(pps_max)} pkt/s")
        show(self.query_one("#volume-head", Label), f"max {fmt.si(bps_max, 'b' if self.bits else 'B')}/s")
        for proto in ROWS:
            rates = [s.rates.get(proto, ProtoRates()) for s in recent]
            self.query_one(f"#pps-{proto}", ScaledSparkline).plot([r.pps for r in rates], pps_max)
            self.query_one(f"#bps-{proto}", ScaledSparkline).plot([r.bps * scale for r in rates], bps_max)
            now = rates[-1] if rates else ProtoRates()
            drops = latest.totals[proto].drops if latest and proto in latest.totals else 0
            show(self.query_one(f"#ppsv-{proto}", Static), fmt.si(now.pps))
            show(self.query_one(f"#bpsv-{proto}", Static), fmt.si(now.bps * scale, "b" if self.bits else "B"))
            show(self.query_one(f"#drops-{proto}", Static), fmt.si(drops))
            dps = self.query_one(f"#dps-{proto}", Static)
            show(dps, fmt.si(now.drops_ps))
            dps.set_class(now.drops_ps > 0, "-dropping")
