"""Alerts: one per incident, updated while it grows, resolved when it is over."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from ironpost_tui.detectors.settings import Detector
from ironpost_tui.model import StrEnum

MANY_SOURCES = "many sources"


@dataclass(frozen=True)
class Finding:
    """What a detector sees this tick: an incident key and its size now."""

    detector: Detector
    key: tuple[str, str]  # (source, target): identifies the incident
    severity: str  # medium | high | critical
    count: int  # SYNs, or new destination ports, within the window
    window_secs: float
    summary: str


@dataclass(frozen=True)
class Alert:
    id: int
    detector: Detector
    severity: str
    source: str  # an address, or "many sources"
    target: str  # an address, or the interface
    count: int  # within the window, now
    peak: int  # the largest count seen in this incident
    window_secs: float
    first_seen: float  # wall-clock seconds
    last_seen: float
    summary: str
    resolved_at: float | None = None

    @property
    def resolved(self) -> bool:
        return self.resolved_at is not None


class ChangeKind(StrEnum):
    RAISED = "raised"
    UPDATED = "updated"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class AlertChange:
    kind: ChangeKind
    alert: Alert


class AlertBook:
    """Turns per-tick findings into incidents: raised once, updated, resolved."""

    def __init__(self) -> None:
        self._active: dict[tuple[Detector, tuple[str, str]], Alert] = {}
        self._quiet_since: dict[tuple[Detector, tuple[str, str]], float] = {}
        self._next_id = 1

    @property
    def active(self) -> list[Alert]:
        return sorted(self._active.values(), key=lambda a: a.id)

    def update(self, findings: Iterable[Finding], now: float) -> list[AlertChange]:
        changes: list[AlertChange] = []
        seen = set()
        for f in findings:
            ident = (f.detector, f.key)
            seen.add(ident)
            self._quiet_since.pop(ident, None)
            alert = self._active.get(ident)
            if alert is None:
                alert = Alert(
                    id=self._next_id,
                    detector=f.detector,
                    severity=f.severity,
                    source=f.key[0],
                    target=f.key[1],
                    count=f.count,
                    peak=f.count,
                    window_secs=f.window_secs,
                    first_seen=now,
                    last_seen=now,
                    summary=f.summary,
                )
                self._next_id += 1
                self._active[ident] = alert
                changes.append(AlertChange(ChangeKind.RAISED, alert))
                continue
            grown = f.count > alert.peak
            alert = replace(
                alert,
                count=f.count,
                peak=max(alert.peak, f.count),
                last_seen=now,
                summary=f.summary,
                severity=f.severity,
            )
            self._active[ident] = alert
            if grown:
                changes.append(AlertChange(ChangeKind.UPDATED, alert))
        for ident, alert in list(self._active.items()):
            if ident in seen:
                continue
            quiet = self._quiet_since.setdefault(ident, now)
            # Resolved once it has stayed below its threshold for a whole window.
            if now - quiet >= alert.window_secs:
                del self._active[ident]
                del self._quiet_since[ident]
                changes.append(AlertChange(ChangeKind.RESOLVED, replace(alert, resolved_at=now)))
        return changes
