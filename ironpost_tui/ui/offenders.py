"""The Traffic pane's "top offenders": the top talkers by packets/s over 10 s (counted in the
kernel for all traffic), each with its active alerts; from the alerts alone when no top-talker
lists exist (a recording made before them).  Textual-free."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ironpost_tui.detectors import Alert
from ironpost_tui.triage.values import RateWindow, TopSnapshot
from ironpost_tui.ui import format as fmt

WINDOW = RateWindow.S10


@dataclass(frozen=True)
class Offender:
    source: str
    alerts: tuple[tuple[str, int, bool], ...]  # (detector, count, blocked), biggest first
    rates: str = ""  # "12.3k pkt/s · 9.8Mbit/s" when counted as a top talker

    @property
    def count(self) -> int:
        return max((count for _, count, _ in self.alerts), default=0)

    def found(self) -> str:
        """What the line says after the source: its rates, then each alert, "blocked" for one whose source a rule
        drops (its count falls as the drops stop reaching the detector: a flooding source blocked read "syn_flood
        0" beside 635 pkt/s until session 25)."""
        said = [f"{d} blocked" if blocked else f"{d} {fmt.count(n)}" for d, n, blocked in self.alerts]
        return " · ".join([self.rates] * bool(self.rates) + said)


def _alerts_by_source(alerts: Iterable[Alert]) -> dict[str, list[tuple[str, int, bool]]]:
    by_source: dict[str, list[tuple[str, int, bool]]] = {}
    for a in alerts:
        if not a.resolved:
            by_source.setdefault(a.source, []).append((str(a.detector), a.count, a.block is not None))
    return by_source


def top_offenders(top: TopSnapshot | None, alerts: Iterable[Alert], limit: int = 5) -> tuple[Offender, ...]:
    """The busiest sources with their alerts; without top-talker lists, the sources of the alerts
    not resolved, by their biggest alert's count."""
    by_source = _alerts_by_source(alerts)
    rows = top.lists(WINDOW).sources[:limit] if top is not None else ()
    if rows:
        return tuple(
            Offender(
                r.key,
                tuple(sorted(by_source.get(r.key, []), key=lambda f: -f[1])),
                f"{fmt.si(r.pps)} pkt/s · {fmt.si(r.bps)}bit/s",
            )
            for r in rows
        )
    offenders = [Offender(src, tuple(sorted(found, key=lambda f: -f[1]))) for src, found in by_source.items()]
    offenders.sort(key=lambda o: -o.count)
    return tuple(offenders[:limit])
