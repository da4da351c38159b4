"""Auto-block's decision: whether a raised alert's source may be blocked, and why not.

A detector names sources from packets nobody authenticated, so an attacker chooses them: a
spoofed flood can name the gateway, the resolvers, or thousands of bystanders.  So auto-block

- never blocks infrastructure (``infrastructure``: gateways, resolvers, NTP servers, /metrics
  scrapers, authenticated SSH clients, the anti-lockout protections);
- never blocks ``many sources`` (a spoofed flood cannot be pinned on a source: it names its target);
- blocks at most ``max_blocks_per_minute`` new sources in any 60 s and keeps at most
  ``max_auto_blocks`` auto-blocks in force;
- never blocks the sources of an incident with more than ``max_incident_sources`` of them, counted
  as the distinct sources one detector raised alerts for within that detector's window; when the
  count passes the limit, the sources it did block in that window are unblocked (``revoke``).

Past any limit, a storm begins: nothing more is blocked until no alert has asked for a block for
``QUIET_SECS``, and the storm is reported once (``Decision.incident``), not once per source.

Pure: the clock is passed in; the only outside look-up is the infrastructure set, itself refreshed
at most every few seconds.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ironpost_tui.detectors.alerts import MANY_SOURCES, Alert
from ironpost_tui.detectors.settings import AutoBlockLimits, Detector
from ironpost_tui.model import StrEnum
from ironpost_tui.rules.infrastructure import InfraAddress

MINUTE = 60.0
QUIET_SECS = 60.0  # a storm is over after this long without an alert asking for a block


class Refusal(StrEnum):
    MANY_SOURCES = "many sources"
    INFRASTRUCTURE = "infrastructure"
    PER_MINUTE = "max_blocks_per_minute"
    LIVE = "max_auto_blocks"
    INCIDENT = "max_incident_sources"


@dataclass(frozen=True)
class Decision:
    block: bool
    refusal: Refusal | None = None
    why_not: str = ""  # one line, for the log
    incident: str | None = None  # a storm began with this alert: say this once
    revoke: tuple[str, ...] = ()  # sources auto-blocked earlier in an incident now too large to block


@dataclass
class _Sources:
    """Sources one detector raised, each with when it last was; and those it blocked.

    Both books are kept in time order (a source seen again moves to the end), so pruning pops
    from the front: amortised O(1) an alert, where a scan of the whole book made a storm of
    thousands of alerts in one tick quadratic (seconds, with the signals waiting)."""

    raised: OrderedDict[str, float] = field(default_factory=OrderedDict)
    blocked: OrderedDict[str, float] = field(default_factory=OrderedDict)

    @staticmethod
    def note(book: OrderedDict[str, float], src: str, now: float) -> None:
        book[src] = now
        book.move_to_end(src)

    def prune(self, now: float, window: float) -> None:
        for book in (self.raised, self.blocked):
            while book and now - next(iter(book.values())) > window:
                book.popitem(last=False)


class AutoBlockPolicy:
    """One per engine; ``decide`` for each raised alert of a detector with auto_block on, and
    ``blocked`` once the rule is in force."""

    def __init__(
        self,
        limits: AutoBlockLimits,
        infrastructure: Callable[[str, float], InfraAddress | None] = lambda _addr, _now: None,
    ) -> None:
        self.limits = limits
        self._infrastructure = infrastructure
        self._recent: deque[float] = deque()  # when each block of the last minute was made
        self._incidents: dict[Detector, _Sources] = {}
        self._storm: Refusal | None = None
        self._last_asked = 0.0

    @property
    def storm(self) -> Refusal | None:
        """Why auto-block is stopped now (None: it is not)."""
        return self._storm

    def decide(self, alert: Alert, now: float, live: int) -> Decision:
        """Block ``alert.source`` now?  ``live``: auto-block rules in force; ``now``: monotonic seconds."""
        if alert.source == MANY_SOURCES:
            return Decision(False, Refusal.MANY_SOURCES, f"many sources at {alert.target}: no single source to block")
        limits = self.limits
        seen = self._incidents.setdefault(alert.detector, _Sources())
        seen.prune(now, alert.window_secs)
        seen.note(seen.raised, alert.source, now)
        if self._storm is not None and now - self._last_asked >= QUIET_SECS:
            self._storm = None  # the storm is over
        self._last_asked = now
        infra = self._infrastructure(alert.source, now)
        if infra is not None:
            return Decision(False, Refusal.INFRASTRUCTURE, f"{alert.source} is infrastructure ({infra.reason})")
        while self._recent and now - self._recent[0] >= MINUTE:
            self._recent.popleft()
        incident = len(seen.raised)
        if incident > limits.max_incident_sources:
            why = (
                f"{incident} sources raised {alert.detector} alerts within {alert.window_secs:g} s, more than "
                f"max_incident_sources ({limits.max_incident_sources}): none of them is blocked"
            )
            revoke = tuple(seen.blocked)
            seen.blocked.clear()
            return self._refuse(Refusal.INCIDENT, why, revoke)
        if live >= limits.max_auto_blocks:
            why = f"{live} auto-blocks in force, the limit (max_auto_blocks {limits.max_auto_blocks})"
            return self._refuse(Refusal.LIVE, why)
        if len(self._recent) >= limits.max_blocks_per_minute:
            why = f"{len(self._recent)} sources auto-blocked within a minute (max_blocks_per_minute)"
            return self._refuse(Refusal.PER_MINUTE, why)
        if self._storm is not None:
            return Decision(False, self._storm, f"auto-block is stopped ({self._storm}) until the storm is over")
        return Decision(True)

    def blocked(self, alert: Alert, now: float) -> None:
        """The block ``decide`` allowed is in force: count it."""
        self._recent.append(now)
        seen = self._incidents.setdefault(alert.detector, _Sources())
        seen.note(seen.blocked, alert.source, now)

    def _refuse(self, refusal: Refusal, why: str, revoke: tuple[str, ...] = ()) -> Decision:
        if self._storm is not None:
            return Decision(False, refusal, why, None, revoke)
        self._storm = refusal
        incident = (
            f"auto-block stopped, many sources: {why}; nothing more is auto-blocked until no new source "
            f"has asked for {QUIET_SECS:g} s"
        )
        return Decision(False, refusal, why, incident, revoke)
