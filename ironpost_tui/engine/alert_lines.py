"""The detectors' alerts as log lines, each detector at most LINES_PER_WINDOW a WINDOW_SECS: past them, counted and
said in one line when the window ends.

A spoofed flood of sources each sending a real single-source flood raises one alert per source, thousands a second
(a review of session 29 measured some 6,000 lines a second from 2,000 new sources a second), and journald's
default limit (10,000 lines per 30 s per unit) then drops every line of the agent for the rest of its interval:
the interface gone, an auto-block stopped, a panic.  The alerts themselves are all still counted
(``ironpost_alerts_total``), open (``ironpost-tui alerts IFACE``) and acted on; only their lines are held.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from ironpost_tui.detectors import AlertChange, ChangeKind
from ironpost_tui.detectors.alerts import MAX_OPEN
from ironpost_tui.detectors.settings import Detector

log = logging.getLogger("ironpost")

LINES_PER_WINDOW = 100  # a detector's alert lines a window, raised, resolved and restated alike
WINDOW_SECS = 60.0


class AlertLines:
    """Alert changes as log lines, at most ``per_window`` a detector a ``window`` seconds (see the module)."""

    def __init__(
        self,
        iface: str,
        per_window: int = LINES_PER_WINDOW,
        window: float = WINDOW_SECS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._iface = iface
        self._per_window = per_window
        self._window = window
        self._clock = clock
        self._started: dict[Detector, float] = {}  # when each detector's window began
        self._said: Counter[Detector] = Counter()
        self._held: dict[Detector, Counter[ChangeKind]] = {}

    def log(self, change: AlertChange) -> None:
        if _debug_only(change):
            log_alert(change)
            return
        detector = change.alert.detector
        now = self._clock()
        if detector not in self._started:
            self._started[detector] = now
        if self._said[detector] < self._per_window:
            self._said[detector] += 1
            log_alert(change)
        else:
            self._held.setdefault(detector, Counter())[change.kind] += 1

    def roll(self) -> None:
        """End the windows that are over: each says in one line what it held."""
        now = self._clock()
        for detector, started in list(self._started.items()):
            if now - started >= self._window:
                self._end(detector)

    def flush(self) -> None:
        """At the end of a run: what the windows held, said."""
        for detector in list(self._started):
            self._end(detector)

    def _end(self, detector: Detector) -> None:
        del self._started[detector]
        self._said.pop(detector, None)
        held = self._held.pop(detector, None)
        if not held:
            return
        total = sum(held.values())
        kinds = ", ".join(f"{n:,} {kind}" for kind, n in sorted(held.items()))
        log.warning(
            "alerts: %s more %s alert line(s) of the last %.0f s not logged one by one (%s): "
            "ironpost-tui alerts %s lists the open ones, ironpost_alerts_total counts them",
            f"{total:,}",
            detector,
            self._window,
            kinds,
            self._iface,
            extra={"event": "alert_lines_held", "detector": detector, "count": total,
                   "kinds": {str(k): n for k, n in held.items()}},
        )  # fmt: skip


def _debug_only(change: AlertChange) -> bool:
    """An update that changes nothing an operator reads (its counts): a debug line, never held."""
    return change.kind == ChangeKind.UPDATED and not (change.retargeted or change.restated)


def log_alert(change: AlertChange) -> None:
    """One alert change as its log line: a warning when raised or retargeted, info when resolved or restated, debug
    for another update."""
    a = change.alert
    if _debug_only(change):
        log.debug("alert %d %s updated: %s", a.id, a.detector, a.summary)
        return
    quiet = change.kind == ChangeKind.RESOLVED or (change.restated and not change.retargeted)
    level = logging.INFO if quiet else logging.WARNING
    log.log(
        level,
        "alert %d %s %s: %s -> %s: %s (severity %s)%s",
        a.id,
        a.detector,
        change.kind,
        a.source,
        a.where,
        a.summary,
        a.severity,
        f", now {a.state}" if change.restated else (f", early: {MAX_OPEN:,} alerts were open" if change.early else ""),
        extra={"alert": a, "change": change.kind},
    )
