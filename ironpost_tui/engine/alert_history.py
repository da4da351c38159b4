"""The alerts a running engine can still show: every open one and the last resolved ones.

The detectors' book forgets an alert once it is resolved; ``ironpost-tui alerts IFACE`` (and
anything else asking the running controller) should still see what just happened."""

from __future__ import annotations

from ironpost_tui.detectors import Alert, AlertChange

RESOLVED_KEPT = 1_000  # resolved alerts remembered, newest kept


class AlertHistory:
    """Alerts by id, oldest first: open ones always, resolved ones up to ``resolved_kept``."""

    def __init__(self, resolved_kept: int = RESOLVED_KEPT) -> None:
        self._alerts: dict[int, Alert] = {}
        self._resolved: dict[int, None] = {}  # ids of resolved alerts, oldest resolution first
        self._resolved_kept = resolved_kept

    def apply(self, changes: tuple[AlertChange, ...]) -> None:
        for change in changes:
            alert = change.alert
            self._alerts[alert.id] = alert
            if alert.resolved:
                self._resolved[alert.id] = None
        while len(self._resolved) > self._resolved_kept:
            oldest = next(iter(self._resolved))
            del self._resolved[oldest]
            del self._alerts[oldest]

    def alerts(self) -> tuple[Alert, ...]:
        return tuple(self._alerts[i] for i in sorted(self._alerts))
