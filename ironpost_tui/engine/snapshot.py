"""What the engine publishes for readers in other threads (the metrics endpoint, the console):
an immutable snapshot, swapped whole each sample (and when the rules changed), never a handle."""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from ironpost_tui.detectors import AlertChange, ChangeKind, Detector
from ironpost_tui.engine.crowdsec.status import CrowdSecStatus
from ironpost_tui.engine.tick_times import TickSeconds
from ironpost_tui.model import FilterRule, ProtoCounters, RuleStatus, StatsSample
from ironpost_tui.rules.placement import (
    ADDRESSED_RULE_ID,
    AUTO_RULE_ID,
    CROWDSEC_RULE_ID,
    EXTERNAL_RULE_ID,
    GROUP_RULE_IDS,
)
from ironpost_tui.text import holds_address
from ironpost_tui.version import __version__

_MAPPINGS = ("totals", "events_lost", "alerts_total", "rule_hits")
# The engine samples its counters at a tick every second: an attached engine whose last sample is this old
# has a tick that does not end (stuck in the kernel, on a lock).  The program still drops what its maps
# say, but nothing expires, detects, applies a CrowdSec decision or reads a counter any more: /healthz
# says so.
STALE_SECS = 10.0
# AUTO_RULE_ID, EXTERNAL_RULE_ID, CROWDSEC_RULE_ID (rules/placement.py): every auto-block rule's hits as one
# rule_id (a rule id holding an address is no label), and the same for the rules other tools wrote into
# BLOCKLIST (rules/external.py) and the CrowdSec LAPI's decisions (engine/crowdsec/); reserved ids.


def hits_group(rule: FilterRule) -> str | None:
    """The rule_id a rule's hits count under when its own id holds an address; None: its own id."""
    if rule.auto:
        return AUTO_RULE_ID
    if rule.external:
        return EXTERNAL_RULE_ID
    if rule.crowdsec:
        return CROWDSEC_RULE_ID
    if _id_holds_address(rule.id):  # block-ADDR, f2b-JAIL-ADDR: a label per ban is a series per attacker
        return ADDRESSED_RULE_ID
    return None


@functools.lru_cache(maxsize=1 << 16)
def _id_holds_address(rule_id: str) -> bool:
    """holds_address, kept per id: a recount of 10,000 rules (each edit's publish) scanned every id again, 9 ms."""
    return holds_address(rule_id)


@dataclass(frozen=True)
class EngineSnapshot:
    """Read-only all through: its mappings are MappingProxyType copies of what it was given."""

    at: float  # wall-clock seconds: when its counters were sampled (a publish for the rules' sake keeps it)
    iface: str
    mode: str
    attached: bool
    totals: Mapping[str, ProtoCounters] = field(default_factory=dict)  # tcp udp icmp other total
    events_delivered: int = 0
    events_lost: Mapping[str, int] = field(default_factory=dict)
    alerts_total: Mapping[str, int] = field(default_factory=dict)  # detector -> alerts raised
    alerts_active: int = 0
    rules: tuple[RuleStatus, ...] = ()  # the rules in force, each with its hits as rule_hits counts them
    rule_hits: Mapping[str, int] = field(default_factory=dict)  # rule id ("auto", "external": groups) -> packets
    blocklist_entries: int = 0
    blocklist_capacity: int = 0
    crowdsec: CrowdSecStatus | None = None  # None: no [crowdsec]
    ticks: TickSeconds | None = None  # how long the ticks took (tick_times.py)
    sampled: float = 0.0  # monotonic seconds: the last sample of the counters (a tick's; a publish for the
    # rules' sake, from another thread, carries the last one's): what /healthz judges
    version: str = __version__

    def __post_init__(self) -> None:
        for name in _MAPPINGS:
            # A copy: a reader in another thread must not see a dict its writer still holds.  A
            # MappingProxyType is kept as it is: only this module makes them, over dicts nobody holds
            # (a snapshot's own, SnapshotBuilder's rule_hits), and 10,000 rules' counts are not copied
            # again at each replace().
            value = getattr(self, name)
            if not isinstance(value, MappingProxyType):
                object.__setattr__(self, name, MappingProxyType(dict(value)))


_EMPTY: Mapping[str, int] = MappingProxyType({})


@dataclass
class _Counted:
    """What SnapshotBuilder last counted: the statuses it was given, the rules as counted, each one's
    total and group (None: its own id), the totals by own id, the groups' sums, and the counts by rule id."""

    given: list[RuleStatus]
    counted: tuple[RuleStatus, ...]
    totals: list[int]
    groups_of: list[str | None]
    own: dict[str, int]
    groups: Counter[str]
    hits: Mapping[str, int]


def unhealthy(snap: EngineSnapshot, now: float) -> str | None:
    """Why ``snap``'s engine is not healthy at monotonic ``now`` (None: it is): not attached, or stalled (its
    last sample STALE_SECS old or more: its tick does not end)."""
    if not snap.attached:
        return "not attached"
    age = now - snap.sampled
    if age >= STALE_SECS:
        return f"stalled: the engine has not sampled for {age:.0f} s"
    return None


class SnapshotBuilder:
    """Keeps the counters of a snapshot monotonic: a rule whose hit counter was
    reset (changed in place, moved to another slot) keeps counting from where
    it was, so Prometheus sees no reset across reloads.  The console shows the
    same counts: they come from the same snapshot.  Auto-block rules are counted together
    under AUTO_RULE_ID, and other tools' BLOCKLIST entries under EXTERNAL_RULE_ID (their ids hold
    addresses).  A deleted rule's counter leaves the snapshot (and /metrics); what a group's deleted
    rules counted stays in the group's total.  A rule added again with a deleted one's id is a new rule and
    counts from 0 (until session 24 the last 1,024 deleted rules' counts were remembered and taken on: a source
    blocked again with `b`, as block-ADDR, showed every drop of its earlier blocks)."""

    def __init__(self, iface: str) -> None:
        self.iface = iface
        self._sample: StatsSample | None = None  # the last sample built from, and its wall-clock time
        self._sample_wall = 0.0
        self._alerts: Counter[Detector] = Counter()
        self._hits_base: dict[str, int] = {}
        self._hits_last: dict[str, int] = {}
        self._grouped: dict[str, str] = {}  # rule id -> its hits_group, for the rules in one
        self._group_retired: Counter[str] = Counter()  # hits of a group's rules no longer in force
        self._last: _Counted | None = None

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
        counted, hits = self._count(rules)
        if sample is not self._sample:  # a new sample: its wall-clock time, once
            self._sample, self._sample_wall = sample, time.time()
        return EngineSnapshot(
            at=self._sample_wall,
            sampled=sample.at,
            iface=self.iface,
            mode=mode,
            attached=attached,
            totals=sample.totals,
            events_delivered=sample.events_delivered,
            events_lost=sample.events_lost,
            alerts_total={d: self._alerts.get(d, 0) for d in Detector},
            alerts_active=alerts_active,
            rules=counted,
            rule_hits=hits,
            blocklist_entries=blocklist_entries,
            blocklist_capacity=blocklist_capacity,
        )

    def _count(self, rules: list[RuleStatus]) -> tuple[tuple[RuleStatus, ...], Mapping[str, int]]:
        """The rules with their monotonic counts, and the counts by rule id (groups summed).

        A second of 10,000 rules changes a few statuses at most, and the table keeps the others' objects
        (rules/table.py): when every rule is where it was, only the statuses that are not the very
        objects of the last call are counted again, and nothing changed gives the last result itself."""
        last = self._last
        if last is not None and len(last.given) == len(rules):
            moved = [i for i, (a, b) in enumerate(zip(rules, last.given, strict=True)) if a is not b]
            if not moved:
                return last.counted, last.hits
            if all(
                rules[i].rule.id == last.given[i].rule.id and hits_group(rules[i].rule) == last.groups_of[i]
                for i in moved
            ):
                return self._recount(rules, moved, last)
        return self._count_all(rules)

    def _count_one(self, status: RuleStatus) -> tuple[RuleStatus, int]:
        rid = status.rule.id
        last = self._hits_last.get(rid, 0)
        if status.hits < last:  # reset (changed in place, another slot): counts on from where it was
            self._hits_base[rid] = self._hits_base.get(rid, 0) + last
        self._hits_last[rid] = status.hits
        total = self._hits_base.get(rid, 0) + status.hits
        return (status if total == status.hits else replace(status, hits=total)), total

    def _count_all(self, rules: list[RuleStatus]) -> tuple[tuple[RuleStatus, ...], Mapping[str, int]]:
        own: dict[str, int] = {}
        counted = []
        totals = []
        groups_of: list[str | None] = []
        groups = Counter(self._group_retired)
        present = set()
        for status in rules:
            rid = status.rule.id
            present.add(rid)
            shown, total = self._count_one(status)
            counted.append(shown)
            totals.append(total)
            group = hits_group(status.rule)
            groups_of.append(group)
            if group is not None:
                self._grouped[rid] = group
                groups[group] += total
            else:
                self._grouped.pop(rid, None)
                own[rid] = total
        for rid in [r for r in self._hits_last if r not in present]:  # deleted: prune its counter
            gone = self._hits_base.pop(rid, 0) + self._hits_last.pop(rid)
            group = self._grouped.pop(rid, None)
            if group is not None:
                self._group_retired[group] += gone
                groups[group] += gone
        last = _Counted(list(rules), tuple(counted), totals, groups_of, own, groups, _EMPTY)
        last.hits = self._hits(last)
        self._last = last
        return last.counted, last.hits

    def _recount(
        self, rules: list[RuleStatus], moved: list[int], last: _Counted
    ) -> tuple[tuple[RuleStatus, ...], Mapping[str, int]]:
        """_count_all's result when only the statuses at ``moved`` changed, each still the same rule."""
        counted = list(last.counted)
        totals = list(last.totals)
        own = dict(last.own)
        groups = Counter(last.groups)
        for i in moved:
            status = rules[i]
            counted[i], total = self._count_one(status)
            group = last.groups_of[i]
            if group is not None:
                groups[group] += total - totals[i]
            else:
                own[status.rule.id] = total
            totals[i] = total
        now = _Counted(list(rules), tuple(counted), totals, last.groups_of, own, groups, _EMPTY)
        now.hits = self._hits(now)
        self._last = now
        return now.counted, now.hits

    def _hits(self, counted: _Counted) -> Mapping[str, int]:
        """The counts by rule id: each rule's own, and each group's sum (a group counts while it has a rule
        in force or has counted anything)."""
        hits = dict(counted.own)
        active = set(self._grouped.values())
        for group in GROUP_RULE_IDS:
            if counted.groups[group] or group in active:
                hits[group] = hits.get(group, 0) + counted.groups[group]
        return MappingProxyType(hits)  # kept by EngineSnapshot as it is: nobody holds the dict
