"""Alerts: one per incident, updated while it grows, resolved when it is over."""

from __future__ import annotations

import ipaddress
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
    targets: tuple[str, ...] = ()  # the addresses attacked, most hit first (not part of the key)


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
    # The destination addresses attacked, most hit first (at most 4): for one source, the ones it
    # probed most; for a many-sources flood, its target.  () when not known (an older recording).
    targets: tuple[str, ...] = ()

    @property
    def resolved(self) -> bool:
        return self.resolved_at is not None

    @property
    def dst_ip(self) -> str | None:
        """The address attacked most, or None when no address is known."""
        if self.targets:
            return self.targets[0]
        try:
            return str(ipaddress.ip_address(self.target))
        except ValueError:
            return None

    @property
    def where(self) -> str:
        """The target as people read it: the addresses, and the interface when the target is one:
        ``198.18.0.1, 198.18.0.5 on eth0``; the target alone when no address is known."""
        if not self.targets:
            return self.target
        shown = ", ".join(self.targets)
        return shown if self.targets == (self.target,) else f"{shown} on {self.target}"


class ChangeKind(StrEnum):
    RAISED = "raised"
    UPDATED = "updated"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class AlertChange:
    kind: ChangeKind
    alert: Alert
    retargeted: bool = False  # an update that names a new address attacked (said at warning level)


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
                    targets=f.targets,
                )
                self._next_id += 1
                self._active[ident] = alert
                changes.append(AlertChange(ChangeKind.RAISED, alert))
                continue
            grown = f.count > alert.peak
            # Other addresses attacked are an update (the same ones in another order are not); a new
            # one among them is news (retargeted: said in the log).
            moved = retargeted = False
            if f.targets and f.targets != alert.targets:
                moved = set(f.targets) != set(alert.targets)
                retargeted = not set(f.targets) <= set(alert.targets)
            alert = replace(
                alert,
                count=f.count,
                peak=max(alert.peak, f.count),
                last_seen=now,
                summary=f.summary,
                severity=f.severity,
                targets=f.targets or alert.targets,
            )
            self._active[ident] = alert
            if grown or moved:
                changes.append(AlertChange(ChangeKind.UPDATED, alert, retargeted))
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
