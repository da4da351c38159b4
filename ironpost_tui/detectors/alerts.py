"""Alerts: one per incident, updated while it grows, resolved when it is over."""

from __future__ import annotations

import heapq
import ipaddress
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from ironpost_tui.detectors.settings import Detector
from ironpost_tui.detectors.targets import Target
from ironpost_tui.model import StrEnum

MANY_SOURCES = "many sources"
SEVERITIES = ("medium", "high", "critical")  # least to most
QUIET_SECS = 30.0  # [detectors] quiet_secs: an incident is over after its source was silent this long
# One-source alerts open at once, at most: spoofed sources, each over a threshold once, never grow the book
# (and every tick's walk of it) without bound.  A source found with the book full takes the place of an open
# alert no detector finds this tick (its source only keeps sending), never blocked ones first, resolved early;
# only were every open alert found this tick would new sources be one many-sources alert of their detector
# (AlertBook._make_room).  The detectors find at most 4,096 + 32 sources a tick (detectors/window.py
# MAX_KEYS, port_scan.py MAX_SCANNERS), so a source found always has room.
MAX_OPEN = 10_000


class AlertState(StrEnum):
    """Where an incident is: its source attacking, blocked (a drop rule on it holds), or over."""

    ACTIVE = "ACTIVE"
    BLOCKED = "blocked"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Block:
    """A drop rule on an alert's source, in force: which, until when (wall-clock seconds; None:
    no expiry) and how many of the source's packets it dropped (the kernel's RULE_HITS)."""

    rule_id: str
    until: float | None
    dropped: int


class Live(NamedTuple):
    """A source as the kernel's per-source counters show it this tick: whether any of them rose
    (it sent), and its count within the detector's window now (None: not known).  A named tuple:
    one is made per open alert and tick, thousands in a storm."""

    sending: bool
    window_count: int | None = None


@dataclass(frozen=True)
class Finding:
    """What a detector sees this tick: an incident key and its size now."""

    detector: Detector
    key: tuple[str, str]  # (source, target): identifies the incident
    severity: str  # medium | high | critical
    count: int  # SYNs, or new destination ports, within the window
    window_secs: float
    summary: str
    targets: tuple[Target, ...] = ()  # the addresses (and ports) attacked, most hit first (not part of the key)


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
    # The destinations attacked, most hit first (at most 4), each with the port that took at least
    # half its probes (or many ports): for one source, the ones it probed most; for a many-sources
    # flood, its target.  () when not known (an older recording).
    targets: tuple[Target, ...] = ()
    block: Block | None = None  # the drop rule on the source while one holds (None: none)

    @property
    def resolved(self) -> bool:
        return self.resolved_at is not None

    @property
    def state(self) -> AlertState:
        if self.resolved_at is not None:
            return AlertState.RESOLVED
        return AlertState.BLOCKED if self.block is not None else AlertState.ACTIVE

    @property
    def rate(self) -> float:
        """The count per second over the window."""
        return self.count / self.window_secs if self.window_secs > 0 else 0.0

    @property
    def dropped(self) -> int:
        """Packets of the source its block dropped (0 when not blocked)."""
        return self.block.dropped if self.block is not None else 0

    @property
    def blocked_until(self) -> float | None:
        return self.block.until if self.block is not None else None

    def time_left(self, now: float) -> float | None:
        """Seconds the block still holds (None: not blocked, or a block with no expiry)."""
        until = self.blocked_until
        return None if until is None else max(0.0, until - now)

    @property
    def dst_ip(self) -> str | None:
        """The address attacked most, or None when no address is known."""
        if self.targets:
            return self.targets[0].address
        try:
            return str(ipaddress.ip_address(self.target))
        except ValueError:
            return None

    @property
    def dst_port(self) -> int | None:
        """The port that took at least half the probes to the address attacked most; None when
        none did (many ports) or none is known."""
        return self.targets[0].port if self.targets else None

    @property
    def target_text(self) -> str:
        """The destinations as a row shows them (``198.18.0.1:22, 198.18.0.5:*``), or the target
        (an interface) when none is known."""
        return ", ".join(map(str, self.targets)) or self.target

    @property
    def where(self) -> str:
        """The target as people read it: the destinations, and the interface when the target is one:
        ``198.18.0.1:22, 198.18.0.5:* on eth0``; the target alone when no address is known."""
        if not self.targets:
            return self.target
        shown = self.target_text
        return shown if self.dst_ip == self.target and len(self.targets) == 1 else f"{shown} on {self.target}"


def live_fields(a: Alert, now: float) -> dict[str, str | int | float | None]:
    """What a row refreshes every tick, as exports and JSON logs carry it (times: wall-clock
    seconds; ``time_left`` at ``now``; None where it does not apply)."""
    left = a.time_left(now)
    return {
        "count": a.count,
        "rate": round(a.rate, 3),
        "last_seen": a.last_seen,
        "state": str(a.state),
        "blocked_until": a.blocked_until,
        "time_left": None if left is None else round(left, 1),
        "dropped": a.dropped,
        "block_rule": a.block.rule_id if a.block is not None else None,
    }


class ChangeKind(StrEnum):
    RAISED = "raised"
    UPDATED = "updated"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class AlertChange:
    kind: ChangeKind
    alert: Alert
    retargeted: bool = False  # an update that names a new address attacked (said at warning level)
    restated: bool = False  # an update that moves it between ACTIVE and blocked (said at info level)
    # A detector found it this tick (at or over its threshold), not merely its source sending: what may
    # renew an expired auto-block (a trickle of spoofed packets in a victim's name must not).
    found: bool = False
    # A resolution before its quiet time: MAX_OPEN alerts were open and a source was found (AlertBook._make_room).
    early: bool = False


Ident = tuple[Detector, tuple[str, str]]


def _unknown(_detector: Detector, _source: str) -> Live | None:
    return None


@dataclass(slots=True)
class _Activity:
    """When an incident's source was last seen sending (wall-clock), by any of the signs."""

    at: float
    # (block rule id, its expiry) -> its drops last tick: a renewed or replaced rule counts from 0 again
    dropped: dict[tuple[str, float | None], int] = field(default_factory=dict)


class AlertBook:
    """Turns per-tick findings into incidents: raised once, refreshed every tick, resolved when over.

    A source is *sending* in a tick when the kernel's counters for it rose: its per-source sketch
    counts (``live``; they stop while a source rule drops it), the drops of the rule blocking it
    (``blocks``), or the detector's count within the window.  The incident is resolved once no
    detector finds it and its source has not sent for ``quiet_secs``; a rule matching it is no sign
    by itself (a monitor rule sees what the sketch counts anyway)."""

    def __init__(self, quiet_secs: float = QUIET_SECS) -> None:
        self.quiet_secs = quiet_secs
        self._active: dict[Ident, Alert] = {}
        self._seen: dict[Ident, _Activity] = {}
        self._next_id = 1

    @property
    def active(self) -> list[Alert]:
        return sorted(self._active.values(), key=lambda a: a.id)

    def sources(self) -> Iterator[str]:
        """The sources of the open alerts (unsorted: cheap every tick)."""
        return (a.source for a in self._active.values())

    def update(
        self,
        findings: Iterable[Finding],
        now: float,
        live: Callable[[Detector, str], Live | None] = _unknown,
        blocks: Mapping[str, Block] | None = None,
    ) -> list[AlertChange]:
        """One tick: ``now`` is wall-clock; ``live`` tells what the kernel's counters say of a
        source (None: nothing known, a many-sources incident); ``blocks``: the drop rule holding
        on each source (an address), with its drops so far."""
        findings, changes = self._make_room(findings, now, blocks or {})
        found: dict[Ident, Finding] = {}
        raised: set[Ident] = set()
        for f in findings:
            ident = (f.detector, f.key)
            found[ident] = f
            if ident in self._active:
                continue
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
                block=(blocks or {}).get(f.key[0]),
            )
            self._next_id += 1
            self._active[ident] = alert
            self._seen[ident] = _Activity(now, self._drops(alert.block))
            raised.add(ident)
            changes.append(AlertChange(ChangeKind.RAISED, alert))
        for ident, alert in list(self._active.items()):
            if ident in raised:
                continue
            change = self._refresh(ident, alert, found.get(ident), now, live, blocks or {})
            if change is not None:
                changes.append(change)
        return changes

    def _make_room(
        self, findings: Iterable[Finding], now: float, blocks: Mapping[str, Block]
    ) -> tuple[list[Finding], list[AlertChange]]:
        """``findings``, and the alerts resolved early to make room for their new one-source ones (MAX_OPEN).

        The open one-source alerts no detector finds this tick go first (their sources only keep sending:
        spoofed packets can keep an alert open, never found), those whose source no drop rule holds before
        the blocked ones (a blocked attacker's alert ends its block's renewal), the longest silent first.
        Were that not enough (every open alert found this tick), the new sources left (the largest counts
        take the room) are one many-sources finding per detector, unless the detector finds one there."""
        found = list(findings)
        new = [f for f in found if f.key[0] != MANY_SOURCES and (f.detector, f.key) not in self._active]
        if not new:
            return found, []
        singles = [ident for ident in self._active if ident[1][0] != MANY_SOURCES]
        short = len(new) - (MAX_OPEN - len(singles))
        if short <= 0:
            return found, []
        now_found = {(f.detector, f.key) for f in found}
        idle = heapq.nsmallest(
            short,
            (ident for ident in singles if ident not in now_found),
            key=lambda i: (self._active[i].source in blocks, self._seen[i].at, self._active[i].count),
        )
        changes = []
        for ident in idle:
            alert = self._active.pop(ident)
            del self._seen[ident]
            changes.append(AlertChange(ChangeKind.RESOLVED, replace(alert, resolved_at=now), early=True))
        short -= len(changes)
        if short <= 0:
            return found, changes
        new.sort(key=lambda f: f.count, reverse=True)
        over = new[len(new) - short :]
        held = {id(f) for f in over}
        kept = [f for f in found if id(f) not in held]
        groups: dict[tuple[Detector, str], list[Finding]] = {}
        for f in over:
            groups.setdefault((f.detector, f.key[1]), []).append(f)
        for (detector, target), group in groups.items():
            if (detector, (MANY_SOURCES, target)) in now_found:
                continue  # the detector's own many-sources incident there (a distributed scan): they are in it
            kept.append(
                Finding(
                    detector,
                    (MANY_SOURCES, target),
                    max((f.severity for f in group), key=SEVERITIES.index),
                    sum(f.count for f in group),
                    group[0].window_secs,
                    f"{len(group):,} more sources found while {MAX_OPEN:,} alerts of one source, all found now, "
                    "are open: together here, not one alert each",
                )
            )
        return kept, changes

    @staticmethod
    def _drops(block: Block | None) -> dict[tuple[str, float | None], int]:
        return {(block.rule_id, block.until): block.dropped} if block is not None else {}

    def _refresh(
        self,
        ident: Ident,
        alert: Alert,
        f: Finding | None,
        now: float,
        live: Callable[[Detector, str], Live | None],
        blocks: Mapping[str, Block],
    ) -> AlertChange | None:
        seen = self._seen[ident]
        state = live(alert.detector, alert.source) if alert.source != MANY_SOURCES else None
        block = blocks.get(alert.source)
        if block is not None and block.until is not None and block.until <= now:
            block = None  # expired: its removal is on its way
        # Any change of the drop counter is the source sending (a counter that went down is a new rule's).
        dropping = block is not None and block.dropped != seen.dropped.get((block.rule_id, block.until), 0)
        if block is not None or seen.dropped:
            seen.dropped = self._drops(block)
        count = f.count if f is not None else alert.count  # not known: as last said
        if f is None and state is not None and state.window_count is not None:
            count = state.window_count
        sending = (state is not None and state.sending) or dropping or (f is not None and f.count > alert.count)
        if sending:
            seen.at = now
        if f is None and now - seen.at >= self.quiet_secs:
            del self._active[ident]
            del self._seen[ident]
            return AlertChange(ChangeKind.RESOLVED, replace(alert, count=count, block=block, resolved_at=now))
        # Other destinations attacked (or other ports) are an update (the same ones in another order
        # are not); a new address among them is news (retargeted: said in the log).
        moved = retargeted = False
        if f is not None and f.targets and f.targets != alert.targets:
            moved = set(f.targets) != set(alert.targets)
            retargeted = not {t.address for t in f.targets} <= {t.address for t in alert.targets}
        summary = f.summary if f is not None else alert.summary
        severity = f.severity if f is not None else alert.severity
        targets = (f.targets if f is not None else ()) or alert.targets
        if (
            not moved
            and count == alert.count
            and seen.at == alert.last_seen
            and block == alert.block
            and summary == alert.summary
            and severity == alert.severity
        ):
            # Nothing a row shows changed (the usual case for most of a storm's alerts): no copy.
            if targets != alert.targets:
                self._active[ident] = replace(alert, targets=targets)  # the same ones, reordered
            return None
        new = replace(
            alert,
            count=count,
            peak=max(alert.peak, count),
            last_seen=seen.at,
            summary=summary,
            severity=severity,
            targets=targets,
            block=block,
        )
        self._active[ident] = new
        return AlertChange(ChangeKind.UPDATED, new, retargeted, new.state is not alert.state, found=f is not None)
