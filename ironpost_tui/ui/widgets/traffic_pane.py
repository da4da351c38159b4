"""Traffic by protocol: packets/s and bits/s sparklines, rates and drops."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.reactive import reactive
from textual.widgets import Label, Sparkline, Static

from ironpost_tui.model import PROTOCOLS, ProtoRates, StatsSample
from ironpost_tui.ui import format as fmt

ROWS = (*PROTOCOLS, "total")  # tcp udp icmp other total
SPARK_SAMPLES = 60  # the sparklines show the last minute of 1 s samples


class TrafficPane(Vertical, can_focus=True):
    """The screen sets ``samples`` and ``bits``; up/down select the protocol that `g` charts."""

    ALLOW_MAXIMIZE = True

    BINDINGS = [
        Binding("up,k", "select(-1)", "Previous protocol", show=False),
        Binding("down,j", "select(1)", "Next protocol", show=False),
    ]

    DEFAULT_CSS = """
    TrafficPane Grid {
        grid-size: 7;
        grid-columns: 6 1fr 9 1fr 10 9 9;
        grid-gutter: 0 1;
        grid-rows: 1 2 2 2 2 2;
        height: auto;
    }
    TrafficPane .head { color: $text-muted; text-style: bold; }
    TrafficPane .num { width: 100%; text-align: right; }
    TrafficPane .proto { text-style: bold; }
    TrafficPane .proto.-selected { background: $primary 40%; }
    TrafficPane:focus .proto.-selected { background: $primary; color: $text; }
    TrafficPane .drops.-dropping { color: $error; text-style: $ironpost-emphasis; }
    TrafficPane .total { text-style: bold; }
    TrafficPane Sparkline { width: 100%; height: 2; }
    TrafficPane Sparkline > .sparkline--max-color { color: $primary; }
    TrafficPane Sparkline > .sparkline--min-color { color: $primary 30%; }
    TrafficPane Sparkline.bits > .sparkline--max-color { color: $accent; }
    TrafficPane Sparkline.bits > .sparkline--min-color { color: $accent 30%; }
    """

    samples: reactive[tuple[StatsSample, ...]] = reactive(tuple, always_update=True)
    bits: reactive[bool] = reactive(True)
    selected: reactive[str] = reactive("total")

    def compose(self) -> ComposeResult:
        with Grid():
            yield Label("proto", classes="head")
            yield Label("packets/s", classes="head")
            yield Label("pkt/s", classes="head num")
            yield Label("", id="volume-head", classes="head")
            yield Label("", id="rate-head", classes="head num")
            yield Label("drops", classes="head num")
            yield Label("drop/s", classes="head num")
            for proto in ROWS:
                extra = " total" if proto == "total" else ""
                yield Label(proto.upper(), id=f"name-{proto}", classes=f"proto{extra}")
                yield Sparkline([], id=f"pps-{proto}")
                yield Static("0", id=f"ppsv-{proto}", classes=f"num{extra}")
                yield Sparkline([], id=f"bps-{proto}", classes="bits")
                yield Static("0", id=f"bpsv-{proto}", classes=f"num{extra}")
                yield Static("0", id=f"drops-{proto}", classes=f"num drops{extra}")
                yield Static("0", id=f"dps-{proto}", classes=f"num drops{extra}")

    def on_mount(self) -> None:
        self.watch_bits(self.bits)
        self.watch_selected(self.selected)

    def action_select(self, step: int) -> None:
        self.selected = ROWS[(ROWS.index(self.selected) + step) % len(ROWS)]

    def watch_selected(self, selected: str) -> None:
        for proto in ROWS:
            self.query_one(f"#name-{proto}").set_class(proto == selected, "-selected")

    def watch_bits(self, bits: bool) -> None:
        self.query_one("#volume-head", Label).update("bits/s" if bits else "bytes/s")
        self.query_one("#rate-head", Label).update("bit/s" if bits else "B/s")
        self.watch_samples(self.samples)

    def watch_samples(self, samples: Sequence[StatsSample]) -> None:
        if not self.is_mounted:
            return
        recent = samples[-SPARK_SAMPLES:]
        latest = recent[-1] if recent else None
        scale = 1.0 if self.bits else 1 / 8
        for proto in ROWS:
            rates = [s.rates.get(proto, ProtoRates()) for s in recent]
            self.query_one(f"#pps-{proto}", Sparkline).data = [r.pps for r in rates]
            self.query_one(f"#bps-{proto}", Sparkline).data = [r.bps * scale for r in rates]
            now = rates[-1] if rates else ProtoRates()
            drops = latest.totals[proto].drops if latest and proto in latest.totals else 0
            self.query_one(f"#ppsv-{proto}", Static).update(fmt.si(now.pps))
            self.query_one(f"#bpsv-{proto}", Static).update(fmt.si(now.bps * scale, "b" if self.bits else "B"))
            self.query_one(f"#drops-{proto}", Static).update(fmt.si(drops))
            dps = self.query_one(f"#dps-{proto}", Static)
            dps.update(fmt.si(now.drops_ps))
            dps.set_class(now.drops_ps > 0, "-dropping")
