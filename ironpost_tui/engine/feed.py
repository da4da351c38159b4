"""What the console shows comes from a Source: the live engine, or a recording.

Textual-free.  A Source is polled from one worker thread; the values it
returns are frozen and cross into the UI as they are.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import compress
from operator import is_not
from typing import Protocol

from ironpost_tui.detectors import AlertChange
from ironpost_tui.engine.crowdsec.status import CrowdSecStatus
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.kernel.host import InterfaceState
from ironpost_tui.model import Action, FilterRule, PacketEvent, RuleStatus, StatsSample, StrEnum
from ironpost_tui.text import whole_values
from ironpost_tui.triage.values import TopSnapshot


class OnExit(StrEnum):
    """What leaving the console does to the rules in the kernel."""

    NOTHING = "nothing"  # a replay: nothing of it is in the kernel
    REMOVE = "remove"  # the program is detached, its drop rules with it; it can be kept (pinned) instead
    REMOVE_ONLY = "remove-only"  # the same, with nothing to keep it on (the demo: its lab goes too)
    KEEP = "keep"  # --persist: the pinned program keeps enforcing


@dataclass(frozen=True)
class SourceInfo:
    iface: str
    mode: str
    attached: bool
    started_at: float  # wall-clock seconds
    config_path: str
    blocklist_capacity: int
    protected: tuple[str, ...] = ()
    read_only: bool = False  # a replay: no rule edits
    title: str = ""  # what the status bar calls it ("live", "replay of FILE")
    on_exit: OnExit = OnExit.NOTHING
    rules_path: str = ""  # where the operator's rules are saved (the file, the state file); "": nowhere (a replay)


def count_drops(rules: Iterable[RuleStatus]) -> int:
    """A table's drop rules (what quitting or a panic would remove)."""
    return sum(1 for s in rules if s.rule.action is Action.DROP)


# A panic's line names the cleared rules that fit this many cells, then "+N": 10,000 ids made one line of
# some 90 KB (a console notice, a log line) until session 26.  The audit log and the headless log's
# ``cleared`` field keep them all.
CLEARED_IDS_WIDTH = 160


def cleared_ids(cleared: Iterable[FilterRule]) -> str:
    """The ids a panic's line names: the first that fit CLEARED_IDS_WIDTH, then "+N"; "none" for none."""
    return whole_values([r.id for r in cleared], CLEARED_IDS_WIDTH) or "none"


def log_panic(log: logging.Logger, cleared: Sequence[FilterRule], how: str = "") -> None:
    """A panic's warning on ``log`` (the headless agent's, or the console's engine on SIGUSR2, ``how`` saying so):
    the count first (the notice line keeps the start of a message at 80 columns), the ids that fit, and every
    id in the record's ``cleared`` field."""
    log.warning(
        "panic: cleared %s drop rule(s)%s: %s",
        f"{len(cleared):,}",
        how,
        cleared_ids(cleared),
        extra={"event": "panic", "cleared": [r.id for r in cleared]},
    )


def replaced_at(new: Sequence[object], old: Sequence[object]) -> list[int]:
    """The positions where two tables of the same length hold another object, compared in C (10,000 rows of
    which one changed: no Python step per row)."""
    return list(compress(range(len(new)), map(is_not, new, old)))


def count_in_blocklist(rules: Iterable[RuleStatus]) -> int:
    """A table's rules that BLOCKLIST holds (its entries in use)."""
    return sum(1 for s in rules if s.map_name == MapName.BLOCKLIST)


@dataclass(frozen=True)
class RulesHead:
    """The first rows of a long rule table, with the whole table's counts: what a screen shows of it.

    The console's engine process sends it for its first table, and the whole at once after it
    (engine/wire.py), so that the first attached frame does not wait for 10,000 rules to cross.  Until
    the whole arrives, the console counts from it and refuses rule edits (ui/state.py)."""

    rows: tuple[RuleStatus, ...]
    total: int
    drops: int  # the table's drop rules (the quit question, the panic question)
    blocklist: int  # the table's rules that BLOCKLIST holds (the status bar)

    @classmethod
    def of(cls, rules: tuple[RuleStatus, ...], rows: int) -> RulesHead:
        return cls(rules[:rows], len(rules), count_drops(rules), count_in_blocklist(rules))


@dataclass(frozen=True)
class Update:
    """What happened since the last poll."""

    events: tuple[PacketEvent, ...] = ()
    sample: StatsSample | None = None
    alerts: tuple[AlertChange, ...] = ()
    rules: tuple[RuleStatus, ...] | None = None  # the whole table, when it changed or was refreshed
    rules_head: RulesHead | None = None  # the first rows before the whole (the engine process's first table)
    interface_state: InterfaceState = InterfaceState.UP
    notices: tuple[str, ...] = field(default_factory=tuple)  # reloads, refusals, expiries
    at: float = 0.0  # the source's clock, seconds since its start
    reset: bool = False  # a replay jumped: forget what was shown
    top: TopSnapshot | None = None  # the top talkers, when they were read
    crowdsec: CrowdSecStatus | None = None  # the LAPI as the bouncer last saw it (None: no [crowdsec])


def drop_rules(n: int) -> str:
    """'1 drop rule', '12 drop rules': how the quit question and the kept line count them."""
    return f"{n:,} drop rule{'' if n == 1 else 's'}"


RELOAD_NOTICE = "reload"  # how a reload's outcome begins (live.reload_notices): the console says it whole

# A source that has not answered a poll for this long is silent (a healthy one answers within the poll's
# timeout, a quarter of a second, plus a tick; a 10,000-rule reload holds it well under a second): the
# console says so rather than show the last figures as if they were live, and a close does not wait on it.
SILENT_SECS = 3.0


class Answers:
    """When a source last answered (monotonic seconds): set by the thread that calls it, read by another
    (a float's assignment is atomic).  None until the first answer."""

    def __init__(self) -> None:
        self.at: float | None = None
        self.holding = False  # the console is not asking (it has not yet applied what the source said): no silence

    def answered(self) -> None:
        self.at = time.monotonic()

    def hold(self) -> None:
        self.holding = True

    def release(self) -> None:
        """Asking again: the silence counts from now."""
        self.at = time.monotonic()
        self.holding = False

    def silent_for(self, now: float) -> float:
        """Seconds since the last answer (0 before the first, and while the console holds its next question)."""
        at = self.at
        return 0.0 if at is None or self.holding else max(0.0, now - at)


def still_as_shown(rule_id: str, current: FilterRule | None, expected: FilterRule) -> str | None:
    """Why an edit built from ``expected`` (the rule as the console showed it) must not go on over ``current`` (the
    rule of that id in force now), or None: the console's copy lags the engine by a poll and a redraw, and a
    question can stay open for minutes, while a reload, a tool or another console changes the rule.  Written
    over, their change would be undone (until session 25, by x, b and a shortened block)."""
    if current == expected:
        return None
    how = "went" if current is None else "changed"
    return (
        f"'{rule_id}' {how} since the console showed it (a reload, a tool, another console): nothing done; look again"
    )


class Source(Protocol):
    info: SourceInfo

    def poll(self, timeout: float) -> Update: ...
    def now(self) -> float: ...  # wall-clock seconds as the source sees them (a replay: the recording's)
    def add_rule(self, rule: FilterRule, force: bool = False) -> None: ...
    def update_rule(self, rule: FilterRule, force: bool = False, expected: FilterRule | None = None) -> None: ...
    def delete_rule(self, rule_id: str) -> FilterRule: ...
    def panic(self) -> list[FilterRule]: ...
    def reload(self) -> None: ...
    def close(self) -> None: ...


class UpdateSink(Protocol):
    """Where a live source copies what it shows (a recording: ``records.recording.Recorder``)."""

    def start(self, info: SourceInfo) -> None: ...
    def write(self, update: Update) -> None: ...
    def rule_change(self, what: str, rule: FilterRule) -> None: ...
    def close(self) -> None: ...
