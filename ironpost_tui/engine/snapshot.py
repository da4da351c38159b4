"""What the engine publishes for readers in other threads (the metrics endpoint, the console):
an immutable snapshot, swapped whole each sample (and when the rules changed), never a handle."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from ironpost_tui import __version__
from ironpost_tui.detectors import AlertChange, ChangeKind, Detector
from ironpost_tui.model import ProtoCounters, RuleStatus, StatsSample

_MAPPINGS = ("totals", "events_lost", "alerts_total", "rule_hits")


@dataclass(frozen=True)
class EngineSnapshot:
    """Read-only all through: its mappings are MappingProxyType copies of what it was given."""

    at: float  # wall-clock seconds
    iface: str
    mode: str
    attached: bool
    totals: Mapping[str, ProtoCounters] = field(default_factory=dict)  # tcp udp icmp other total
    events_delivered: int = 0
    events_lost: Mapping[str, int] = field(default_factory=dict)
    alerts_total: Mapping[str, int] = field(default_factory=dict)  # detector -> alerts raised
    alerts_active: int = 0
    rules: tuple[RuleStatus, ...] = ()  # the rules in force, each with its hits as rule_hits counts them
    rule_hits: Mapping[str, int] = field(default_factory=dict)  # rule id -> packets, monotonic
    blocklist_entries: int = 0
    blocklist_capacity: int = 0
    version: str = __version__

    def __post_init__(self) -> None:
        for name in _MAPPINGS:
            # A copy: a reader in another thread must not see a dict its writer still holds.
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))


class SnapshotBuilder:
    """Keeps the counters of a snapshot monotonic: a rule whose hit counter was
    reset (changed in place, moved to another slot) keeps counting from where
    it was, so Prometheus sees no reset across reloads.  The console shows the
    same counts: they come from the same snapshot."""

    def __init__(self, iface: str) -> None:
        self.iface = iface
        self._alerts: Counter[Detector] = Counter()
        self._hits_base: dict[str, int] = {}
        self._hits_last: dict[str, int] = {}

    def count_alerts(self, changes: tuple[AlertChange, ...]) -> None:
        for change in changes:
            if change.kind == ChangeKind.RAISED:
                self._alerts[change.alert.detector] += 1

    def build(
        self,
        sample: StatsSample,
        rules: list[RuleStatus],
        *,
        mode: str,
        attached: bool,
        blocklist_entries: int,
        blocklist_capacity: int,
        alerts_active: int,
    ) -> EngineSnapshot:
        hits = {}
        counted = []
        for status in rules:
            rid = status.rule.id
            last = self._hits_last.get(rid, 0)
            if status.hits < last:
                self._hits_base[rid] = self._hits_base.get(rid, 0) + last
            self._hits_last[rid] = status.hits
            hits[rid] = self._hits_base.get(rid, 0) + status.hits
            counted.append(status if hits[rid] == status.hits else replace(status, hits=hits[rid]))
        return EngineSnapshot(
            at=time.time(),
            iface=self.iface,
            mode=mode,
            attached=attached,
            totals=sample.totals,
            events_delivered=sample.events_delivered,
            events_lost=sample.events_lost,
            alerts_total={d: self._alerts.get(d, 0) for d in Detector},
            alerts_active=alerts_active,
            rules=tuple(counted),
            rule_hits=hits,
            blocklist_entries=blocklist_entries,
            blocklist_capacity=blocklist_capacity,
        )
