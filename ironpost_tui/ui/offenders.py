"""The sources behind the active alerts, biggest first: the Traffic pane's "top offenders"
until per-source counting exists (Textual-free)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ironpost_tui.detectors import Alert


@dataclass(frozen=True)
class Offender:
    source: str
    alerts: tuple[tuple[str, int], ...]  # (detector, count), biggest first

    @property
    def count(self) -> int:
        return max(count for _, count in self.alerts)


def top_offenders(alerts: Iterable[Alert], limit: int = 5) -> tuple[Offender, ...]:
    """The sources of the alerts not resolved, by their biggest alert's count."""
    by_source: dict[str, list[tuple[str, int]]] = {}
    for a in alerts:
        if not a.resolved:
            by_source.setdefault(a.source, []).append((str(a.detector), a.count))
    offenders = [Offender(src, tuple(sorted(found, key=lambda f: -f[1]))) for src, found in by_source.items()]
    offenders.sort(key=lambda o: -o.count)
    return tuple(offenders[:limit])
