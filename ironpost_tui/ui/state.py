"""What the console has been told by its source, between two redraws (Textual-free).

The app's message handlers only append here; the redraw timer reads it and
sets the widgets' attributes.  Everything is bounded.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from ironpost_tui.detectors import Alert, AlertChange
from ironpost_tui.engine.crowdsec.status import CrowdSecStatus
from ironpost_tui.engine.feed import RulesHead, count_drops, count_in_blocklist
from ironpost_tui.model import PacketEvent, RuleStatus, StatsSample
from ironpost_tui.triage.values import TopSnapshot
from ironpost_tui.ui import format as fmt
from ironpost_tui.ui.event_rings import EventRings

EVENTS_KEPT = 5_000  # drops held in memory, and as many other events (the table shows the newest of them)
# Only a long table's first rows are here (for a moment after the start: engine/wire.py): an edit decided
# on them (an add where the rule exists, "no rule blocks it") could be wrong.
TABLE_ARRIVING = "the rule table is still arriving from the engine: try again in a moment"
NOTICES_KEPT = 200  # `n` shows these, whole and timed
HISTORY_SAMPLES = 1_200  # 20 minutes of 1 s samples: enough for the 10-minute chart
RESOLVED_KEPT = 200  # the newest resolved alerts the alerts pane keeps
# Active alerts held: a crafted recording can raise millions, each a row rebuilt at every redraw (unbounded until
# session 26); a live engine seldom holds so many (the detectors follow a few thousand sources at a time, but an
# alert stays open while its source sends).  Past it, the alerts last seen longest ago go: a notice says so when
# it begins, and the alerts pane's status while it lasts (a count of those let go would only grow: an update of one
# brings it back, and another goes).
ACTIVE_KEPT = 10_000


@dataclass
class ConsoleState:
    history: deque[StatsSample] = field(default_factory=lambda: deque(maxlen=HISTORY_SAMPLES))
    alerts: dict[int, Alert] = field(default_factory=dict)
    rules: tuple[RuleStatus, ...] = ()
    rules_head: RulesHead | None = None  # rules holds a long table's first rows only: the counts are these
    pending: EventRings = field(default_factory=lambda: EventRings(EVENTS_KEPT))
    notices: deque[str] = field(default_factory=lambda: deque(maxlen=50))
    said: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=NOTICES_KEPT))  # (wall time, text)
    at: float = 0.0  # the source's clock at the last update
    version: int = 0  # bumped by every change, so a redraw can skip when nothing happened
    alerts_version: int = 0
    rules_version: int = 0
    reset_pending: bool = False  # a replay jumped: widgets forget what they showed
    top: TopSnapshot | None = None  # the latest top-talker lists
    top_version: int = 0
    crowdsec: CrowdSecStatus | None = None  # the LAPI as last reported (None: no [crowdsec])
    alerts_capped: bool = False  # the last change of the alerts held more active ones than ACTIVE_KEPT
    _blocklist_used: tuple[tuple[RuleStatus, ...], int] | None = field(default=None, repr=False, compare=False)

    @property
    def sample(self) -> StatsSample | None:
        return self.history[-1] if self.history else None

    def add_sample(self, sample: StatsSample) -> None:
        self.history.append(sample)
        self.version += 1

    def add_events(self, events: tuple[PacketEvent, ...]) -> None:
        self.pending.extend(events)
        self.version += 1

    def take_events(self) -> tuple[list[PacketEvent], int]:
        """The events since the last redraw, and how many more arrived and were evicted before it."""
        events, evicted = list(self.pending), self.pending.evicted
        self.pending.clear()
        return events, evicted

    def change_alerts(self, changes: tuple[AlertChange, ...]) -> None:
        for change in changes:
            self.alerts[change.alert.id] = change.alert
        # Keep ACTIVE_KEPT active alerts and the RESOLVED_KEPT newest resolved ones.
        resolved = [a.id for a in self.alerts.values() if a.resolved]
        for alert_id in resolved[:-RESOLVED_KEPT]:
            del self.alerts[alert_id]
        over = len(self.alerts) - len(resolved[-RESOLVED_KEPT:]) - ACTIVE_KEPT
        if over > 0:
            active = [a for a in self.alerts.values() if not a.resolved]
            for a in sorted(active, key=lambda a: a.last_seen)[:over]:
                del self.alerts[a.id]
            if not self.alerts_capped:
                self.notice(f"more than {ACTIVE_KEPT:,} active alerts: the console shows the {ACTIVE_KEPT:,} seen last")
        self.alerts_capped = over > 0
        self.alerts_version += 1
        self.version += 1

    def set_rules(self, rules: tuple[RuleStatus, ...]) -> None:
        if rules is self.rules and self.rules_head is None:
            return  # the engine's very table again (an idle second: it keeps it): nothing to draw
        self.rules = rules
        self.rules_head = None
        self.rules_version += 1
        self.version += 1

    def set_rules_head(self, head: RulesHead) -> None:
        """A long table's first rows, until the whole arrives: shown, counted from ``head``."""
        self.rules = head.rows
        self.rules_head = head
        self.rules_version += 1
        self.version += 1

    @property
    def rules_pending(self) -> bool:
        """Only a long table's first rows are here yet: an edit decided on them could be wrong."""
        return self.rules_head is not None

    def drop_rules(self) -> int:
        """The table's drop rules (its head's count while only its first rows are here)."""
        if self.rules_head is not None:
            return self.rules_head.drops
        return count_drops(self.rules)

    def set_top(self, top: TopSnapshot) -> None:
        self.top = top
        self.top_version += 1
        self.version += 1

    def notice(self, text: str) -> None:
        self.notices.append(fmt.text(text))
        self.said.append((time.time(), fmt.text(text)))  # for `n`: the notices whole, with when they came
        self.version += 1

    def reset(self) -> None:
        """A replay went back in time: what follows is the whole state again."""
        self.history.clear()
        self.alerts.clear()
        self.alerts_capped = False  # and said again if it happens again
        self.pending.clear()
        self.rules = ()
        self.rules_head = None
        self.top = None
        self.top_version += 1
        self.alerts_version += 1
        self.rules_version += 1
        self.reset_pending = True
        self.version += 1

    def events_lost(self) -> int:
        sample = self.sample
        return sum(sample.events_lost.values()) if sample else 0

    def blocklist_used(self) -> int:
        """BLOCKLIST's entries in use: the rules' and CrowdSec's decisions' (one row in the rules pane for
        all of them; until session 30 the status bar left them out, and a map filled by decisions read as
        room)."""
        return self.rules_in_blocklist() + self.decisions_in_blocklist()

    def decisions_in_blocklist(self) -> int:
        return self.crowdsec.blocklist if self.crowdsec is not None else 0

    def rules_in_blocklist(self) -> int:
        if self.rules_head is not None:
            return self.rules_head.blocklist
        counted = self._blocklist_used
        if counted is None or counted[0] is not self.rules:  # counted once per table, not per redraw
            counted = self._blocklist_used = (self.rules, count_in_blocklist(self.rules))
        return counted[1]
